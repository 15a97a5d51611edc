"""What every class engine shares: PyRadiomics' voxel batches, its feature loop, its grey-level deletion,
and numpy's percentile arithmetic vectorised over rows (also used by :mod:`deepradiomics.voxel`)."""

from __future__ import annotations

import traceback
import warnings

import numpy as np


def voxel_batches(count: int, voxel_batch: int) -> list[tuple[int, int]]:
    """PyRadiomics' voxel batches (``_calculateVoxels``): ``voxelBatch`` voxels each, one batch when negative.

    The voxels are ``labelledVoxelCoordinates`` (``numpy.where`` order) cut every ``voxelBatch`` voxels.
    """
    if voxel_batch < 0:
        voxel_batch = count
    return [(start, min(start + voxel_batch, count)) for start in range(0, count, voxel_batch)]


def call_features(instance, features):
    """PyRadiomics' ``_calculateFeatures`` loop body: ``(feature, success, value)`` per enabled feature.

    A ``DeprecationWarning`` (a deprecated feature) yields nothing, any other exception a failure: in both
    cases PyRadiomics leaves the batch's voxels at ``initValue``. Messages go to the class's logger, as
    PyRadiomics'.
    """
    for name in features:
        try:
            yield name, True, getattr(instance, f"get{name}FeatureValue")()
        except DeprecationWarning as exc:
            instance.logger.debug("Feature %s is deprecated: %s", name, exc.args[0])
        except Exception:
            instance.logger.error("FAILED: %s", traceback.format_exc())
            yield name, False, np.nan


def store(out: dict, start: int, stop: int, results) -> None:
    """Write the successful ``(feature, success, value)`` of a batch into ``out`` (as ``_calculateVoxels``)."""
    for name, success, value in results:
        if success:
            out[name][start:stop] = value


class quiet_numpy:
    """numpy's floating-point warnings off (PyRadiomics' arithmetic produces NaN and inf on purpose)."""

    def __enter__(self):
        self._state = np.seterr(all="ignore")
        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)  # 'Mean of empty slice' and the like
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        np.seterr(**self._state)


def absent_levels(instance) -> np.ndarray:
    """Grey levels 1..Ng absent from the ROI, as PyRadiomics computes them (``emptyGrayLevels``)."""
    ng = instance.coefficients["Ng"]
    return np.array(list(set(range(1, ng + 1)) - set(instance.coefficients["grayLevels"])), dtype=int)


def level_index(instance) -> np.ndarray:
    """Lookup table: grey level -> its index among the ROI's grey levels (0 for level 0)."""
    gray = np.asarray(instance.coefficients["grayLevels"]).astype(np.int64)
    lut = np.zeros(int(gray.max()) + 1, dtype=np.int64)
    lut[gray] = np.arange(len(gray))
    return lut


def layout_like(shape, axes) -> np.ndarray:
    """Zeros of ``shape`` laid out in memory in the axis order ``axes`` (outermost first)."""
    return np.zeros([shape[a] for a in axes]).transpose(np.argsort(axes))


def memory_order(array: np.ndarray) -> tuple:
    """The axes of ``array`` from outermost to innermost in memory."""
    return tuple(int(a) for a in np.argsort([-abs(s) for s in array.strides], kind="stable"))


def row_nanpercentile(values: np.ndarray, percentile: float) -> np.ndarray:
    """``numpy.nanpercentile(values, percentile, axis=1)`` for a 2-D float array, without a Python loop per row.

    numpy computes each row separately (``apply_along_axis``), which is most of PyRadiomics' first-order
    voxel time. This is numpy's own ``linear`` arithmetic, operation for operation (sorted values with NaN
    last, virtual index ``(n - 1) * q``, an index of ``-1`` past the last value, ``_lerp``'s two branches),
    so the result is the same to the bit, except for the sign of a zero when a row holds both -0.0 and
    +0.0 (numpy's partial sort and this full sort may order them differently): :class:`_VoxelFirstOrder`
    uses numpy's for a batch holding a -0.0, and compares the two on first use. Rows without a value give NaN.
    """
    ordered = np.sort(values, axis=1)  # NaN sorts last, as after numpy's NaN removal
    count = np.count_nonzero(~np.isnan(values), axis=1)
    quantile = np.true_divide(percentile, 100)
    virtual = (count - 1) * quantile
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= count - 1
    previous[above] = -1  # numpy's _get_indexes: past the end, take the last value (index -1)
    following[above] = -1
    gamma = virtual - previous  # from the -1 index, as numpy's _get_gamma
    rows = np.arange(values.shape[0])
    last = np.maximum(count - 1, 0)
    low = ordered[rows, np.where(previous < 0, last, previous).astype(np.intp)]
    high = ordered[rows, np.where(following < 0, last, following).astype(np.intp)]
    with np.errstate(invalid="ignore"):  # inf - inf in a row of infinities: NaN, as numpy's, without a warning
        difference = high - low
        result = low + difference * gamma
        upper = gamma >= 0.5
        result[upper] = (high - difference * (1 - gamma))[upper]
    result[count == 0] = np.nan
    return result
