"""Voxel-based feature maps: PyRadiomics' voxel mode, value for value, by one of two engines.

Engines (``voxelSetting.engine``): ``fast`` (the default of ``extract``/``batch --mode voxel``) is
:mod:`deepradiomics.voxelengine`, which computes the same maps as PyRadiomics from the few cells each kernel
holds (a class it declines falls back to PyRadiomics' engine, and ``diagnostics_Voxel_Engine`` names it
with the reason); ``pyradiomics`` is PyRadiomics' own engine, spread over processes as described below
(the PyRadiomics drop-in, :mod:`deepradiomics.compat`, uses it unless asked for ``fast``).

PyRadiomics' ``execute(image, mask, voxelBased=True)`` computes, for every voxel of the region of
interest, the features of the kernel around it (``kernelRadius``) and returns one ``SimpleITK.Image`` per
feature. It does so serially, one voxel batch (``voxelBatch``) after another, per image type and class.
This module computes the same maps with PyRadiomics' own code, split across ``jobs`` worker processes.

API
---
- :func:`compute_voxel_features` ``(pyradiomics_extractor, image, mask, label, label_channel, jobs)``:
  exactly what PyRadiomics' ``execute(..., voxelBased=True)`` returns (an ``OrderedDict`` of its
  ``diagnostics_*`` entries, then one map per feature, in PyRadiomics' order), from any configured
  ``radiomics.featureextractor.RadiomicsFeatureExtractor`` (the drop-in
  :class:`deepradiomics.compat.RadiomicsFeatureExtractor` included).
- :func:`compute_maps` ``(backend, classes, case, jobs=1)`` -> ``{feature name: SimpleITK.Image}``: the
  maps of one case: the PyRadiomics backend's classes (``backend``: a
  :class:`~deepradiomics.classical.PyRadiomicsBackend`, a configured PyRadiomics extractor, or None), then
  every plugin class of ``classes`` that provides maps (below).
  :meth:`deepradiomics.extractor.Extractor.compute_maps` calls it with its own backend and classes; this
  is what ``extract --mode voxel`` and ``batch --mode voxel`` compute, followed by:
- :func:`write_maps` ``(maps, out_dir, fmt="nrrd" | "nii.gz", case_id) -> pandas.DataFrame``: one file per
  map (``<out_dir>/<feature name>.<fmt>``, compressed) and a one-row table ``feature name -> path``
  (non-image entries such as diagnostics are copied into the row, as PyRadiomics' own CLI does).
  Give each case its own ``out_dir``. :class:`VoxelOutput` says where and how a batch writes each case's
  maps (folder, format, grid) and turns a case's maps into its row (:meth:`VoxelOutput.write`).

This module knows a backend and feature classes, never the Extractor; the batch engine knows rows,
never maps.

Identical values
----------------
PyRadiomics' voxel values depend on how the voxels are batched, not only on the kernel: some classes
drop a GLCM angle or a zone size that is empty over the whole batch, numpy reduces arrays whose shape
depends on the batch, and ``MCC`` fails (keeping ``initValue``) for every voxel of a batch in which one
kernel gives a non-finite matrix. On brain2, ``voxelBatch`` 37 instead of one batch changes 9 of 93 maps
(8 in the last bits, ``MCC`` on 111 voxels). So this module keeps PyRadiomics' batches exactly (the
ROI's voxels in ``numpy.where`` order, cut every ``voxelBatch`` voxels; one batch when it is unset) and
only distributes whole batches: each worker receives a class instance built by PyRadiomics' own code
(discretisation over the whole ROI included; for first order and GLCM a subclass that skips work whose
result PyRadiomics discards or repeats, below) and runs PyRadiomics' ``_calculateFeatures`` on its
batches. The maps are therefore identical, bit for bit, to PyRadiomics' for any ``jobs`` (the tests
compare every voxel of every map with PyRadiomics' own voxel mode). With
``voxelBatch`` unset a class is one batch, and the work is split across classes and image types only:
set ``voxelBatch`` (as PyRadiomics' documentation advises for memory anyway) to let ``jobs`` split a class.

Where PyRadiomics' time goes, and what is done once instead
----------------------------------------------------------
Profiled with ``cProfile`` on brain1 (4137 ROI voxels, every class, ``kernelRadius`` 1): the per-batch
overhead is small (``voxelBatch`` 50 runs faster than one batch, 26 s against 33 s, small batches staying
in cache); the time is per-voxel arithmetic: GLCM ~75 % (``MCC`` alone ~35-45 %), first order ~12 %
(percentiles, numpy looping over voxels), GLRLM ~9 %. What PyRadiomics repeats needlessly:

- ``MCC`` builds a matrix per voxel and angle and takes its eigenvalues with ``numpy.linalg.eigvals``,
  which refuses the whole batch as soon as one voxel has an empty GLCM along one angle (its matrix is
  then NaN); the batch keeps ``initValue``. On brain1 most batches fail, after the full computation.
  :class:`_VoxelGLCM` raises that same error before building the matrices when the batch's GLCM is not
  finite (PyRadiomics' failure, logged the same way), and computes ``MCC`` exactly as PyRadiomics otherwise.
- within a batch, the three GLCM cluster features each compute ``i + j - ux - uy`` and ``Imc1``/``Imc2``
  each ``log2(px * py + eps)``, over arrays of voxels x grey levels^2 x angles: :class:`_VoxelGLCM`
  computes each once per batch (same operations, same order).
- the first-order class computes the 10th and 90th percentiles twice per batch (for themselves and for
  ``RobustMeanAbsoluteDeviation``), each with numpy's per-voxel loop; :class:`_VoxelFirstOrder` computes
  each percentile once per batch with :func:`row_nanpercentile` (numpy's arithmetic, vectorised, checked
  against numpy's on first use).
- per batch, each texture class recomputes which grey levels are absent and copies its matrix to delete
  them (a few % of the time, left as PyRadiomics does it: avoiding it means rewriting its matrix code).

Each class is built once per chunk of batches (a few per worker), not per batch. Single-process effect
on brain1 (``voxelBatch`` 500, every class; CPU time, 2 runs each): PyRadiomics 27.4-27.6 s,
:func:`compute_voxel_features` with ``jobs=1`` 13.1-14.2 s, the same 93 maps bit for bit; ``jobs`` then
divides that work between processes (``benchmarks/voxel_speed.py`` for wall times).

Maps from plugin classes (the contract)
---------------------------------------
A feature class (deep or not) may provide maps by overriding the optional
:meth:`~deepradiomics.featureclass.FeatureClass.voxel_maps` (the base class returns None: no maps)::

    def voxel_maps(self, case) -> dict[str, SimpleITK.Image]:
        '''Feature token -> map on the case's grid (same size, spacing, origin, direction as its mask).'''

Tokens follow the naming grammar (letters, digits, ``-``, ``.``; no ``_``); the map is stored as
``<image_type>_<class>_<token>`` (e.g. ``original_vqhist_CodewordIndex``, ``original_cnn_Conv42Mean``).
Values are the class's business (a codeword index, an activation); voxels outside the region of
interest may hold anything the class documents. :func:`compute_maps` calls ``voxel_maps`` for every plugin
class of the params, in params order, after PyRadiomics' maps, checks each map's type and geometry
(``FeatureError`` naming the class and token), and skips, with a warning, a class whose
``voxel_maps`` returns None. Maps of PyRadiomics' classes are on PyRadiomics' grid instead: the bounding box of the ROI padded
by ``kernelRadius`` (resampled when ``resampledPixelSpacing`` is set); every map carries its own geometry,
and :func:`write_maps` writes any ``{name: SimpleITK.Image}``, whatever computed it.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import sys
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .batch.cache import cache_file_name
from .classical import PyRadiomicsBackend, diagnostic_value, pyradiomics_input
from .errors import DeepRadiomicsError, FeatureError, ParamsError, pyradiomics_missing
from .naming import format_name, is_feature
from .voxelengine.common import row_nanpercentile

try:
    from radiomics import featureextractor, getFeatureClasses
    from radiomics.firstorder import RadiomicsFirstOrder
    from radiomics.glcm import RadiomicsGLCM
except ModuleNotFoundError as exc:  # PyRadiomics is an extra of the pip install: say how to get it
    raise pyradiomics_missing(exc) from None

logger = logging.getLogger(__name__)

#: map file formats of :func:`write_maps` and their file suffixes
MAP_FORMATS = {"nrrd": ".nrrd", "nii.gz": ".nii.gz"}

#: chunks per worker and class: more than one evens out batches of unequal cost across workers
CHUNKS_PER_JOB = 2

#: voxels on which the vectorised percentiles are compared with numpy's, once per class instance
_PERCENTILE_CHECK_ROWS = 64


# -- the engine --------------------------------------------------------------------------------------
class _Pending:
    """Placeholder for one feature's map in PyRadiomics' result until its class's batches are done."""

    __slots__ = ("job", "feature")

    def __init__(self, job: _ClassJob, feature: str) -> None:
        self.job, self.feature = job, feature


