"""A fast voxel-based feature engine equal to PyRadiomics' voxel mode (work in progress)."""
