r"""GLDM voxel maps from the dependences in each kernel (PyRadiomics 3.0.1's ``RadiomicsGLDM`` in voxel mode).

For voxel :math:`v`, :math:`P_v(i, j)` counts the valid kernel voxels of grey level :math:`i` with
:math:`j` dependent neighbours: neighbours at PyRadiomics' angles for the ``distances`` setting (both
directions), valid and in the kernel box, whose grey level differs by at most :math:`\alpha` = ``gldm_a``
(``calculate_gldm``). For all voxels at once: the (voxels, pairs) array of dependent pairs (positions
:math:`x, x + a` of the box) summed per position by one product with the pairs' incidence matrix.

The batch's matrix is what PyRadiomics' C code returns, (voxels, Ng, dependences), its dependence axis
ending two past the largest dependence possible (PyRadiomics allocates :math:`2 N_a + 1`; the columns in
between are always empty and numpy deletes both the same way, see :mod:`.glrlm`); then PyRadiomics'
Python: the statements of ``_calculateMatrix`` after the C call (absent grey levels and dependence sizes
empty over the batch deleted, :math:`N_z` set to 1 where 0) and its feature methods:
SmallDependenceEmphasis :math:`\frac{1}{N_z}\sum p_d(j)/j^2`, LargeDependenceEmphasis
:math:`\frac{1}{N_z}\sum p_d(j)j^2`, GrayLevelNonUniformity :math:`\frac{1}{N_z}\sum p_g(i)^2`,
DependenceNonUniformity(Normalized) :math:`\sum p_d(j)^2 / N_z\,(N_z^2)`, GrayLevelVariance,
DependenceVariance, DependenceEntropy :math:`-\sum p\log_2(p+\epsilon)`, Low/HighGrayLevelEmphasis and the
four Small/LargeDependence Low/HighGrayLevel emphases :math:`\frac{1}{N_z}\sum P(i,j)\,i^{\mp2}j^{\mp2}`
(:math:`j` is the dependence count plus 1). GrayLevelNonUniformityNormalized and DependencePercentage
raise PyRadiomics' ``DeprecationWarning``: their maps keep ``initValue``.

References
----------
Sun C, Wee WG. Neighboring gray level dependence matrix for texture classification. Comput Vis Graph
Image Process 1983;23(3):341-352; PyRadiomics 3.0.1, ``radiomics/gldm.py``.
"""

from __future__ import annotations

import numpy as np

from .common import absent_levels, call_features, quiet_numpy, store
from .kernels import Kernel, KernelSettings, generate_angles

FEATURES = (
    "DependenceEntropy", "DependenceNonUniformity", "DependenceNonUniformityNormalized", "DependencePercentage",
    "DependenceVariance", "GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance",
    "HighGrayLevelEmphasis", "LargeDependenceEmphasis", "LargeDependenceHighGrayLevelEmphasis",
    "LargeDependenceLowGrayLevelEmphasis", "LowGrayLevelEmphasis", "SmallDependenceEmphasis",
    "SmallDependenceHighGrayLevelEmphasis", "SmallDependenceLowGrayLevelEmphasis",
)  # fmt: skip
RAISING = frozenset({"GrayLevelNonUniformityNormalized", "DependencePercentage"})

#: pairs per voxel chunk
CHUNK_PAIRS = 3_000_000


def incidence(first: np.ndarray, positions: int) -> np.ndarray:
    """(pairs, positions) matrix with a 1 at each pair's first position: summing pairs per position."""
    matrix = np.zeros((len(first), positions))
    matrix[np.arange(len(first)), first] = 1
    return matrix


def chunk_dependences(levels: np.ndarray, first: np.ndarray, second: np.ndarray, alpha: int) -> np.ndarray:
    """Dependent neighbours of each kernel position, (voxels, positions), for a chunk of voxels."""
    a, b = levels[:, first], levels[:, second]
    dependent = (a > 0) & (b > 0) & (np.abs(a - b) <= alpha)
    return np.rint(dependent.astype(np.float64) @ incidence(first, levels.shape[1])).astype(np.int64)


def _job(args):
    return chunk_dependences(*args)


