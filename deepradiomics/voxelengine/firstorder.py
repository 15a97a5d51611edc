r"""First-order voxel maps (PyRadiomics 3.0.1's ``RadiomicsFirstOrder`` in voxel mode), all voxels at once.

PyRadiomics' first-order class is already vectorised over the voxels of a batch: for voxel :math:`v` it
takes :math:`\textbf{X}_v`, the (NaN-padded, NaN outside the mask) image at the kernel offsets
``instance.kernelOffsets``, one row of a (voxels, kernel positions) array, and reduces each row. Every value
of a voxel therefore depends on its own row only (numpy reduces the rows of a C-ordered array one by one),
so the voxel batches do not matter and the rows are computed here in large chunks. What is faster than
PyRadiomics: the histogram :math:`p(i)` by one ``bincount`` instead of one pass per grey level, and the
percentiles by :func:`.common.row_nanpercentile` (numpy's ``nanpercentile`` arithmetic without
its per-row Python loop; numpy's own for rows holding a -0.0, where the two may order zeros differently).

With :math:`N_p` the valid kernel voxels, :math:`c` = ``voxelArrayShift``, :math:`\bar X` the mean,
:math:`\mu_n = \frac{1}{N_p}\sum (X - \bar X)^n`, :math:`p(i)` the kernel's grey-level histogram over the ROI's
grey levels divided by :math:`N_p`, and :math:`\epsilon` = ``numpy.spacing(1)`` (PyRadiomics' expressions,
NaN-ignoring reductions):

- Energy :math:`\sum (X + c)^2`; TotalEnergy :math:`V_{voxel} \sum (X + c)^2`;
  RootMeanSquared :math:`\sqrt{\sum (X + c)^2 / N_p}`;
- Entropy :math:`-\sum p(i)\log_2(p(i) + \epsilon)`; Uniformity :math:`\sum p(i)^2`;
- Minimum, Maximum, Range (max - min), Mean, Median, 10Percentile, 90Percentile, InterquartileRange
  :math:`P_{75} - P_{25}` (numpy's linear interpolation);
- MeanAbsoluteDeviation :math:`\frac{1}{N_p}\sum |X - \bar X|`; RobustMeanAbsoluteDeviation the same over the
  values in :math:`[P_{10}, P_{90}]` about their own mean;
- Variance ``nanstd ** 2``; StandardDeviation ``nanstd`` (deprecated: only when named);
  Skewness :math:`\mu_3 / \mu_2^{1.5}`, Kurtosis :math:`\mu_4 / \mu_2^2`, with :math:`\mu_2` replaced by 1
  where it is 0 (PyRadiomics' flat-region rule; its second line, meant to zero the numerator, has no
  effect and is kept so).

References
----------
PyRadiomics 3.0.1, ``radiomics/firstorder.py``; Zwanenburg A et al. The Image Biomarker Standardization
Initiative. Radiology 2020;295(2):328-338 (definitions).
"""

from __future__ import annotations

import numpy as np

from .common import quiet_numpy, row_nanpercentile

FEATURES = (
    "10Percentile", "90Percentile", "Energy", "Entropy", "InterquartileRange", "Kurtosis", "Maximum",
    "Mean", "MeanAbsoluteDeviation", "Median", "Minimum", "Range", "RobustMeanAbsoluteDeviation",
    "RootMeanSquared", "Skewness", "StandardDeviation", "TotalEnergy", "Uniformity", "Variance",
)  # fmt: skip
RAISING: frozenset = frozenset()

#: kernel values per chunk of voxels (bounds memory)
CHUNK_VALUES = 4_000_000


def percentile(values: np.ndarray, q: float) -> np.ndarray:
    """``numpy.nanpercentile(values, q, axis=1)``, vectorised (numpy's own for rows holding a -0.0)."""
    out = row_nanpercentile(values, q)
    signed_zero = np.any(np.signbit(values) & (values == 0), axis=1)
    if signed_zero.any():
        out[signed_zero] = np.nanpercentile(values[signed_zero], q, axis=1)
    return out


