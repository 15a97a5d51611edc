"""Drop-in for PyRadiomics' ``radiomics.featureextractor.RadiomicsFeatureExtractor``.

An existing PyRadiomics script swaps one import and changes nothing else::

    # from radiomics.featureextractor import RadiomicsFeatureExtractor
    from deepradiomics.compat import RadiomicsFeatureExtractor

    extractor = RadiomicsFeatureExtractor("params.yaml", binWidth=10)
    result = extractor.execute("image.nrrd", "mask.nrrd", label=1)   # PyRadiomics' own OrderedDict
    result["original_firstorder_Mean"].item()

The class *is* PyRadiomics' extractor (a subclass): settings, ``enable*``/``disable*``, ``addProvenance``,
``loadParams`` and ``execute`` behave as PyRadiomics'. What it returns is what PyRadiomics returns:

- the same keys in the same order (diagnostics, shape, then per image type each class), the same types
  (0-d float64 arrays for features; tuples, dicts, numpy scalars for diagnostics) and values;
- ``addProvenance(False)`` (``additionalInfo``) drops every ``diagnostics_*`` key; no key of its own is added;
- ``label`` and ``label_channel`` (a vector mask: one channel per segment) as PyRadiomics;
- ``execute(..., voxelBased=True)``: PyRadiomics' voxel-based result (diagnostics and one
  ``SimpleITK.Image`` per feature, identical to PyRadiomics'), computed by :mod:`deepradiomics.voxel`,
  which can spread the voxel batches over worker processes (``jobs=``);
- its exceptions are catchable as PyRadiomics': a missing params file raises
  :class:`~deepradiomics.errors.ParamsFileNotFoundError` (an ``IOError``, as PyRadiomics raises), invalid
  params raise ``deepradiomics.errors.ParamsSchemaError`` (pykwalify's ``SchemaError``, as PyRadiomics
  raises); both are also :class:`~deepradiomics.errors.ParamsError`. Errors of PyRadiomics' extraction
  (``ValueError`` for a mask without the label, ...) are PyRadiomics' own, unchanged.

What it adds, without changing the above:

- classes that PyRadiomics does not know (deep and plugin classes) may be named in the params file's
  ``featureClass`` section with their settings mapping; their features follow all of PyRadiomics' keys,
  class by class in params order, as 0-d float64 arrays (as PyRadiomics' features), each class's
  ``diagnostics_<class>_*`` first when provenance is on. Their extra images are given with
  ``execute(..., modalities={"t1": path, ...})``; in voxel mode a class adds its maps when it provides
  ``voxel_maps`` (see :mod:`deepradiomics.voxel`);
- ``execute(..., jobs=N)``: worker processes for voxel-based extraction;
- image and mask may be ``os.PathLike`` as well as ``str``.

One difference is deliberate: an 8- or 16-bit integer image whose maximum plus twice ``binWidth``
overflows its type is cast to 32 bits before PyRadiomics bins it (PyRadiomics 3.0.1 under numpy 2 wraps
the top bin edge around and silently drops bins; under numpy 1 it did not). The values are then those
PyRadiomics computes without the overflow; ``diagnostics_Image-original_Hash`` is the hash of the cast
image. See :func:`deepradiomics.classical.widen_if_overflowing`.
"""

from __future__ import annotations

import copy
import errno
import os
import pathlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from .classical import pyradiomics_input
from .errors import ParamsError, ParamsFileNotFoundError, pyradiomics_missing
from .featureclass import run_compute
from .naming import diagnostics_name, format_name

try:
    from radiomics import featureextractor
except ModuleNotFoundError as exc:  # PyRadiomics is an extra of the pip install: say how to get it
    raise pyradiomics_missing(exc) from None


def _missing_params_file(path) -> ParamsFileNotFoundError:
    return ParamsFileNotFoundError(
        errno.ENOENT, f"params file '{path}' does not exist: give the path of a YAML or JSON params file", str(path)
    )


def _schema_error(message: str):
    from .errors import ParamsSchemaError  # built on first use: it derives from pykwalify's SchemaError

    return ParamsSchemaError(" ".join(str(message).split()))


