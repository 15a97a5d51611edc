"""PyRadiomics' voxel-mode pipeline with the feature classes computed by this engine (falling back per class)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections import OrderedDict

from ..errors import pyradiomics_missing
from .core import class_maps, compute_class, enabled_features

try:
    from radiomics import featureextractor, getFeatureClasses
except ModuleNotFoundError as exc:  # PyRadiomics is an extra of the pip install: say how to get it
    raise pyradiomics_missing(exc) from None

logger = logging.getLogger(__name__)

#: engine record value of a class computed by this engine
ENGINE = "voxelengine"


def _pyradiomics_values(instance) -> OrderedDict:
    """PyRadiomics' own voxel computation of the instance (``execute``): ``{feature: full map array}``."""
    import SimpleITK as sitk

    maps = instance.execute()
    return OrderedDict((name, sitk.GetArrayFromImage(image)) for name, image in maps.items())


def compute_class_task(instance) -> tuple[str, str | None, OrderedDict]:
    """One class, here or in a worker: ``("engine", None, {feature: values at the ROI voxels})`` or
    ``("pyradiomics", reason, {feature: full map array})`` when the engine declines (or fails: logged)."""
    try:
        result = compute_class(instance)
    except Exception as exc:  # the engine's own failure: PyRadiomics computes the class instead, and it is said
        logger.warning("voxelengine failed on %s (%s: %s): PyRadiomics' engine computes it", type(instance).__name__, type(exc).__name__, exc)
        return "pyradiomics", f"engine error: {type(exc).__name__}: {exc}", _pyradiomics_values(instance)
    if result.supported:
        return "engine", None, result.values
    logger.info("voxelengine declines %s (%s): PyRadiomics' engine computes it", type(instance).__name__, result.reason)
    return "pyradiomics", result.reason, _pyradiomics_values(instance)


class _Pending:
    """A map whose class is still being computed (resolved after PyRadiomics' ``execute`` returns)."""

    __slots__ = ("task", "feature")

    def __init__(self, task: _ClassTask, feature: str) -> None:
        self.task, self.feature = task, feature


class _ClassTask:
    def __init__(self, key: str, instance, future=None, result=None) -> None:
        self.key = key
        self.instance = instance  # kept for the maps' geometry and coordinates
        self.future = future
        self._result = result
        self._maps = None

    def maps(self) -> OrderedDict:
        if self._maps is None:
            import SimpleITK as sitk

            kind, _, values = self.result()
            if kind == "engine":
                self._maps = class_maps(self.instance, values)
            else:
                self._maps = OrderedDict()
                for name, array in values.items():
                    image = sitk.GetImageFromArray(array)
                    image.CopyInformation(self.instance.inputImage)
                    self._maps[name] = image
        return self._maps

    def result(self):
        if self._result is None:
            self._result = self.future.result()
        return self._result


def _init_worker() -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:  # one BLAS thread per worker: the workers share the cores
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


