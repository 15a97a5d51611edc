"""The class-level entry point: one PyRadiomics feature class instance in voxel mode -> its feature values."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .common import voxel_batches

logger = logging.getLogger(__name__)

#: the PyRadiomics version whose voxel mode this engine reproduces
PYRADIOMICS_VERSION = "v3.0.1"
#: ``radiomics.__version__`` of the installs it reproduces: 3.0.1 (``make install``) and pyradiomics-bhklab 3.1.4 (the
#: ``pyradiomics`` extra of ``pip install``), whose feature classes and C code are 3.0.1's (it changes docstrings and
#: casts label arguments to int); tests/test_voxelengine.py passes with either
PYRADIOMICS_VERSIONS = (PYRADIOMICS_VERSION, "v3.1.4")

Mapper = Callable[[Callable, Iterable], Iterable]


@dataclass(frozen=True)
class ClassVoxels:
    """The engine's answer for one feature class instance.

    Attributes
    ----------
    values
        ``{feature: 1-D float array}`` at ``instance.labelledVoxelCoordinates`` (column order), for every
        enabled feature in ``instance.enabledFeatures`` order; voxels where PyRadiomics keeps
        ``initValue`` (a failed batch, a deprecated feature) hold it. None when unsupported.
    reason
        Why the engine declined (then use PyRadiomics' own engine); None when supported.
    """

    values: dict | None
    reason: str | None = None

    @property
    def supported(self) -> bool:
        """Whether the engine computed the class (else see :attr:`reason`)."""
        return self.reason is None


def _engines() -> dict:
    """PyRadiomics feature class -> engine class."""
    from radiomics.firstorder import RadiomicsFirstOrder
    from radiomics.glcm import RadiomicsGLCM
    from radiomics.gldm import RadiomicsGLDM
    from radiomics.glrlm import RadiomicsGLRLM
    from radiomics.glszm import RadiomicsGLSZM
    from radiomics.ngtdm import RadiomicsNGTDM

    from .firstorder import FirstOrderEngine
    from .glcm import GLCMEngine
    from .gldm import GLDMEngine
    from .glrlm import GLRLMEngine
    from .glszm import GLSZMEngine
    from .ngtdm import NGTDMEngine

    return {
        RadiomicsFirstOrder: FirstOrderEngine,
        RadiomicsGLCM: GLCMEngine,
        RadiomicsGLRLM: GLRLMEngine,
        RadiomicsGLSZM: GLSZMEngine,
        RadiomicsGLDM: GLDMEngine,
        RadiomicsNGTDM: NGTDMEngine,
    }


def _engine_class(instance):
    """(engine class, None) for a supported instance type, else (None, reason)."""
    engines = _engines()
    kind = type(instance)
    if kind in engines:
        return engines[kind], None
    # deepradiomics.voxel's own subclasses compute PyRadiomics' values with less work (its docstring)
    for base, engine in engines.items():
        if isinstance(instance, base) and kind.__module__ == "deepradiomics.voxel":
            return engine, None
    return None, f"feature class {kind.__module__}.{kind.__qualname__} is not one of PyRadiomics' voxel-mode classes"


def _module_of(engine_class):
    import importlib

    return importlib.import_module(engine_class.__module__)


def enabled_features(instance) -> list[str]:
    """The instance's enabled features, in PyRadiomics' order (``enabledFeatures``)."""
    return [name for name, enabled in instance.enabledFeatures.items() if enabled]


def settings_problem(instance) -> str | None:
    """Why the engine cannot reproduce PyRadiomics' voxel mode for this instance's settings (None: it can)."""
    import radiomics

    if radiomics.__version__ not in PYRADIOMICS_VERSIONS:
        return f"PyRadiomics {radiomics.__version__} is installed; the engine reproduces {' or '.join(PYRADIOMICS_VERSIONS)}"
    if not getattr(instance, "voxelBased", False):
        return "the feature class was not built for voxel mode (voxelBased=True)"
    settings = instance.settings
    radius = settings.get("kernelRadius", 1)
    if not isinstance(radius, (int, np.integer)) or isinstance(radius, bool) or radius < 1:
        return f"kernelRadius {radius!r} (PyRadiomics' C code requires an integer > 0)"
    batch = settings.get("voxelBatch", -1)
    if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch == 0:
        return f"voxelBatch {batch!r} (PyRadiomics divides by it: a non-zero integer)"
    if settings.get("force2D", False) and settings.get("force2Ddimension", 0) not in (0, 1, 2):
        return f"force2Ddimension {settings.get('force2Ddimension')!r}"
    distances = settings.get("distances", [1])
    try:
        if any(int(d) != d or d < 1 for d in distances):
            return f"distances {distances!r} (PyRadiomics requires integers >= 1)"
    except TypeError:
        return f"distances {distances!r}"
    if instance.imageArray.ndim != 3:
        return f"a {instance.imageArray.ndim}-D image (the engine takes 3-D images)"
    return None


def make_engine(instance) -> tuple[object | None, list[tuple[int, int]], str | None]:
    """(engine, PyRadiomics' voxel batches, None), or (None, [], reason) when it cannot be used."""
    engine_class, reason = _engine_class(instance)
    if reason is None:
        reason = settings_problem(instance)
    if reason is not None:
        return None, [], reason
    features = enabled_features(instance)
    known = _module_of(engine_class).FEATURES
    unknown = [name for name in features if name not in known]
    if unknown:
        return None, [], f"feature(s) {', '.join(unknown)} not known to the engine"
    count = instance.labelledVoxelCoordinates.shape[1]
    bounds = voxel_batches(count, int(instance.settings.get("voxelBatch", -1)))
    engine = engine_class(instance, features)
    reason = engine.unsupported(bounds)
    if reason is not None:
        return None, [], reason
    return engine, bounds, None


def compute_class(instance, mapper: Mapper = map) -> ClassVoxels:
    """PyRadiomics' voxel-mode values of one feature class instance, from the kernels' few cells.

    Parameters
    ----------
    instance
        A PyRadiomics feature class built for voxel mode exactly as PyRadiomics' extractor builds it:
        ``cls(image, mask, voxelBased=True, **settings)``, then its features enabled (all when none are).
        It is used, not copied: its matrix attributes hold the last batch afterwards, as after
        PyRadiomics' own computation.
    mapper
        ``map``-like callable for the per-chunk work (e.g. a process pool's ``map``); results in order.

    Returns
    -------
    ClassVoxels
        The values of every enabled feature, equal to PyRadiomics' ``execute()`` on the same instance
        (same ``voxelBatch`` semantics), or the reason the engine declined.
    """
    engine, bounds, reason = make_engine(instance)
    if reason is not None:
        return ClassVoxels(None, reason)
    initial = instance.settings.get("initValue", 0)
    values = engine.run(bounds, initial, mapper)
    return ClassVoxels(OrderedDict((name, values[name]) for name in enabled_features(instance)))


def class_maps(instance, values: dict) -> OrderedDict:
    """``{feature: SimpleITK.Image}`` as PyRadiomics' ``_calculateVoxels`` returns them, from ``values``.

    Each map has the class's input image geometry (PyRadiomics' cropped, padded grid), ``initValue``
    outside the ROI's voxels and a float64 pixel type.
    """
    import SimpleITK as sitk

    shape = list(instance.inputImage.GetSize())[::-1]
    initial = instance.settings.get("initValue", 0)
    coordinates = tuple(instance.labelledVoxelCoordinates)
    out = OrderedDict()
    for name, array in values.items():
        full = np.full(shape, initial, dtype="float")
        full[coordinates] = array
        image = sitk.GetImageFromArray(full)
        image.CopyInformation(instance.inputImage)
        out[name] = image
    return out
