"""Torch networks: the VQ segmentation network, the DLR CNN, VGG-19-3D, 2D->3D mapping, input preprocessing."""