class _Rows:
    """The first-order values of a chunk of kernels (rows), PyRadiomics' expressions."""

    def __init__(self, values: np.ndarray, p_i: np.ndarray, shift: float, spacing) -> None:
        self.x = values
        self.p_i = p_i
        self.shift = shift
        self.spacing = spacing
        self._percentiles: dict = {}

    def percentile(self, q: float) -> np.ndarray:
        if q not in self._percentiles:
            self._percentiles[q] = percentile(self.x, q)
        return self._percentiles[q]

    @staticmethod
    def _moment(a: np.ndarray, moment: int) -> np.ndarray:
        mn = np.nanmean(a, 1, keepdims=True)
        s = np.power((a - mn), moment)
        return np.nanmean(s, 1)

    def feature(self, name: str) -> np.ndarray:  # noqa: C901 (one branch per feature, as PyRadiomics' methods)
        x = self.x
        if name in ("Energy", "TotalEnergy"):
            energy = np.nansum((x + self.shift) ** 2, 1)
            return energy if name == "Energy" else energy * np.multiply.reduce(self.spacing)
        if name == "Entropy":
            return -1.0 * np.sum(self.p_i * np.log2(self.p_i + np.spacing(1)), 1)
        if name == "Minimum":
            return np.nanmin(x, 1)
        if name == "10Percentile":
            return self.percentile(10)
        if name == "90Percentile":
            return self.percentile(90)
        if name == "Maximum":
            return np.nanmax(x, 1)
        if name == "Mean":
            return np.nanmean(x, 1)
        if name == "Median":
            return np.nanmedian(x, 1)
        if name == "InterquartileRange":
            return self.percentile(75) - self.percentile(25)
        if name == "Range":
            return np.nanmax(x, 1) - np.nanmin(x, 1)
        if name == "MeanAbsoluteDeviation":
            u_x = np.nanmean(x, 1, keepdims=True)
            return np.nanmean(np.absolute(x - u_x), 1)
        if name == "RobustMeanAbsoluteDeviation":
            prcnt10, prcnt90 = self.percentile(10), self.percentile(90)
            kept = x.copy()
            msk = ~np.isnan(kept)
            msk[msk] = ((kept - prcnt10[:, None])[msk] < 0) | ((kept - prcnt90[:, None])[msk] > 0)
            kept[msk] = np.nan
            return np.nanmean(np.absolute(kept - np.nanmean(kept, 1, keepdims=True)), 1)
        if name == "RootMeanSquared":
            count = np.sum(~np.isnan(x), 1).astype("float")
            return np.sqrt(np.nansum((x + self.shift) ** 2, 1) / count)
        if name == "StandardDeviation":
            return np.nanstd(x, axis=1)
        if name in ("Skewness", "Kurtosis"):
            m2 = self._moment(x, 2)
            mn = self._moment(x, 3 if name == "Skewness" else 4)
            m2[m2 == 0] = 1
            mn[m2 == 0] = 0
            return mn / m2**1.5 if name == "Skewness" else mn / m2**2.0
        if name == "Variance":
            return np.nanstd(x, 1) ** 2
        if name == "Uniformity":
            return np.nansum(self.p_i**2, 1)
        raise KeyError(name)


class FirstOrderEngine:
    """First-order voxel values for a PyRadiomics ``RadiomicsFirstOrder`` instance built for voxel mode."""

    name = "firstorder"

    def __init__(self, instance, features: list[str]) -> None:
        self.instance = instance
        self.features = features
        self.radius = int(instance.settings.get("kernelRadius", 1))
        self.offsets = np.asarray(instance.kernelOffsets)  # (3, kernel positions), PyRadiomics' order
        gray = np.asarray(instance.coefficients["grayLevels"]).astype(np.int64)
        self.lut = np.zeros(int(max(gray.max(), instance.discretizedImageArray.max())) + 1, dtype=np.int64)
        self.lut[gray] = np.arange(1, len(gray) + 1)  # 0: not a ROI grey level (outside the mask)
        self.ng = len(gray)
        self.count = instance.labelledVoxelCoordinates.shape[1]
        self.chunk = max(1, CHUNK_VALUES // self.offsets.shape[1])

    def unsupported(self, bounds) -> str | None:
        """Why this engine cannot reproduce PyRadiomics here (None when it can)."""
        return None

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(kernel values, normalised histogram) of voxels ``start:stop``: PyRadiomics' ``targetVoxelArray``
        and ``p_i`` (``_initCalculation``)."""
        instance = self.instance
        centres = instance.labelledVoxelCoordinates[:, start:stop] + self.radius  # the arrays are padded
        coords = tuple(self.offsets[:, None, :] + centres[:, :, None])
        values = instance.imageArray[coords]
        levels = self.lut[instance.discretizedImageArray[coords]]
        n = stop - start
        counts = np.bincount((np.arange(n)[:, None] * (self.ng + 1) + levels).ravel(), minlength=n * (self.ng + 1))
        p_i = counts.reshape(n, self.ng + 1)[:, 1:].astype(float)
        total = np.sum(p_i, 1, keepdims=True).astype("float")
        total[total == 0] = 1
        return values, p_i.astype("float") / total

    def run(self, bounds, initial: float, mapper=map) -> dict[str, np.ndarray]:
        """``{feature: values at instance.labelledVoxelCoordinates}`` (independent of the batches)."""
        out = {name: np.full(self.count, initial, dtype=float) for name in self.features}
        spacing = self.instance.pixelSpacing
        shift = self.instance.voxelArrayShift
        with quiet_numpy():
            for start in range(0, self.count, self.chunk):
                stop = min(start + self.chunk, self.count)
                rows = _Rows(*self.rows(start, stop), shift, spacing)
                for name in self.features:
                    out[name][start:stop] = rows.feature(name)
        return out
