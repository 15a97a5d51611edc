"""Kernel geometry of PyRadiomics' voxel mode: the kernel of each voxel, its pairs, lines and neighbourhoods.

PyRadiomics 3.0.1 (``radiomics/src/_cmatrices.c``, ``set_bb``) computes the texture matrix of a voxel on the
box of ``kernelRadius`` around it, clipped to the image, and in it only on the voxels of the class's
``maskArray`` (the region of interest with ``maskedKernel: true``, every voxel of the image otherwise); with
``force2D`` the box has size 1 along ``force2Ddimension``. Here that box is the fixed cube of kernel offsets
(raster order: dimension 0 slowest, as PyRadiomics' C loops visit the box), and a kernel position is *valid*
when it lies inside the image and the mask; clipping the box to the image is the same as treating the
positions outside the image as not valid, because every matrix only uses valid positions, runs and zones
included (a line through the box stays one contiguous segment when the box is clipped).

All geometry is computed once per class instance and is independent of the voxel: the per-voxel work is
gathering the grey levels of the ``(voxels, kernel positions)`` array (:meth:`Kernel.levels`) and vectorised
arithmetic on it.

References
----------
van Griethuysen JJM et al. Computational radiomics system to decode the radiographic phenotype. Cancer Res
2017;77(21):e104-e107 (PyRadiomics; voxel-based extraction), and its source, version 3.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KernelSettings:
    """The voxel-mode settings that decide the kernel (read from a PyRadiomics feature class's ``settings``)."""

    radius: int
    force2d_dimension: int | None  # None: 3-D kernel

    @classmethod
    def from_settings(cls, settings: dict) -> KernelSettings:
        """The kernel settings PyRadiomics' C code uses (``force2Ddimension`` only with ``force2D``)."""
        force2d = bool(settings.get("force2D", False))
        return cls(int(settings.get("kernelRadius", 1)), int(settings.get("force2Ddimension", 0)) if force2d else None)


class Kernel:
    """The kernels of the voxels of one PyRadiomics feature class instance in voxel mode.

    Parameters
    ----------
    levels
        The class's discretised image (``instance.imageArray`` of a texture class: grey levels >= 1 on the
        mask, 0 elsewhere), dimensions (z, y, x).
    mask
        The class's ``maskArray`` (the kernel's voxels are taken from it).
    coordinates
        ``instance.labelledVoxelCoordinates``: shape (3, voxels), the voxels whose kernels are computed.
    settings
        Kernel radius and ``force2D`` dimension.

    Attributes
    ----------
    offsets : numpy.ndarray
        (positions, 3) offsets of the kernel positions from the centre voxel, raster order.
    shape : tuple
        The kernel box's size per dimension (``2 * radius + 1``, or 1 along the ``force2D`` dimension).
    """

    def __init__(self, levels: np.ndarray, mask: np.ndarray, coordinates: np.ndarray, settings: KernelSettings) -> None:
        if levels.ndim != 3:
            raise ValueError("the kernel engine takes 3-D images")
        radius = settings.radius
        self.settings = settings
        self.radius = radius
        self.shape = tuple(1 if d == settings.force2d_dimension else 2 * radius + 1 for d in range(3))
        half = np.array([(s - 1) // 2 for s in self.shape])
        grid = np.indices(self.shape).reshape(3, -1).T  # raster order, dimension 0 slowest
        self.offsets = grid - half
        self.size = len(self.offsets)
        self.image_shape = levels.shape
        # padded copy: every kernel position of every voxel indexes it without bound checks (0 = not valid)
        valid_levels = np.where(mask, levels, 0).astype(np.int32)
        self._padded = np.pad(valid_levels, radius, mode="constant", constant_values=0)
        self._strides = np.array([self._padded.shape[1] * self._padded.shape[2], self._padded.shape[2], 1])
        centres = coordinates.astype(np.int64) + radius
        self._centre_flat = centres.T @ self._strides  # (voxels,)
        self._offset_flat = self.offsets @ self._strides  # (positions,)
        self.count = coordinates.shape[1]

    def position(self, offset) -> int:
        """Index of a kernel offset in :attr:`offsets`."""
        half = [(s - 1) // 2 for s in self.shape]
        index = 0
        for d in range(3):
            index = index * self.shape[d] + int(offset[d]) + half[d]
        return index

    def contains(self, offsets: np.ndarray) -> np.ndarray:
        """Whether each offset (rows) lies in the kernel box."""
        half = np.array([(s - 1) // 2 for s in self.shape])
        return np.all(np.abs(offsets) <= half, axis=1)

    def levels(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Grey levels at the kernel positions of voxels ``start:stop``: (voxels, positions) int32, 0 where not valid."""
        centres = self._centre_flat[start:stop]
        return self._padded.ravel()[centres[:, None] + self._offset_flat[None, :]]

    def pairs(self, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every ordered pair of kernel positions (p, p + angle) inside the box, for each angle.

        Returns ``(first, second, angle_index)``, in angle order then raster order of ``p``: the pairs
        PyRadiomics' GLCM, GLDM and NGTDM visit (``calculate_glcm``: the voxel at ``p`` and its neighbour at
        ``p + angle``).
        """
        first, second, index = [], [], []
        for a, angle in enumerate(np.asarray(angles, dtype=np.int64)):
            inside = self.contains(self.offsets + angle)
            p = np.flatnonzero(inside)
            q = np.array([self.position(o) for o in self.offsets[p] + angle], dtype=np.int64)
            first.append(p)
            second.append(q)
            index.append(np.full(len(p), a, dtype=np.int64))
        if not first:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return np.concatenate(first), np.concatenate(second), np.concatenate(index)

    def lines(self, angles: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The lines through the kernel box along each angle (PyRadiomics' GLRLM runs).

        A line starts at a position ``p`` with ``p - angle`` outside the box and continues while inside
        (``calculate_glrlm``: every start voxel of the bounding box, then along the angle). Returns, per line
        length L, ``(positions (lines, L), angle index (lines,))``.
        """
        by_length: dict[int, tuple[list, list]] = {}
        for a, angle in enumerate(np.asarray(angles, dtype=np.int64)):
            starts = np.flatnonzero(~self.contains(self.offsets - angle))
            for p in starts:
                line = []
                offset = self.offsets[p].copy()
                while self.contains(offset[None, :])[0]:
                    line.append(self.position(offset))
                    offset = offset + angle
                positions, owners = by_length.setdefault(len(line), ([], []))
                positions.append(line)
                owners.append(a)
        return [(np.array(positions, dtype=np.int64), np.array(owners, dtype=np.int64)) for _, (positions, owners) in sorted(by_length.items())]


def generate_angles(image_shape, distances, bidirectional: bool, settings: KernelSettings) -> np.ndarray:
    """PyRadiomics' angles for a texture matrix (``cMatrices.generate_angles``, the function its C matrices use).

    Parameters
    ----------
    image_shape
        The class's image shape: PyRadiomics builds the angles from it (an offset must be smaller than
        the image along each dimension), not from the kernel.
    distances
        Infinity-norm distances (GLCM, GLDM and NGTDM: the ``distances`` setting; GLRLM and GLSZM: ``[1]``).
    bidirectional
        Both directions of each angle (GLSZM, GLDM, NGTDM) or one (GLCM, GLRLM).
    """
    from radiomics import cMatrices

    force2d = settings.force2d_dimension is not None
    dimension = settings.force2d_dimension if force2d else 0
    return np.asarray(
        cMatrices.generate_angles(np.array(image_shape), np.array(distances), bool(bidirectional), force2d, dimension), dtype=np.int64
    ).reshape(-1, 3)
