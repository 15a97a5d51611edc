r"""NGTDM voxel maps from the neighbourhoods in each kernel (PyRadiomics 3.0.1's ``RadiomicsNGTDM``).

For voxel :math:`v` and each valid kernel voxel :math:`x` of grey level :math:`i`: :math:`\bar A_x` is the
mean grey level of its valid neighbours in the kernel box (PyRadiomics' angles for the ``distances``
setting, both directions; 0 difference when it has none), and the matrix holds per grey level
:math:`n_i` (the count) and :math:`s_i = \sum |i - \bar A_x|` (``calculate_ngtdm``; the sum accumulated in
the box's raster order, as the C loop does, so it is PyRadiomics' to the bit). Neighbour counts and sums for
all voxels at once: one product of the (voxels, pairs) arrays with the pairs' incidence matrix (integer
valued, exact).

The batch's matrix is then PyRadiomics' (voxels, Ng, 3) and its Python takes over: grey levels empty over
the batch deleted (``_calculateMatrix``), ``_calculateCoefficients`` and the feature methods: Coarseness
:math:`1 / \sum p_i s_i` (:math:`10^6` where 0), Contrast, Busyness, Complexity and Strength
(PyRadiomics' ``ngtdm.py`` formulas, with its conventions where a divisor is 0).

References
----------
Amadasun M, King R. Textural features corresponding to textural properties. IEEE Trans Syst Man Cybern
1989;19(5):1264-1274; PyRadiomics 3.0.1, ``radiomics/ngtdm.py``.
"""

from __future__ import annotations

import numpy as np

from .common import call_features, quiet_numpy, store
from .gldm import incidence
from .kernels import Kernel, KernelSettings, generate_angles

FEATURES = ("Busyness", "Coarseness", "Complexity", "Contrast", "Strength")
RAISING: frozenset = frozenset()

#: pairs per voxel chunk
CHUNK_PAIRS = 3_000_000


def chunk_differences(levels: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """:math:`|i - \\bar A_x|` of each kernel position (0 where not valid or without neighbours), (voxels, positions)."""
    a, b = levels[:, first], levels[:, second]
    pair_valid = ((a > 0) & (b > 0)).astype(np.float64)
    matrix = incidence(first, levels.shape[1])
    count = pair_valid @ matrix  # integer-valued: exact
    total = (pair_valid * b) @ matrix
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(count == 0, 0.0, levels.astype(np.float64) - (total / count))
    diff = np.abs(diff)
    diff[levels == 0] = 0
    return diff


def _job(args):
    return chunk_differences(*args)


class NGTDMEngine:
    """NGTDM voxel values for a PyRadiomics ``RadiomicsNGTDM`` instance built for voxel mode."""

    name = "ngtdm"

    def __init__(self, instance, features: list[str]) -> None:
        self.instance = instance
        self.features = features
        settings = KernelSettings.from_settings(instance.settings)
        self.kernel = Kernel(instance.imageArray, instance.maskArray, instance.labelledVoxelCoordinates, settings)
        self.angles = generate_angles(instance.imageArray.shape, instance.settings.get("distances", [1]), True, settings)
        self.first, self.second, _ = self.kernel.pairs(self.angles)
        self.ng_max = int(instance.coefficients["Ng"])
        self.chunk = max(64, CHUNK_PAIRS // max(1, len(self.first)))

    def unsupported(self, bounds) -> str | None:
        """Why this engine cannot reproduce PyRadiomics here (None when it can)."""
        if len(self.angles) == 0:
            return "no NGTDM angle for this image size and distances"
        return None

    def differences(self, mapper=map) -> tuple[np.ndarray, np.ndarray]:
        """(kernel levels, |i - mean of neighbours|), both (voxels, positions), all voxels."""
        count = self.kernel.count
        spans = [(s, min(s + self.chunk, count)) for s in range(0, count, self.chunk)]
        levels = [self.kernel.levels(s, e) for s, e in spans]
        diffs = list(mapper(_job, [(lv, self.first, self.second) for lv in levels]))
        if not spans:
            return np.zeros((0, self.kernel.size), dtype=np.int32), np.zeros((0, self.kernel.size))
        return np.concatenate(levels), np.concatenate(diffs)

    def matrix(self, levels: np.ndarray, diffs: np.ndarray, start: int, stop: int) -> np.ndarray:
        """PyRadiomics' ``P_ngtdm`` of the batch (``_calculateMatrix``: C's (voxels, Ng, 3), empty levels deleted)."""
        lev, diff = levels[start:stop], diffs[start:stop]
        nb, ng = stop - start, self.ng_max
        P_ngtdm = np.zeros((nb, ng, 3))
        P_ngtdm[:, :, 2] = np.arange(1, ng + 1)
        rows = np.arange(nb)
        counts = np.zeros((nb, ng + 1))
        sums = np.zeros((nb, ng + 1))
        for k in range(lev.shape[1]):  # the C loop's raster order over the box: sums added in that order
            column = lev[:, k]
            counts[rows, column] += 1
            sums[rows, column] += diff[:, k]
        P_ngtdm[:, :, 0] = counts[:, 1:]
        P_ngtdm[:, :, 1] = sums[:, 1:]
        emptyGrayLevels = np.where(np.sum(P_ngtdm[:, :, 0], 0) == 0)
        return np.delete(P_ngtdm, emptyGrayLevels, 1)

    def run(self, bounds, initial: float, mapper=map) -> dict[str, np.ndarray]:
        """``{feature: values at instance.labelledVoxelCoordinates}`` with PyRadiomics' per-batch semantics."""
        out = {name: np.full(self.kernel.count, initial, dtype=float) for name in self.features}
        levels, diffs = self.differences(mapper)
        instance = self.instance
        with quiet_numpy():
            for start, stop in bounds:
                instance.P_ngtdm = self.matrix(levels, diffs, start, stop)
                instance._calculateCoefficients()
                store(out, start, stop, call_features(instance, self.features))
        return out
