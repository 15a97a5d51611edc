"""A fast voxel-based feature engine: PyRadiomics 3.0.1's voxel mode from the few cells of each kernel.

(Full documentation below in this docstring once complete.)
"""

from .core import ClassVoxels, class_maps, compute_class
from .extractor import FastVoxelExtractor, compute_voxel_features_fast, engine_diagnostic

__all__ = ["ClassVoxels", "FastVoxelExtractor", "class_maps", "compute_class", "compute_voxel_features_fast", "engine_diagnostic"]