def _calculate_batches(instance, batches: list[tuple[int, int]]) -> list[tuple[int, int, dict]]:
    """PyRadiomics' per-batch loop (``RadiomicsFeaturesBase._calculateVoxels``) over some of the batches.

    Returns ``(start, stop, {feature: values})`` per batch, with only the features that succeeded, as
    PyRadiomics stores only those (the others keep ``initValue``).
    """
    coordinates = instance.labelledVoxelCoordinates
    out = []
    for start, stop in batches:
        values = {}
        for success, feature, value in instance._calculateFeatures(coordinates[:, start:stop]):
            if success:
                values[feature] = value
        out.append((start, stop, values))
    return out


class _ClassJob:
    """The voxel batches of one (image type, class): computed here or in workers, assembled into maps."""

    def __init__(self, instance) -> None:
        self.features = [name for name, enabled in instance.enabledFeatures.items() if enabled]
        self.coordinates = instance.labelledVoxelCoordinates
        self.grid = instance.inputImage  # the maps' geometry
        self.progress_reporter = instance.progressReporter
        self.class_name = type(instance).__name__
        count = self.coordinates.shape[1]
        batch = instance.settings.get("voxelBatch", -1)
        if batch < 0:
            batch = count
        self.batch_count = int(np.ceil(float(count) / batch))  # PyRadiomics' own count (and its error for voxelBatch 0)
        self.batches = [(start, min(start + batch, count)) for start in range(0, count, batch)]
        shape = list(self.grid.GetSize())[::-1]
        self.arrays = {feature: np.full(shape, instance.settings.get("initValue", 0), dtype="float") for feature in self.features}
        self.futures: list = []

    def store(self, results: list[tuple[int, int, dict]]) -> None:
        for start, stop, values in results:
            index = tuple(self.coordinates[:, start:stop])
            for feature, value in values.items():
                self.arrays[feature][index] = value

    def maps(self) -> dict[str, sitk.Image]:
        out = {}
        for feature, array in self.arrays.items():
            image = sitk.GetImageFromArray(array)
            image.CopyInformation(self.grid)
            out[feature] = image
        return out


