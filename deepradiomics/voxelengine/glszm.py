r"""GLSZM voxel maps from the zones of each kernel (PyRadiomics 3.0.1's ``RadiomicsGLSZM`` in voxel mode).

For voxel :math:`v`, :math:`P_v(i, j)` counts the zones of its kernel: the connected sets of valid kernel
voxels of grey level :math:`i` and size :math:`j`, connected through PyRadiomics' distance-1 angles, both
directions (``calculate_glszm``: region growing from each unvisited voxel of the box; 26-connectivity in
3-D, 8 in-plane with ``force2D``, where the kernel is one voxel thick). The zones of all kernels are labelled
at once: the kernels are laid side by side along x with a column of empty voxels between neighbours (so no
zone crosses from one kernel to the next) and ``scipy.ndimage.label`` (full 3 x 3 x 3 structure) labels
each grey level's voxels.

The batch's matrix is then what PyRadiomics' C code returns, (voxels, Ng, largest zone of the batch), and
PyRadiomics' own Python takes over: grey levels absent from the ROI deleted (``_calculateMatrix``), its
``_calculateCoefficients`` (zone sizes empty over the batch deleted; :math:`N_z, N_p` set to 1 where 0) and
its feature methods, so every value is PyRadiomics': SmallAreaEmphasis :math:`\frac{1}{N_z}\sum p_s(j)/j^2`,
LargeAreaEmphasis :math:`\frac{1}{N_z}\sum p_s(j)j^2`, GrayLevelNonUniformity(Normalized),
SizeZoneNonUniformity(Normalized), ZonePercentage :math:`N_z/N_p`, GrayLevelVariance, ZoneVariance,
ZoneEntropy :math:`-\sum p\log_2(p+\epsilon)`, Low/HighGrayLevelZoneEmphasis and the four
Small/LargeArea Low/HighGrayLevel emphases :math:`\frac{1}{N_z}\sum P(i,j)\,i^{\mp2}j^{\mp2}`.

References
----------
Thibault G et al. Texture indexes and gray level size zone matrix. Proc. PRIP 2009:140-145; PyRadiomics
3.0.1, ``radiomics/glszm.py`` and ``radiomics/src/cmatrices.c``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .common import absent_levels, call_features, quiet_numpy, store
from .kernels import Kernel, KernelSettings

FEATURES = (
    "GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance", "HighGrayLevelZoneEmphasis",
    "LargeAreaEmphasis", "LargeAreaHighGrayLevelEmphasis", "LargeAreaLowGrayLevelEmphasis", "LowGrayLevelZoneEmphasis",
    "SizeZoneNonUniformity", "SizeZoneNonUniformityNormalized", "SmallAreaEmphasis", "SmallAreaHighGrayLevelEmphasis",
    "SmallAreaLowGrayLevelEmphasis", "ZoneEntropy", "ZonePercentage", "ZoneVariance",
)  # fmt: skip
RAISING: frozenset = frozenset()

#: kernel positions per voxel chunk
CHUNK_POSITIONS = 2_000_000


def chunk_zones(levels: np.ndarray, shape: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The zones of a chunk of kernels: ``(voxel, grey level, size)`` per zone, sorted by voxel."""
    nv = len(levels)
    kz, ky, kx = shape
    tiles = np.zeros((nv, kz, ky, kx + 1), dtype=levels.dtype)  # one empty column after each kernel
    tiles[..., :kx] = levels.reshape(nv, kz, ky, kx)
    volume = np.ascontiguousarray(tiles.transpose(1, 2, 0, 3)).reshape(kz, ky, nv * (kx + 1))
    tile_of = np.broadcast_to((np.arange(nv * (kx + 1)) // (kx + 1))[None, None, :], volume.shape)
    structure = np.ones((3, 3, 3), dtype=bool)
    voxels, grays, sizes = [], [], []
    for gray in np.unique(volume[volume > 0]):
        labels, count = ndimage.label(volume == gray, structure=structure)
        flat = labels.ravel()
        members = flat > 0
        size = np.bincount(flat[members], minlength=count + 1)[1:]
        owner = np.zeros(count + 1, dtype=np.int64)
        owner[flat[members]] = tile_of.ravel()[members]
        voxels.append(owner[1:])
        grays.append(np.full(count, gray, dtype=np.int64))
        sizes.append(size)
    if not voxels:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    voxel, gray, size = np.concatenate(voxels), np.concatenate(grays), np.concatenate(sizes)
    order = np.argsort(voxel, kind="stable")
    return voxel[order], gray[order], size[order]


def _zones_job(args):
    levels, shape = args
    return chunk_zones(levels, shape)


class GLSZMEngine:
    """GLSZM voxel values for a PyRadiomics ``RadiomicsGLSZM`` instance built for voxel mode."""

    name = "glszm"

    def __init__(self, instance, features: list[str]) -> None:
        self.instance = instance
        self.features = features
        settings = KernelSettings.from_settings(instance.settings)
        self.kernel = Kernel(instance.imageArray, instance.maskArray, instance.labelledVoxelCoordinates, settings)
        self.ng_max = int(instance.coefficients["Ng"])
        self.chunk = max(64, CHUNK_POSITIONS // self.kernel.size)
        self.absent = absent_levels(instance)

    def unsupported(self, bounds) -> str | None:
        """Why this engine cannot reproduce PyRadiomics here (None when it can)."""
        return None

    def zones(self, mapper=map) -> tuple[np.ndarray, ...]:
        """The zones of every voxel's kernel, ``(voxel, grey level, size)``, sorted by voxel."""
        count = self.kernel.count
        spans = [(s, min(s + self.chunk, count)) for s in range(0, count, self.chunk)]
        jobs = [(self.kernel.levels(s, e), self.kernel.shape) for s, e in spans]
        parts = [(v + s, g, z) for (s, _), (v, g, z) in zip(spans, mapper(_zones_job, jobs))]
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return tuple(np.concatenate(p) for p in zip(*parts))

    def matrix(self, zones, start: int, stop: int) -> np.ndarray:
        """PyRadiomics' ``P_glszm`` of the batch (C's (voxels, Ng, largest zone), absent levels deleted)."""
        voxel, gray, size = zones
        lo, hi = np.searchsorted(voxel, [start, stop])
        nb = stop - start
        largest = int(size[lo:hi].max()) if hi > lo else 1  # PyRadiomics: at least 1
        key = ((voxel[lo:hi] - start) * self.ng_max + (gray[lo:hi] - 1)) * largest + (size[lo:hi] - 1)
        P_glszm = np.bincount(key, minlength=nb * self.ng_max * largest).astype(np.float64).reshape(nb, self.ng_max, largest)
        return np.delete(P_glszm, self.absent - 1, 1)

    def run(self, bounds, initial: float, mapper=map) -> dict[str, np.ndarray]:
        """``{feature: values at instance.labelledVoxelCoordinates}`` with PyRadiomics' per-batch semantics."""
        out = {name: np.full(self.kernel.count, initial, dtype=float) for name in self.features}
        zones = self.zones(mapper)
        instance = self.instance
        with quiet_numpy():
            for start, stop in bounds:
                instance.P_glszm = self.matrix(zones, start, stop)
                instance._calculateCoefficients()
                store(out, start, stop, call_features(instance, self.features))
        return out
