"""Training segmentation networks into model bundles: data, samplers, augmentation, losses, one loop, segmentation."""