def _chunks(batches: list, count: int) -> list[list]:
    """``batches`` cut into ``count`` contiguous groups of (nearly) equal length."""
    count = max(1, min(count, len(batches)))
    size, extra = divmod(len(batches), count)
    out, start = [], 0
    for index in range(count):
        stop = start + size + (1 if index < extra else 0)
        out.append(batches[start:stop])
        start = stop
    return out


def _init_worker() -> None:
    # One BLAS/ITK thread per worker: `jobs` workers share the cores instead of oversubscribing them.
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # then the libraries keep their defaults
        return
    threadpool_limits(1)


class _Scheduler:
    """Runs class jobs in this process (``jobs == 1``) or in a pool of ``jobs`` processes."""

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, int(jobs))
        self.pending: list[_ClassJob] = []
        self._pool = None

    def __enter__(self) -> _Scheduler:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def pool(self):
        if self._pool is None:
            from concurrent.futures import ProcessPoolExecutor

            # fork is cheapest, but unsafe once torch has started its thread pools (as in deepradiomics.batch)
            method = "fork" if "torch" not in sys.modules and sys.platform.startswith("linux") else "spawn"
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context(method), initializer=_init_worker)
        return self._pool

    def submit(self, instance) -> _ClassJob:
        job = _ClassJob(instance)
        if self.jobs == 1:
            # computed now, as PyRadiomics does, so that the instance (and its arrays) can be freed
            with job.progress_reporter(total=job.batch_count, desc="batch") as progress:
                for batch in job.batches:
                    job.store(_calculate_batches(instance, [batch]))
                    progress.update(1)
        else:
            for chunk in _chunks(job.batches, CHUNKS_PER_JOB * self.jobs):
                job.futures.append(self.pool().submit(_calculate_batches, instance, chunk))
        self.pending.append(job)
        return job

    def collect(self) -> dict[_ClassJob, dict[str, sitk.Image]]:
        from concurrent.futures.process import BrokenProcessPool

        out = {}
        for job in self.pending:
            if job.futures:
                with job.progress_reporter(total=job.batch_count, desc="batch") as progress:
                    for future in job.futures:
                        try:
                            results = future.result()
                        except BrokenProcessPool as exc:
                            raise FeatureError(
                                f"a voxel worker process died (killed, e.g. out of memory) while computing {job.class_name}: "
                                "lower voxelBatch or jobs"
                            ) from exc
                        job.store(results)
                        progress.update(len(results))
            out[job] = job.maps()
        return out


