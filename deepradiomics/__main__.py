from deepradiomics.cli import main

main()
