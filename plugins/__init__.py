"""First-party feature classes (vqhist, fisher, cnn), installed as ``deepradiomics_plugins`` and loaded through the entry points."""
