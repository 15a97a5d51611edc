"""``python -m deepradiomics``: the command line."""

from deepradiomics.cli import main

main()