class _VoxelFirstOrder(RadiomicsFirstOrder):
    """PyRadiomics' first-order class, each voxel percentile computed once per batch and without a row loop.

    PyRadiomics computes the 10th and 90th percentiles twice per batch (for themselves and for
    ``RobustMeanAbsoluteDeviation``), each with numpy's per-row loop. Here each percentile is computed once
    per batch by :func:`row_nanpercentile`, checked against numpy's on its first use in this instance (on
    the first rows of the batch)
    (PyRadiomics' numbers or nothing). Feature names, formulas and every other value are PyRadiomics'.
    """

    def __init__(self, inputImage, inputMask, **kwargs) -> None:  # noqa: N803 (PyRadiomics' argument names)
        self._batch_percentiles: dict = {}
        self._checked_percentiles: dict = {}  # percentile -> whether the vectorised path matched numpy
        super().__init__(inputImage, inputMask, **kwargs)
        self.logger = logging.getLogger(RadiomicsFirstOrder.__module__)  # PyRadiomics' logger, not this module's

    def _initCalculation(self, voxelCoordinates=None):  # noqa: N802, N803
        self._batch_percentiles = {}
        super()._initCalculation(voxelCoordinates)

    def _percentile(self, percentile: float) -> np.ndarray:
        if percentile not in self._batch_percentiles:
            self._batch_percentiles[percentile] = self._compute_percentile(percentile)
        return self._batch_percentiles[percentile]

    def _compute_percentile(self, percentile: float) -> np.ndarray:
        matched = self._checked_percentiles.get(percentile)
        values = self.targetVoxelArray
        if matched is False or np.any(np.signbit(values) & (values == 0)):
            return np.nanpercentile(values, percentile, axis=1)
        fast = row_nanpercentile(values, percentile)
        if matched is None:
            # rows are computed independently: a sample of them shows whether numpy's arithmetic is the same
            sample = values[:_PERCENTILE_CHECK_ROWS]
            reference = np.nanpercentile(sample, percentile, axis=1)
            matched = bool(fast.dtype == reference.dtype and fast[: len(sample)].tobytes() == reference.tobytes())
            self._checked_percentiles[percentile] = matched
            if not matched:
                logger.debug("vectorised %sth percentile differs from numpy's: using numpy's", percentile)
                return np.nanpercentile(values, percentile, axis=1)
        return fast

    def get10PercentileFeatureValue(self):  # noqa: N802
        return self._percentile(10)

    def get90PercentileFeatureValue(self):  # noqa: N802
        return self._percentile(90)

    def getInterquartileRangeFeatureValue(self):  # noqa: N802
        return self._percentile(75) - self._percentile(25)