class RadiomicsFeatureExtractor(featureextractor.RadiomicsFeatureExtractor):
    """PyRadiomics' ``RadiomicsFeatureExtractor``, plus plugin classes and parallel voxel maps.

    Parameters are PyRadiomics': a params file path or dict as the only positional argument (anything
    else: PyRadiomics' defaults), and settings as keyword arguments (``binWidth=25``), applied as
    PyRadiomics applies them (unchecked). See the module docstring for what is and is not PyRadiomics'.
    """

    def __init__(self, *args, **kwargs) -> None:
        self._params = None  # deepradiomics' view of the last params applied (None: PyRadiomics' defaults)
        self._plugin_extractor = None
        if len(args) == 1 and isinstance(args[0], (str, pathlib.PurePath)) and not os.path.isfile(args[0]):
            raise _missing_params_file(args[0])  # PyRadiomics raises IOError here
        super().__init__(*args, **kwargs)

    # -- parameters ---------------------------------------------------------------------------------
    def _applyParams(self, paramsFile=None, paramsDict=None):  # noqa: N802, N803 (PyRadiomics' names)
        """Validate and apply a params file or dict: PyRadiomics' part by PyRadiomics, the rest by deepradiomics.

        Every path through which PyRadiomics reads params (``__init__``, ``loadParams``,
        ``loadJSONParams``) ends here.
        """
        from .params import load_params

        if paramsFile is not None:
            if not os.path.isfile(paramsFile):
                raise _missing_params_file(paramsFile)
            path = pathlib.Path(paramsFile)
            data, where, base_dir = _read_params_file(path), str(path), path.resolve().parent
        else:
            data, where, base_dir = copy.deepcopy(dict(paramsDict or {})), None, None
        try:
            params = load_params(_for_validation(data), name=where, base_dir=base_dir)
        except ParamsError as exc:
            raise _schema_error(str(exc)) from exc
        try:
            super()._applyParams(paramsDict=_pyradiomics_part(data, params.plugins))
        except Exception as exc:
            from pykwalify.errors import PyKwalifyException

            if not isinstance(exc, PyKwalifyException):
                raise
            raise _schema_error(f"{params.source}: invalid PyRadiomics parameters: {exc.msg}") from exc
        if params.plugins and not params.pyradiomics:
            # PyRadiomics reads an empty featureClass section as "all classes"; here the section named plugins only
            self.enabledFeatures = {}
        self._params = params
        self._plugin_extractor = None

    @property
    def plugin_classes(self) -> dict:
        """The params' classes that PyRadiomics does not compute (deep and plugin classes), in params order."""
        extractor = self._plugins()
        return {} if extractor is None else extractor.plugin_classes

    def _plugins(self):
        if self._params is None or not self._params.plugins:
            return None
        if self._plugin_extractor is None:
            from .extractor import Extractor

            self._plugin_extractor = Extractor(self._params)
        return self._plugin_extractor

    # -- extraction ---------------------------------------------------------------------------------
    def execute(
        self,
        imageFilepath,  # noqa: N803 (PyRadiomics' argument names, for keyword callers)
        maskFilepath,  # noqa: N803
        label=None,
        label_channel=None,
        voxelBased=False,  # noqa: N803
        *,
        modalities: Mapping[str, Any] | None = None,
        jobs: int = 1,
        engine: str | None = None,
    ) -> OrderedDict:
        """PyRadiomics' ``execute``; then the plugin classes' features (or maps) of the params, if any.

        Parameters
        ----------
        imageFilepath, maskFilepath, label, label_channel, voxelBased
            As PyRadiomics' (paths may also be ``os.PathLike``).
        modalities
            Extra named images for plugin classes, e.g. ``{"t1": "t1.nii.gz"}`` (the main image is ``Image``).
        jobs
            Worker processes for ``voxelBased=True`` (the maps do not depend on it).
        engine
            ``voxelBased=True`` only: ``"pyradiomics"`` (PyRadiomics' own engine, bit for bit, the drop-in's
            default), or ``"fast"`` (:mod:`deepradiomics.voxelengine`: the same maps, much faster). None: the
            params file's ``voxelSetting.engine`` when it sets one, else ``"pyradiomics"``.
        """
        image = str(imageFilepath) if isinstance(imageFilepath, os.PathLike) else imageFilepath
        mask = str(maskFilepath) if isinstance(maskFilepath, os.PathLike) else maskFilepath
        from .case import verify_image_file

        for path in (image, mask):  # PyRadiomics would read a truncated or corrupted file as a valid image
            if isinstance(path, str) and os.path.isfile(path):
                verify_image_file(path)
        if voxelBased:
            result = self._voxel_result(image, mask, label, label_channel, jobs, engine)
        else:
            prepared = pyradiomics_input(image, self.settings, self.enabledImagetypes)
            result = super().execute(prepared, mask, label=label, label_channel=label_channel, voxelBased=False)
        plugins = self._plugins()
        if plugins is not None:
            self._add_plugin_results(plugins, result, image, mask, label, label_channel, modalities, voxelBased)
        return result

    def _voxel_result(self, image, mask, label, label_channel, jobs: int, engine: str | None) -> OrderedDict:
        from .params import VOXEL_ENGINES
        from .voxel import compute_voxel_features

        if engine is None:
            engine = str(self._params.voxel_setting.get("engine", "pyradiomics")) if self._params is not None else "pyradiomics"
        if engine not in VOXEL_ENGINES:
            raise ParamsError(f"engine {engine!r} is not one of {', '.join(VOXEL_ENGINES)}")
        if engine == "fast":
            from .voxelengine import compute_voxel_features_fast

            return compute_voxel_features_fast(self, image, mask, label=label, label_channel=label_channel, jobs=jobs)[0]
        return compute_voxel_features(self, image, mask, label=label, label_channel=label_channel, jobs=jobs)

    def _add_plugin_results(self, plugins, result: OrderedDict, image, mask, label, label_channel, modalities, voxel_based: bool) -> None:
        label = label if label is not None else self.settings.get("label", 1)
        case_id = pathlib.Path(image).name if isinstance(image, str) else "case"
        plugins.check_fitted()
        case = plugins.make_case(image, _scalar_mask(mask, label, label_channel), modalities, label, case_id)
        provenance = self.settings.get("additionalInfo", False)
        if voxel_based:
            from .voxel import plugin_maps

            for name, feature_class in plugins.plugin_classes.items():
                maps = plugin_maps({name: feature_class}, case)
                if provenance and maps:
                    result.update(_diagnostics(name, feature_class))
                result.update(maps)
            return
        for name, feature_class in plugins.plugin_classes.items():
            computed = run_compute(name, feature_class, case)
            if provenance:
                result.update(_diagnostics(name, feature_class, computed.diagnostics))
            for feature, value in computed.features.items():
                # a 0-d float64 array, as PyRadiomics returns its features (numpy.squeeze of a 1-element array)
                result[format_name(feature_class.image_type, name, feature)] = np.array(value, dtype=np.float64)