class FastVoxelExtractor(featureextractor.RadiomicsFeatureExtractor):
    """PyRadiomics' extractor whose voxel-mode classes are computed by :mod:`deepradiomics.voxelengine`.

    Everything before the feature classes (loading, ``label_channel``, normalisation, resampling, mask
    checks, resegmentation, diagnostics, filters, cropping with ``padDistance = kernelRadius``) is
    PyRadiomics' own ``execute``; only ``computeFeatures`` in voxel mode is replaced: each class instance
    is built exactly as PyRadiomics builds it, then computed by the engine, or by PyRadiomics' own engine
    when the engine declines (recorded in :attr:`engine_record`). With a ``pool`` the classes run in its
    processes (longest first) and :meth:`resolve` fills the maps in after ``execute``.
    """

    def __init__(self, source: featureextractor.RadiomicsFeatureExtractor, pool=None) -> None:
        # Not PyRadiomics' __init__ (it would read params again): take the configured extractor's state.
        self.__dict__.update(source.__dict__)
        self.settings = dict(source.settings)
        self._pool = pool
        self._tasks: list[_ClassTask] = []

    def computeFeatures(self, image, mask, imageTypeName, **kwargs):  # noqa: N802, N803 (PyRadiomics' names)
        """PyRadiomics' ``computeFeatures``; in voxel mode each class by the engine (pending maps, see :meth:`resolve`)."""
        if not kwargs.get("voxelBased", False):
            return super().computeFeatures(image, mask, imageTypeName, **kwargs)
        vector = OrderedDict()
        classes = getFeatureClasses()
        built = []
        for class_name, feature_names in self.enabledFeatures.items():
            if class_name.startswith("shape") or class_name not in classes:
                continue  # as PyRadiomics: shape is not computed voxel-wise, unknown names are ignored
            logger.info("Computing %s", class_name)
            instance = classes[class_name](image, mask, **kwargs)
            for feature in feature_names or ():
                instance.enableFeatureByName(feature)
            if not instance.enabledFeatures:  # RadiomicsFeaturesBase.execute's rule
                instance.enableAllFeatures()
            built.append((class_name, instance))
        # GLCM is the longest: submitted first, so one worker takes it while the others share the rest
        order = sorted(range(len(built)), key=lambda k: built[k][0] != "glcm")
        tasks: dict[int, _ClassTask] = {}
        for k in order:
            class_name, instance = built[k]
            key = f"{imageTypeName}_{class_name}"
            if self._pool is None:
                tasks[k] = _ClassTask(key, instance, result=compute_class_task(instance))
            else:
                tasks[k] = _ClassTask(key, instance, future=self._pool.submit(compute_class_task, instance))
        for k, (class_name, instance) in enumerate(built):
            task = tasks[k]
            self._tasks.append(task)
            for feature in enabled_features(instance):
                vector[f"{imageTypeName}_{class_name}_{feature}"] = _Pending(task, feature)
        return vector

    @property
    def engine_record(self) -> OrderedDict:
        """``{"<imageType>_<class>": "voxelengine" | "pyradiomics (<reason>)"}`` for the classes computed."""
        out = OrderedDict()
        for task in self._tasks:
            kind, reason, _ = task.result()
            out[task.key] = ENGINE if kind == "engine" else f"pyradiomics ({reason})"
        return out

    def resolve(self, result: OrderedDict) -> OrderedDict:
        """PyRadiomics' result with every pending map filled in."""
        for key, value in result.items():
            if isinstance(value, _Pending):
                result[key] = value.task.maps()[value.feature]
        return result


def _pool(jobs: int):
    from concurrent.futures import ProcessPoolExecutor

    # fork is cheapest, but unsafe once torch has started its thread pools
    method = "fork" if "torch" not in sys.modules and sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(method), initializer=_init_worker)


def compute_voxel_features_fast(
    extractor: featureextractor.RadiomicsFeatureExtractor,
    image,
    mask,
    label: int | None = None,
    label_channel: int | None = None,
    jobs: int = 1,
) -> tuple[OrderedDict, OrderedDict]:
    """PyRadiomics' ``extractor.execute(image, mask, label, label_channel, voxelBased=True)``, classes by the engine.

    Parameters
    ----------
    extractor
        A configured ``radiomics.featureextractor.RadiomicsFeatureExtractor`` (used as it is, not modified).
    image, mask
        Paths or ``SimpleITK.Image`` (a vector mask with ``label_channel``), as PyRadiomics takes them.
    label, label_channel
        As in PyRadiomics.
    jobs
        Worker processes; 1 computes in this process. The classes (of every image type) are shared
        between the workers, GLCM first. The maps do not depend on it.

    Returns
    -------
    (OrderedDict, OrderedDict)
        PyRadiomics' voxel-mode result (its ``diagnostics_*`` then one ``SimpleITK.Image`` per feature, same
        keys, order and geometry; every map equal to PyRadiomics' own, see the package docstring; the
        image is read and widened as :func:`deepradiomics.classical.pyradiomics_input` does), and the
        engine record ``{"<imageType>_<class>": "voxelengine" | "pyradiomics (<reason>)"}``.
    """
    from deepradiomics.classical import pyradiomics_input

    image = pyradiomics_input(image, extractor.settings, extractor.enabledImagetypes)
    mask = str(mask) if isinstance(mask, os.PathLike) else mask
    pool = _pool(int(jobs)) if int(jobs) > 1 else None
    try:
        engine = FastVoxelExtractor(extractor, pool)
        result = engine.execute(image, mask, label=label, label_channel=label_channel, voxelBased=True)
        result = engine.resolve(result)
        record = engine.engine_record
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return result, record


def engine_diagnostic(record: OrderedDict) -> str:
    """One line for a diagnostics column: ``"voxelengine"`` when the engine computed every class, else each
    class that PyRadiomics computed, with the reason."""
    fallen = [f"{key}: {value}" for key, value in record.items() if value != ENGINE]
    return ENGINE if not fallen else f"{ENGINE}; " + "; ".join(fallen)