class _VoxelGLCM(RadiomicsGLCM):
    """PyRadiomics' GLCM class, without the work PyRadiomics throws away or repeats within a batch.

    - ``MCC`` builds a matrix per voxel and angle, then takes its eigenvalues with ``numpy.linalg.eigvals``,
      which raises for the whole batch when any element is not finite; PyRadiomics then logs the failure
      and the batch keeps ``initValue``. An element is NaN exactly when some voxel of the batch has an
      empty GLCM along some angle (its matrix is normalised by a NaN sum), which is common at the ROI's
      border: on brain1 most batches fail, after MCC has taken ~45 % of the GLCM time. Here that case
      raises the same ``LinAlgError`` before building the matrices.
    - ``ClusterProminence``, ``ClusterShade`` and ``ClusterTendency`` each compute ``i + j - ux - uy`` over the
      whole batch, ``Imc1`` and ``Imc2`` each ``log2(px * py + eps)``: computed once per batch here, with
      the same operations in the same order, so every value is PyRadiomics' to the bit.
    """

    def __init__(self, inputImage, inputMask, **kwargs) -> None:  # noqa: N803 (PyRadiomics' argument names)
        self._batch_terms: dict = {}
        super().__init__(inputImage, inputMask, **kwargs)
        self.logger = logging.getLogger(RadiomicsGLCM.__module__)  # PyRadiomics' logger, not this module's

    def _initCalculation(self, voxelCoordinates=None):  # noqa: N802, N803
        self._batch_terms = {}
        super()._initCalculation(voxelCoordinates)

    def _term(self, name: str) -> np.ndarray:
        """A subexpression shared by several features of this batch, as PyRadiomics writes it in each."""
        if name not in self._batch_terms:
            c = self.coefficients
            if name == "cluster":  # ClusterProminence, ClusterShade, ClusterTendency
                value = (c["i"] + c["j"])[None, :, :, None] - c["ux"] - c["uy"]
            elif name == "pxpy":  # Imc2
                value = c["px"] * c["py"]
            else:  # "logpxpy": Imc1, Imc2
                value = np.log2(self._term("pxpy") + c["eps"])
            self._batch_terms[name] = value
        return self._batch_terms[name]

    def getMCCFeatureValue(self):  # noqa: N802
        if _eigvals_refuses_nan() and not np.isfinite(self.P_glcm).all():  # then Q is not finite either
            raise np.linalg.LinAlgError("Array must not contain infs or NaNs")
        return super().getMCCFeatureValue()

    # PyRadiomics' formulas (glcm.py), with the shared terms computed once
    def getClusterProminenceFeatureValue(self):  # noqa: N802
        return np.nanmean(np.sum((self.P_glcm * (self._term("cluster") ** 4)), (1, 2)), 1)

    def getClusterShadeFeatureValue(self):  # noqa: N802
        return np.nanmean(np.sum((self.P_glcm * (self._term("cluster") ** 3)), (1, 2)), 1)

    def getClusterTendencyFeatureValue(self):  # noqa: N802
        return np.nanmean(np.sum((self.P_glcm * (self._term("cluster") ** 2)), (1, 2)), 1)

    def getImc1FeatureValue(self):  # noqa: N802
        c = self.coefficients
        hx = (-1) * np.sum((c["px"] * np.log2(c["px"] + c["eps"])), (1, 2))
        hy = (-1) * np.sum((c["py"] * np.log2(c["py"] + c["eps"])), (1, 2))
        hxy1 = (-1) * np.sum((self.P_glcm * self._term("logpxpy")), (1, 2))
        div = np.fmax(hx, hy)
        imc1 = c["HXY"] - hxy1
        imc1[div != 0] /= div[div != 0]
        imc1[div == 0] = 0  # PyRadiomics: 0 where HX and HY are both 0
        return np.nanmean(imc1, 1)

    def getImc2FeatureValue(self):  # noqa: N802
        hxy = self.coefficients["HXY"]
        hxy2 = (-1) * np.sum((self._term("pxpy") * self._term("logpxpy")), (1, 2))
        imc2 = (1 - np.e ** (-2 * (hxy2 - hxy))) ** 0.5
        imc2[hxy2 == hxy] = 0  # PyRadiomics: 0 where HXY2 equals HXY
        return np.nanmean(imc2, 1)


@functools.cache  # a property of the installed numpy, checked once per process
def _eigvals_refuses_nan() -> bool:
    """Whether ``numpy.linalg.eigvals`` raises on a non-finite matrix (what the MCC shortcut relies on)."""
    try:
        np.linalg.eigvals(np.full((1, 2, 2), np.nan))
    except np.linalg.LinAlgError:
        return True
    return False


#: PyRadiomics classes replaced, in voxel mode, by a subclass computing the same values with less work
_VOXEL_CLASSES = {"firstorder": _VoxelFirstOrder, "glcm": _VoxelGLCM}