def _for_validation(data: dict) -> dict:
    # PyRadiomics reads an empty featureClass mapping as "all classes"; deepradiomics' validator refuses it.
    if isinstance(data.get("featureClass"), Mapping) and not data["featureClass"]:
        return {k: v for k, v in data.items() if k != "featureClass"}
    return data


def _read_params_file(path: pathlib.Path) -> dict:
    """A params file read as PyRadiomics reads it (:func:`deepradiomics.params.read_params_data`: JSON or YAML 1.2),
    with its errors raised as PyRadiomics' schema error."""
    from .params import read_params_data

    try:
        data = read_params_data(path)
    except ParamsError as exc:
        raise _schema_error(str(exc)) from exc
    if data is None:
        raise _schema_error(f"params file '{path}' is empty: write at least one section, e.g. 'featureClass: {{firstorder: []}}'")
    if not isinstance(data, Mapping):
        raise _schema_error(f"params file '{path}' must hold a mapping (setting, imageType, featureClass, voxelSetting); found a {type(data).__name__}")
    return dict(data)


def _pyradiomics_part(data: dict, plugins: Mapping[str, Any]) -> dict:
    """``data`` without the plugin classes and deepradiomics' own voxel settings, so that PyRadiomics' own
    validation and defaults apply to the rest."""
    from .params import OWN_VOXEL_SETTINGS

    out = copy.deepcopy(data)
    classes = out.get("featureClass")
    if isinstance(classes, Mapping) and plugins:
        out["featureClass"] = {name: value for name, value in classes.items() if name not in plugins}
    voxel = out.get("voxelSetting")
    if isinstance(voxel, Mapping) and any(k in voxel for k in OWN_VOXEL_SETTINGS):  # deepradiomics' keys, not PyRadiomics'
        out["voxelSetting"] = {k: v for k, v in voxel.items() if k not in OWN_VOXEL_SETTINGS}
    return out


def _scalar_mask(mask, label: int, label_channel: int | None):
    """The mask as plugin classes read it: a vector mask reduced to ``label_channel`` by PyRadiomics' getMask."""
    import SimpleITK as sitk
    from radiomics import imageoperations

    loaded = mask
    if isinstance(mask, str) and os.path.isfile(mask):
        loaded = sitk.ReadImage(mask)  # verified by execute() before
    if isinstance(loaded, sitk.Image) and loaded.GetNumberOfComponentsPerPixel() > 1:
        return imageoperations.getMask(loaded, label=label, label_channel=label_channel or 0)
    return mask


def _diagnostics(name: str, feature_class, per_case: Mapping[str, Any] | None = None) -> dict[str, Any]:
    values = {**feature_class.diagnostics(), **dict(per_case or {})}
    return {diagnostics_name(name, key): value for key, value in values.items()}