class GLDMEngine:
    """GLDM voxel values for a PyRadiomics ``RadiomicsGLDM`` instance built for voxel mode."""

    name = "gldm"

    def __init__(self, instance, features: list[str]) -> None:
        self.instance = instance
        self.features = features
        settings = KernelSettings.from_settings(instance.settings)
        self.kernel = Kernel(instance.imageArray, instance.maskArray, instance.labelledVoxelCoordinates, settings)
        self.angles = generate_angles(instance.imageArray.shape, instance.settings.get("distances", [1]), True, settings)
        self.first, self.second, _ = self.kernel.pairs(self.angles)
        self.na = len(self.angles)
        self.ng_max = int(instance.coefficients["Ng"])
        full = 2 * self.na + 1  # PyRadiomics' dependence axis
        self.columns = full if full <= self.na + 3 else self.na + 3
        self.chunk = max(64, CHUNK_PAIRS // max(1, len(self.first)))
        self.absent = absent_levels(instance)

    def unsupported(self, bounds) -> str | None:
        """Why this engine cannot reproduce PyRadiomics here (None when it can)."""
        if self.na == 0:
            return "no GLDM angle for this image size and distances"
        return None

    def dependences(self, mapper=map) -> tuple[np.ndarray, np.ndarray]:
        """(kernel levels, dependent-neighbour counts), both (voxels, positions), all voxels."""
        count = self.kernel.count
        spans = [(s, min(s + self.chunk, count)) for s in range(0, count, self.chunk)]
        levels = [self.kernel.levels(s, e) for s, e in spans]
        jobs = [(lv, self.first, self.second, int(self.instance.gldm_a)) for lv in levels]
        deps = list(mapper(_job, jobs))
        if not spans:
            return np.zeros((0, self.kernel.size), dtype=np.int32), np.zeros((0, self.kernel.size), dtype=np.int64)
        return np.concatenate(levels), np.concatenate(deps)

    def matrix(self, levels: np.ndarray, deps: np.ndarray, start: int, stop: int) -> np.ndarray:
        """PyRadiomics' ``P_gldm`` of the batch, coefficients set (``_calculateMatrix`` after the C call)."""
        instance = self.instance
        lev, dep = levels[start:stop], deps[start:stop]
        nb = stop - start
        valid = lev > 0
        voxel = np.broadcast_to(np.arange(nb)[:, None], lev.shape)[valid]
        key = (voxel * self.ng_max + (lev[valid] - 1)) * self.columns + dep[valid]
        P_gldm = np.bincount(key, minlength=nb * self.ng_max * self.columns).astype(np.float64).reshape(nb, self.ng_max, self.columns)
        P_gldm = np.delete(P_gldm, self.absent - 1, 1)
        jvector = np.arange(1, P_gldm.shape[2] + 1, dtype="float64")
        pd = np.sum(P_gldm, 1)
        pg = np.sum(P_gldm, 2)
        empty_sizes = np.sum(pd, 0)
        P_gldm = np.delete(P_gldm, np.where(empty_sizes == 0), 2)
        jvector = np.delete(jvector, np.where(empty_sizes == 0))
        pd = np.delete(pd, np.where(empty_sizes == 0), 1)
        Nz = np.sum(pd, 1)
        Nz[Nz == 0] = 1
        instance.coefficients["Nz"] = Nz
        instance.coefficients["pd"] = pd
        instance.coefficients["pg"] = pg
        instance.coefficients["ivector"] = instance.coefficients["grayLevels"].astype(float)
        instance.coefficients["jvector"] = jvector
        return P_gldm

    def run(self, bounds, initial: float, mapper=map) -> dict[str, np.ndarray]:
        """``{feature: values at instance.labelledVoxelCoordinates}`` with PyRadiomics' per-batch semantics."""
        out = {name: np.full(self.kernel.count, initial, dtype=float) for name in self.features}
        levels, deps = self.dependences(mapper)
        instance = self.instance
        with quiet_numpy():
            for start, stop in bounds:
                instance.P_gldm = self.matrix(levels, deps, start, stop)
                store(out, start, stop, call_features(instance, self.features))
        return out