class _ParallelVoxelExtractor(featureextractor.RadiomicsFeatureExtractor):
    """PyRadiomics' extractor with the per-class voxel computation handed to a :class:`_Scheduler`.

    Everything before the feature classes (loading, ``label_channel``, normalisation, resampling, mask
    checks and correction, resegmentation, diagnostics, filters, cropping with ``padDistance =
    kernelRadius``) is PyRadiomics' own ``execute``; only ``computeFeatures`` is replaced, in voxel mode.
    """

    def __init__(self, source: featureextractor.RadiomicsFeatureExtractor, scheduler: _Scheduler) -> None:
        # Not PyRadiomics' __init__ (it would read params again): take the configured extractor's state.
        self.__dict__.update(source.__dict__)
        self.settings = dict(source.settings)
        self._scheduler = scheduler

    def computeFeatures(self, image, mask, imageTypeName, **kwargs):  # noqa: N802 (PyRadiomics' method name)
        if not kwargs.get("voxelBased", False):
            return super().computeFeatures(image, mask, imageTypeName, **kwargs)
        vector = OrderedDict()
        feature_classes = getFeatureClasses()
        for class_name, feature_names in self.enabledFeatures.items():
            if class_name.startswith("shape") or class_name not in feature_classes:
                continue  # as PyRadiomics: shape is not computed voxel-wise, unknown names are ignored
            instance = _VOXEL_CLASSES.get(class_name, feature_classes[class_name])(image, mask, **kwargs)
            for feature in feature_names or ():
                instance.enableFeatureByName(feature)
            if not instance.enabledFeatures:  # RadiomicsFeaturesBase.execute's rule
                instance.enableAllFeatures()
            job = self._scheduler.submit(instance)
            for feature in job.features:
                vector[f"{imageTypeName}_{class_name}_{feature}"] = _Pending(job, feature)
        return vector


def compute_voxel_features(
    extractor: featureextractor.RadiomicsFeatureExtractor,
    image,
    mask,
    label: int | None = None,
    label_channel: int | None = None,
    jobs: int = 1,
) -> OrderedDict:
    """PyRadiomics' ``extractor.execute(image, mask, label, label_channel, voxelBased=True)``, over ``jobs`` processes.

    Parameters
    ----------
    extractor
        A configured ``radiomics.featureextractor.RadiomicsFeatureExtractor`` (its settings, voxel
        settings, image types and classes are used as they are; it is not modified).
    image, mask
        Paths or ``SimpleITK.Image`` (a vector mask with ``label_channel``), as PyRadiomics takes them.
    label, label_channel
        As in PyRadiomics (default: the extractor's ``label`` setting, channel 0).
    jobs
        Worker processes; 1 computes in this process. The maps do not depend on it.

    Returns
    -------
    OrderedDict
        PyRadiomics' voxel-mode result: its ``diagnostics_*`` (when ``additionalInfo`` is on) then one
        ``SimpleITK.Image`` per feature, keys and values identical to PyRadiomics' own (see the module
        docstring), except that an integer image whose PyRadiomics bin edges would overflow is widened
        first (:func:`deepradiomics.classical.widen_if_overflowing`).
    """
    image = pyradiomics_input(image, extractor.settings, extractor.enabledImagetypes)
    mask = str(mask) if isinstance(mask, os.PathLike) else mask
    with _Scheduler(jobs) as scheduler:
        engine = _ParallelVoxelExtractor(extractor, scheduler)
        result = engine.execute(image, mask, label=label, label_channel=label_channel, voxelBased=True)
        maps = scheduler.collect()
    for key, value in result.items():
        if isinstance(value, _Pending):
            result[key] = maps[value.job][value.feature]
    return result


# -- maps of a params set on a case ----------------------------------------------------------------
def plugin_maps(classes: Mapping[str, Any], case) -> OrderedDict:
    """Maps of the plugin classes that provide them (``voxel_maps``; see the module docstring), checked, in order."""
    from .case import same_geometry

    out: OrderedDict = OrderedDict()
    reference = case.mask_image() if classes else None
    for name, feature_class in classes.items():
        try:
            produced = feature_class.voxel_maps(case)
        except DeepRadiomicsError:
            raise
        except Exception as exc:
            raise FeatureError(f"feature class '{name}' failed to compute its voxel maps on case '{case.case_id}': {type(exc).__name__}: {exc}") from exc
        if produced is None:
            logger.warning("feature class '%s' provides no voxel maps: skipped in voxel mode", name)
            continue
        for token, image in produced.items():
            try:
                key = format_name(feature_class.image_type, name, token)
            except ValueError as exc:
                raise FeatureError(f"feature class '{name}' returned a voxel map named {token!r}: {exc}") from exc
            if not isinstance(image, sitk.Image):
                raise FeatureError(f"feature class '{name}' returned {type(image).__name__} for voxel map '{token}': return a SimpleITK.Image")
            mismatch = same_geometry(image, reference)
            if mismatch:
                raise FeatureError(
                    f"voxel map '{key}' of feature class '{name}' is not on the grid of case '{case.case_id}' ({mismatch}): "
                    "return maps with the mask's size, spacing, origin and direction"
                )
            out[key] = image
    return out


#: the diagnostics entry of a case's maps naming the engine that computed PyRadiomics' classes
ENGINE_DIAGNOSTIC = "diagnostics_Voxel_Engine"


def compute_maps(
    backend, classes: Mapping[str, Any], case, jobs: int = 1, diagnostics: bool = False, engine: str = "fast", record_engine: bool = True
) -> OrderedDict:
    """Feature maps of one case: ``{feature name: SimpleITK.Image}``.

    Parameters
    ----------
    backend
        What computes PyRadiomics' classes: a :class:`~deepradiomics.classical.PyRadiomicsBackend`, a
        configured ``radiomics.featureextractor.RadiomicsFeatureExtractor`` (the drop-in included), or None
        (no PyRadiomics class). Its ``setting`` and ``voxelSetting`` (``kernelRadius``, ``maskedKernel``,
        ``initValue``, ``voxelBatch``) are used as they are.
    classes
        ``{name: FeatureClass}`` of the plugin classes, in params order (fitted ones already fitted).
    case
        The :class:`~deepradiomics.case.Case`: PyRadiomics' classes read its main image, mask and label.
    jobs
        Worker processes for PyRadiomics' maps (identical maps for any value).
    diagnostics
        Also return PyRadiomics' ``diagnostics_*`` entries (first, as PyRadiomics orders them).
    engine
        ``"fast"`` (default): :mod:`deepradiomics.voxelengine`, the same maps from what each kernel holds
        (a class it declines is computed by PyRadiomics' engine, named in the record); ``"pyradiomics"``:
        PyRadiomics' own engine over ``jobs`` processes (:func:`compute_voxel_features`).
    record_engine
        Add ``diagnostics_Voxel_Engine``: which engine computed PyRadiomics' classes, and any fallback with
        its reason.

    Returns
    -------
    OrderedDict
        PyRadiomics' maps in PyRadiomics' order, then plugin classes' maps in params order.
    """
    extractor = backend.extractor if isinstance(backend, PyRadiomicsBackend) else backend
    out: OrderedDict = OrderedDict()
    if extractor is not None and (extractor.enabledFeatures or diagnostics):
        image, mask = case.image(), case.mask_image()
        try:
            if engine == "fast":
                from .voxelengine import compute_voxel_features_fast, engine_diagnostic

                result, record = compute_voxel_features_fast(extractor, image, mask, label=case.label, jobs=jobs)
                used = engine_diagnostic(record)
            elif engine == "pyradiomics":
                result, used = compute_voxel_features(extractor, image, mask, label=case.label, jobs=jobs), "pyradiomics"
            else:
                raise ParamsError(f"voxelSetting.engine '{engine}' is not one of fast, pyradiomics")
        except (ValueError, RuntimeError, AssertionError, IndexError) as exc:
            if isinstance(exc, DeepRadiomicsError):
                raise
            raise FeatureError(
                f"PyRadiomics' voxel-based extraction failed on case '{case.case_id}' (image '{case.source('Image')}', "
                f"mask '{case.source('mask')}', label {case.label}): {exc}"
            ) from exc
        for key, value in result.items():
            if diagnostics or isinstance(value, sitk.Image):
                out[key] = value
        if record_engine:
            out[ENGINE_DIAGNOSTIC] = used
    out.update(plugin_maps(classes, case))
    return out


def write_maps(maps: Mapping[str, Any], out_dir: str | os.PathLike, fmt: str = "nrrd", case_id: str = "case"):
    """Write every ``SimpleITK.Image`` of ``maps`` to ``out_dir/<name>.<fmt>``; return the one-row table.

    Parameters
    ----------
    maps
        ``{feature name: SimpleITK.Image}`` from any source (:func:`compute_maps`,
        :func:`compute_voxel_features`, the drop-in's ``execute(..., voxelBased=True)``, a plugin's
        ``voxel_maps`` renamed with :func:`deepradiomics.naming.format_name`). Other values (diagnostics)
        are copied into the row as PyRadiomics' CLI writes them (plain values, containers as text).
    out_dir
        Folder for the files (created); use one folder per case.
    fmt
        ``"nrrd"`` or ``"nii.gz"``; files are compressed.
    case_id
        Index of the returned row.

    Returns
    -------
    pandas.DataFrame
        One row indexed by ``case_id`` (index name ``ID``): each map's name -> the path of its file, in
        the order of ``maps``. A file is written under a temporary name and renamed, so an interrupted
        run never leaves a truncated map under its final name.
    """
    import pandas as pd

    if fmt not in MAP_FORMATS:
        raise ParamsError(f"map format {fmt!r} is not supported: use one of {', '.join(MAP_FORMATS)}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {}
    for name, value in maps.items():
        if not isinstance(value, sitk.Image):
            row[name] = diagnostic_value(value)  # PyRadiomics' diagnostics hold numpy scalars and tuples of them
            continue
        if not is_feature(str(name)):
            raise FeatureError(f"voxel map name {name!r} is not a feature name <imageType>_<featureClass>_<Feature>: name maps with naming.format_name")
        target = folder / f"{name}{MAP_FORMATS[fmt]}"
        temporary = folder / f".{name}.{os.getpid()}.tmp{MAP_FORMATS[fmt]}"
        sitk.WriteImage(value, str(temporary), True)
        os.replace(temporary, target)
        row[name] = str(target)
    return pd.DataFrame([row], index=pd.Index([case_id], name="ID"))


def on_image_grid(maps: Mapping[str, Any], reference) -> OrderedDict:
    """``maps`` with every map put on the grid of ``reference`` (the case's image); other values unchanged.

    PyRadiomics' maps cover the ROI's bounding box padded by ``kernelRadius`` (on the resampled grid when
    ``resampledPixelSpacing`` is set). A map whose grid is that of ``reference`` cropped (same spacing and
    direction, origin on a voxel of it) is pasted voxel for voxel; any other map is resampled onto it by
    nearest neighbour. Voxels outside the map take NaN for floating-point maps and 0 for integer maps
    (a codeword index, a label). The values inside are never interpolated.
    """
    out: OrderedDict = OrderedDict()
    for name, value in maps.items():
        if not isinstance(value, sitk.Image):
            out[name] = value
            continue
        integer = value.GetPixelID() in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64)
        fill = 0 if integer else float("nan")
        resampler = sitk.ResampleImageFilter()
        resampler.SetReferenceImage(reference)
        resampler.SetInterpolator(sitk.sitkNearestNeighbor)
        resampler.SetDefaultPixelValue(fill)
        resampler.SetOutputPixelType(value.GetPixelID())
        out[name] = resampler.Execute(value)
    return out


GRIDS = ("image", "native")


@dataclass(frozen=True)
class VoxelOutput:
    """Where and how ``--mode voxel`` writes a case's feature maps (``maps_dir/<case>/<feature>.<fmt>``).

    ``grid="image"`` puts every map on the case's image grid (:func:`on_image_grid`); ``"native"`` keeps
    PyRadiomics' own (the ROI's padded bounding box). ``jobs`` splits one case's PyRadiomics maps over
    worker processes (identical values).
    """

    maps_dir: str
    fmt: str = "nrrd"
    grid: str = "image"
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.fmt not in MAP_FORMATS:
            raise ParamsError(f"map format '{self.fmt}' is not one of {', '.join(MAP_FORMATS)}")
        if self.grid not in GRIDS:
            raise ParamsError(f"map grid '{self.grid}' is not one of {', '.join(GRIDS)}")

    def folder(self, case_id: str) -> Path:
        """The folder of one case's maps."""
        return Path(self.maps_dir) / cache_file_name(case_id)

    def describe(self) -> dict:
        """What the rows written by this output depend on (for the batch cache key)."""
        return {"maps_dir": str(Path(self.maps_dir).resolve()), "fmt": self.fmt, "grid": self.grid}

    def write(self, maps: Mapping[str, Any], case, folder: str | os.PathLike | None = None) -> dict:
        """Write ``maps`` of ``case`` (to ``folder``, default :meth:`folder`, on the configured grid); return the row
        ``feature name -> file path`` (other entries, such as PyRadiomics' diagnostics, copied as they are)."""
        if self.grid == "image":
            maps = on_image_grid(maps, case.image())
        table = write_maps(maps, folder if folder is not None else self.folder(case.case_id), fmt=self.fmt, case_id=case.case_id)
        return table.iloc[0].to_dict()


def missing_map_files(row: Mapping[str, Any]) -> str | None:
    """A stored voxel-mode row whose map files are gone is not reused (None when every file exists).

    A map that exists but was truncated or replaced is caught by the batch cache, which stores each map's
    sha256 with the row (:meth:`deepradiomics.batch.BatchTask.side_files`) and checks it on resume."""
    for key, value in row.items():
        if is_feature(key) and not (isinstance(value, str) and Path(value).is_file()):
            return f"map file of '{key}' is missing ({value})"
    return None
