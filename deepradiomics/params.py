"""Parameter files: PyRadiomics' format, plus plugin feature classes as mappings of their settings.

A PyRadiomics file (``setting``, ``imageType``, ``featureClass``, ``voxelSetting``) loads unchanged and
its PyRadiomics part is validated by PyRadiomics' own schema. A class computed by PyRadiomics takes a
list of feature names; any other class (deep or hand-crafted, first- or third-party) takes a mapping of
its settings::

    featureClass:
      glcm: [Contrast, JointEntropy]
      mydeepclass: {model: default, region: volume}

Which classes PyRadiomics computes is decided by where the registry found them (PyRadiomics itself),
never by a class's ``family``. Relative paths in a plugin class's settings are relative to the params
file's folder. Files are read as PyRadiomics reads them, as YAML 1.2 with a safe loader
(:mod:`deepradiomics.yamlio`; JSON for ``.json``); nothing in a params file executes code or
imports by path. Everything is checked before any image is read, and errors name the file, the key and
the closest valid name.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ParamsError, PyRadiomicsNotInstalledError, did_you_mean, pyradiomics_missing
from .yamlio import load_yaml, read_yaml

TOP_LEVEL_KEYS = ("setting", "imageType", "featureClass", "voxelSetting")
#: the key of a plugin entry's settings naming its class, for a second configuration of a class
CLASS_KEY = "class"
#: deepradiomics' own keys of ``voxelSetting`` (not PyRadiomics'; never passed to it): key -> allowed values
VOXEL_ENGINES = ("fast", "pyradiomics")
OWN_VOXEL_SETTINGS = {"engine": VOXEL_ENGINES}
#: numeric settings beyond this magnitude overflow float64 in PyRadiomics' arithmetic (bin edges, ranges)
MAX_SETTING_MAGNITUDE = 1e300
#: PyRadiomics' image types (``radiomics.getImageTypes()``), listed here so checking needs no import.
IMAGE_TYPES = ("Original", "Wavelet", "LoG", "Square", "SquareRoot", "Logarithm", "Exponential", "Gradient", "LBP2D", "LBP3D")


@functools.cache  # read once per process: it is PyRadiomics' installed file (callers only read it)
def _pyradiomics_schema() -> dict:
    """PyRadiomics' parameter schema (its ``schemas/paramSchema.yaml``), read without importing it."""
    spec = importlib.util.find_spec("radiomics")
    if spec is None or not spec.submodule_search_locations:
        raise PyRadiomicsNotInstalledError("radiomics")
    schema_path = Path(list(spec.submodule_search_locations)[0]) / "schemas" / "paramSchema.yaml"
    return read_yaml(schema_path, "PyRadiomics' parameter schema")


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_freeze(v) for v in value]
    return value


@dataclass(frozen=True)
class Params:
    """A validated parameter set. Build it with :func:`load_params`.

    Attributes
    ----------
    setting, image_types, voxel_setting
        PyRadiomics' ``setting``, ``imageType`` and ``voxelSetting`` sections.
    pyradiomics
        Classes computed by PyRadiomics, in file order, each mapped to its feature list (empty = all).
    plugins
        Every other class (deep or hand-crafted plugins), in file order, each mapped to its settings mapping.
        A key is the class's token in column names; an entry whose settings name another ``class``
        (``cnnmapped: {class: cnn, network: encoder-3d}``) is a second configuration of that class with a
        token of its own (:meth:`class_of`).
    source
        File the parameters came from (``"<dict>"`` for a mapping), used in messages.
    base_dir
        Folder that relative paths in plugin settings are relative to (the file's folder; None for a mapping,
        meaning the working directory).
    """

    setting: dict = field(default_factory=dict)
    image_types: dict = field(default_factory=lambda: {"Original": {}})
    pyradiomics: dict = field(default_factory=dict)
    plugins: dict = field(default_factory=dict)
    voxel_setting: dict = field(default_factory=dict)
    source: str = "<dict>"
    class_order: tuple = ()
    base_dir: Path | None = None

    def class_of(self, name: str) -> str:
        """The registered class of the plugin entry ``name`` (its ``class`` setting, else the name itself)."""
        return str(self.plugins[name].get(CLASS_KEY, name))

    def class_settings(self, name: str) -> dict:
        """The settings of the plugin entry ``name`` for its class (without the ``class`` key)."""
        return {k: v for k, v in self.plugins[name].items() if k != CLASS_KEY}

    @property
    def label(self) -> int:
        """The label value of the region of interest (``setting.label``, default 1)."""
        return int(self.setting.get("label", 1))

    def to_pyradiomics(self) -> dict:
        """The PyRadiomics part as a PyRadiomics parameter dict (a deep copy)."""
        params: dict[str, Any] = {
            "setting": copy.deepcopy(self.setting),
            "imageType": copy.deepcopy(self.image_types),
            "featureClass": {name: list(features) for name, features in self.pyradiomics.items()},
        }
        voxel = {k: v for k, v in self.voxel_setting.items() if k not in OWN_VOXEL_SETTINGS}
        if voxel:
            params["voxelSetting"] = copy.deepcopy(voxel)
        return params

    @property
    def voxel_engine(self) -> str:
        """``voxelSetting.engine``: ``fast`` (:mod:`deepradiomics.voxelengine`, the default) or ``pyradiomics``."""
        return str(self.voxel_setting.get("engine", "fast"))

    def to_dict(self) -> dict:
        """The whole parameter set in the params-file layout (round-trips through :func:`load_params`)."""
        params = self.to_pyradiomics()
        if self.voxel_setting:
            params["voxelSetting"] = copy.deepcopy(self.voxel_setting)
        params["featureClass"] = {
            name: (list(self.pyradiomics[name]) if name in self.pyradiomics else copy.deepcopy(self.plugins[name]))
            for name in self.class_order
        }
        return params

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of :meth:`to_dict` (first 16 hex digits), for provenance and resume."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_settings(self, overrides: Mapping[str, Any]) -> Params:
        """A copy with settings overridden (``-s KEY=VALUE`` on the command line), re-validated.

        Keys of PyRadiomics' ``voxelSetting`` section (``kernelRadius``, ``maskedKernel``, ``initValue``,
        ``voxelBatch``) go there; every other key goes to ``setting``.
        """
        data = self.to_dict()
        voxel_keys = {*_pyradiomics_schema()["mapping"]["voxelSetting"]["mapping"], *OWN_VOXEL_SETTINGS}
        for key, value in overrides.items():
            data.setdefault("voxelSetting" if key in voxel_keys else "setting", {})[key] = value
        return load_params(data, name=f"{self.source} (with -s overrides)", base_dir=self.base_dir)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE`` (VALUE as YAML: ``binWidth=10``, ``resampledPixelSpacing=[1,1,1]``)."""
    if "=" not in text:
        raise ParamsError(f"setting override {text!r} is not KEY=VALUE, e.g. -s binWidth=10")
    key, raw = text.split("=", 1)
    value = load_yaml(raw, f"setting override {text!r}: value {raw!r}")
    return key.strip(), value


def load_params(source: str | Path | Mapping, *, name: str | None = None, base_dir: str | Path | None = None) -> Params:
    """Load and validate a parameter file or mapping.

    Parameters
    ----------
    source
        Path of a YAML (or JSON) params file, the name of a shipped one (``"classical"``, see
        ``deepradiomics params``), or a mapping with the same layout.
    name
        How to call the source in messages (default: the path, or ``"<dict>"``).
    base_dir
        Folder that relative paths in plugin settings are relative to (default: the file's folder; for a
        mapping, the working directory).

    Returns
    -------
    Params
        Validated parameters. Unknown sections, settings, image types, classes, features or deep
        settings raise :class:`ParamsError` naming the file, the key and the closest valid name.

    Examples
    --------
    >>> p = load_params({"featureClass": {"glcm": ["Contrast"]}})
    >>> p.pyradiomics
    {'glcm': ['Contrast']}
    """
    where = name
    if isinstance(source, Mapping):
        data, where = copy.deepcopy(dict(source)), where or "<dict>"
    else:
        path, shipped_as = resolve_params_path(source)
        where = where or shipped_as or str(path)
        data = _read_params_file(path)
        if base_dir is None:
            base_dir = path.resolve().parent
    return _validate(dict(data), where, None if base_dir is None else Path(base_dir))


def resolve_params_path(source: str | Path) -> tuple[Path, str | None]:
    """``(path, shipped name or None)`` of a params file given as a path or as the name of a shipped one.

    An existing file wins; else a shipped name (``classical``, ``classical.yaml``) names the shipped file.
    Anything else raises :class:`~deepradiomics.errors.ParamsFileNotFoundError` (also a FileNotFoundError,
    as PyRadiomics raises IOError) listing the shipped names, with a did-you-mean.
    """
    import errno

    from .data import shipped_params, shipped_params_file
    from .errors import ParamsFileNotFoundError

    path = Path(source)
    if path.is_file():
        return path, None
    shipped = shipped_params_file(str(source)) if not path.is_dir() else None
    if shipped is not None:
        return shipped, f"{shipped.name} (shipped)"
    names = shipped_params()
    what = "is a folder" if path.is_dir() else "does not exist"
    message = (
        f"params file '{path}' {what} and is not a shipped params name.{did_you_mean(path.stem, names)} "
        f"Give the path of a YAML file, or a shipped name: {', '.join(names) or 'none installed'} (`deepradiomics params` lists them)"
    )
    raise ParamsFileNotFoundError(errno.EISDIR if path.is_dir() else errno.ENOENT, message, str(path))


def _read_params_file(path: Path) -> dict:
    data = read_params_data(path)
    if data is None:
        # PyRadiomics refuses an empty file too: an empty params set is almost always a wrong path or a truncated file
        raise ParamsError(
            f"params file '{path}' is empty: write at least one section, e.g. 'featureClass: {{firstorder: []}}' "
            "(an empty featureClass section enables PyRadiomics' default classes)"
        )
    if not isinstance(data, Mapping):
        raise ParamsError(f"params file '{path}' must hold a mapping with keys {', '.join(TOP_LEVEL_KEYS)}; found a {type(data).__name__}")
    return dict(data)


def read_params_data(path: Path) -> Any:
    """The data of a params file as PyRadiomics reads it (through pykwalify): JSON for ``.json``, else YAML 1.2.

    In YAML 1.2 ``1e-4`` is a number and ``yes`` a string; PyYAML (YAML 1.1) reads them the other way round.
    Reading as PyRadiomics does keeps its params files meaning what they meant.
    """
    if path.suffix.lower() == ".json":
        import json

        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ParamsError(f"params file '{path}' cannot be read as JSON: {' '.join(str(exc).split())}") from exc
    return read_yaml(path, "params file")


def _validate(data: dict, where: str, base_dir: Path | None = None) -> Params:
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ParamsError(f"{where}: unknown section '{key}'.{did_you_mean(str(key), TOP_LEVEL_KEYS)} Valid sections: {', '.join(TOP_LEVEL_KEYS)}")
    setting = dict(data.get("setting") or {})
    image_types = data.get("imageType")
    image_types = {"Original": {}} if image_types is None else dict(image_types)
    voxel_setting = dict(data.get("voxelSetting") or {})
    if not isinstance(setting, dict) or not isinstance(image_types, dict):
        raise ParamsError(f"{where}: 'setting' and 'imageType' must be mappings")
    _check_settings(setting, voxel_setting, image_types, where)
    feature_classes, pyradiomics, plugins = _split_classes(data.get("featureClass"), where, base_dir)
    params = Params(
        setting=_freeze(setting),
        image_types=_freeze(image_types),
        pyradiomics=pyradiomics,
        plugins=plugins,
        voxel_setting=_freeze(voxel_setting),
        source=where,
        class_order=tuple(feature_classes),
        base_dir=base_dir,
    )
    if pyradiomics:
        _check_with_pyradiomics(params, where)
        _check_pyradiomics_rules(params, where)
    return params


#: numeric settings where PyRadiomics accepts NaN (as a number, ``.nan``, or the text ``nan`` it converts):
#: the value given to voxels whose features cannot be computed is never computed with, so NaN is fine there
NAN_SETTINGS = {"voxelSetting": ("initValue",)}


def _check_numbers(values: dict, schema: Mapping, where: str, nan_allowed: tuple[str, ...] = ()) -> None:
    """Numeric settings (per PyRadiomics' schema) must be finite numbers of a sane magnitude, not text or booleans.

    PyRadiomics' schema check lets NaN, infinity, 1e308 and numeric text through, and PyRadiomics then fails
    deep inside its binning with a traceback (or bins nothing): refuse them here, naming the key. Where
    PyRadiomics accepts NaN (``nan_allowed``, e.g. ``voxelSetting.initValue``), NaN is kept and the text
    ``nan`` (YAML 1.2 reads a bare ``nan`` as text; PyRadiomics converts it) becomes the number NaN in ``values``.
    """
    for key, value in list(values.items()):
        rule = schema.get(key, {})
        kind = rule.get("seq", [{}])[0].get("type") if "seq" in rule else rule.get("type")
        if kind not in ("int", "float"):
            continue
        if key in nan_allowed and isinstance(value, str) and value.strip().lower() == "nan":
            values[key] = value = math.nan
        items = value if "seq" in rule and isinstance(value, (list, tuple)) else [value]
        for item in items:
            _check_number(item, kind, f"{where}.{key}", key in nan_allowed)


def _check_number(item: Any, kind: str, where: str, nan_allowed: bool) -> None:
    if item is None:
        return
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        article = "an" if kind == "int" else "a"
        if isinstance(item, str) and item.strip().lower().lstrip("+-.") in ("nan", "inf", "infinity"):
            # text that PyRadiomics would turn into NaN or infinity: not "write it as .nan", it is not allowed here
            raise ParamsError(f"{where} is {item!r}: NaN and infinity are computed with here; give {article} finite {kind} value")
        hint = " (text in YAML: write the number without quotes; YAML 1.2 reads 1e5, 1e-4 and 2.5 as numbers)" if isinstance(item, str) else ""
        raise ParamsError(f"{where} is {item!r}, not a number{hint}: give {article} {kind} value")
    if isinstance(item, float) and math.isnan(item) and nan_allowed:
        return
    if isinstance(item, float) and not math.isfinite(item):
        raise ParamsError(f"{where} is {item}: NaN and infinity are computed with here; give a finite number")
    if abs(item) > MAX_SETTING_MAGNITUDE:
        raise ParamsError(
            f"{where} is {item:g}, beyond {MAX_SETTING_MAGNITUDE:.0e}: float64 arithmetic on it overflows "
            "(bin edges, ranges); give a value in image units"
        )


def _check_pyradiomics_rules(params: Params, where: str) -> None:
    """Combinations PyRadiomics accepts but computes nothing for (it only logs a warning): refuse them with the fix."""
    for name, custom in params.image_types.items():
        if name == "LoG" and not ({**params.setting, **dict(custom or {})}.get("sigma")):
            raise ParamsError(
                f"{where}: imageType.LoG needs 'sigma' (a list of filter widths in mm, e.g. sigma: [1.0, 3.0]) in setting "
                "or in imageType.LoG; without it PyRadiomics computes no LoG feature"
            )
    if "shape2D" in params.pyradiomics and not params.setting.get("force2D"):
        raise ParamsError(
            f"{where}: featureClass.shape2D needs 'setting: {{force2D: true}}' (shape2D describes slices); without it "
            "PyRadiomics computes no shape2D feature. Use featureClass.shape for the 3D shape"
        )


def _pyradiomics_features(cls: type, value: Any, where: str) -> list[str]:
    """The feature list of a PyRadiomics class (empty = all), each name checked."""
    if value is not None and not isinstance(value, (list, tuple)):
        raise ParamsError(f"{where} takes a list of feature names (or [] for all), got {value!r}")
    features = [str(f) for f in (value or [])]
    valid = cls().feature_names(all_names=True)
    for feature in features:
        if feature not in valid:
            raise ParamsError(f"{where}: unknown feature '{feature}'.{did_you_mean(feature, valid)}")
    return features


def _check_settings(setting: dict, voxel_setting: dict, image_types: dict, where: str) -> None:
    """Known keys (per PyRadiomics' schema, with a did-you-mean) and sane numbers in every settings section."""
    schema = _pyradiomics_schema()["mapping"]
    valid_settings = list(schema["setting"]["mapping"])
    for key in setting:
        if key not in valid_settings:
            raise ParamsError(f"{where}: unknown setting 'setting.{key}'.{did_you_mean(str(key), valid_settings)} See PyRadiomics' parameter documentation for valid settings")
    valid_voxel = [*schema["voxelSetting"]["mapping"], *OWN_VOXEL_SETTINGS]
    for key in voxel_setting:
        if key not in valid_voxel:
            raise ParamsError(f"{where}: unknown setting 'voxelSetting.{key}'.{did_you_mean(str(key), valid_voxel)}")
    for key, allowed in OWN_VOXEL_SETTINGS.items():
        if key in voxel_setting and voxel_setting[key] not in allowed:
            raise ParamsError(f"{where}: voxelSetting.{key} is {voxel_setting[key]!r}: give one of {', '.join(allowed)}")
    _check_numbers(setting, schema["setting"]["mapping"], f"{where}: setting")
    _check_numbers(voxel_setting, schema["voxelSetting"]["mapping"], f"{where}: voxelSetting", NAN_SETTINGS["voxelSetting"])
    for name, custom in image_types.items():
        if name not in IMAGE_TYPES:
            raise ParamsError(f"{where}: unknown image type 'imageType.{name}'.{did_you_mean(str(name), IMAGE_TYPES)} Valid types: {', '.join(IMAGE_TYPES)}")
        if custom is not None and not isinstance(custom, dict):
            raise ParamsError(f"{where}: imageType.{name} must be a mapping of settings (or {{}}), got {custom!r}")
        for key in custom or {}:
            if key not in valid_settings:
                raise ParamsError(f"{where}: unknown setting 'imageType.{name}.{key}'.{did_you_mean(str(key), valid_settings)}")
        _check_numbers(custom or {}, schema["setting"]["mapping"], f"{where}: imageType.{name}")


def _split_classes(feature_classes, where: str, base_dir: Path | None) -> tuple[dict, dict[str, list[str]], dict[str, dict]]:
    """``(featureClass section, PyRadiomics classes -> feature lists, plugin classes -> settings)``, each checked.

    Which classes PyRadiomics computes is decided by where the registry found them; a plugin class's
    settings are validated by building it once.
    """
    from .registry import get_registry

    registry = get_registry()
    if feature_classes is None:
        # PyRadiomics' default: all of its classes (but shape2D) with all features.
        feature_classes = {name: [] for name in registry.names() if registry.entry(name).computed_by_pyradiomics and name != "shape2D"}
    if not isinstance(feature_classes, dict) or not feature_classes:
        raise ParamsError(f"{where}: 'featureClass' must be a non-empty mapping of class name to features or settings")
    pyradiomics: dict[str, list[str]] = {}
    plugins: dict[str, dict] = {}
    for name, value in feature_classes.items():
        cls_name = _entry_class(name, value, registry, where)
        if registry.entry(cls_name).computed_by_pyradiomics:
            pyradiomics[name] = _pyradiomics_features(registry.get(name), value, f"{where}: featureClass.{name}")
            continue
        if value is not None and not isinstance(value, Mapping):
            raise ParamsError(f"{where}: featureClass.{name} takes a mapping of its settings (e.g. {{{name}: {{}}}} for the defaults), got {value!r}")
        settings = dict(value or {})
        own = {k: v for k, v in settings.items() if k != CLASS_KEY}
        registry.get(cls_name)(own, where=f"{where}: featureClass.{name}", base_dir=base_dir)  # validates the settings
        plugins[name] = settings
    return feature_classes, pyradiomics, plugins


def _entry_class(name, value, registry, where: str) -> str:
    """The registered class of the featureClass entry ``name``: itself, or the class its ``class`` setting names.

    A second configuration of a plugin class takes a name of its own (a valid column token that no other
    registered class has) and ``class: <the class>``; PyRadiomics' classes are computed once per params
    file, so they cannot be configured twice.
    """
    from .naming import check_token

    named = value.get(CLASS_KEY) if isinstance(value, Mapping) else None
    if named is None:
        if name not in registry:
            raise ParamsError(
                f"{where}: unknown feature class 'featureClass.{name}'.{did_you_mean(str(name), registry.names())} "
                f"Available: {', '.join(registry.names())} (`deepradiomics plugins` lists them with their source); "
                f"a second configuration of a class takes 'class: <class>' in its settings"
            )
        return str(name)
    if str(named) not in registry:
        raise ParamsError(
            f"{where}: featureClass.{name}.class '{named}' is not a registered class.{did_you_mean(str(named), registry.names())} "
            f"Available: {', '.join(registry.names())}"
        )
    if registry.entry(str(named)).computed_by_pyradiomics:
        raise ParamsError(f"{where}: featureClass.{name}.class '{named}' is a PyRadiomics class, computed once per params file: it cannot be configured twice")
    if name in registry and str(name) != str(named):
        raise ParamsError(f"{where}: featureClass.{name} is the name of the registered class '{name}': give the configuration of '{named}' another name")
    try:
        check_token(str(name), "featureClass name")
    except ValueError as exc:
        raise ParamsError(f"{where}: featureClass.{name}: {exc}") from None
    return str(named)


def _check_with_pyradiomics(params: Params, where: str) -> None:
    """Validate the classical part with PyRadiomics' own schema (pykwalify)."""
    import logging

    try:
        import pykwalify.core
        import radiomics
    except ModuleNotFoundError as exc:  # PyRadiomics is an extra of the pip install: say how to get it
        raise pyradiomics_missing(exc) from None

    schema_file, schema_funcs = radiomics.getParameterValidationFiles()
    pyradiomics_params = params.to_pyradiomics()
    # pykwalify checks YAML-like data; tuples from frozen settings are lists already.
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)
    core = pykwalify.core.Core(source_data=pyradiomics_params, schema_files=[schema_file], extensions=[schema_funcs])
    try:
        core.validate(raise_exception=True)
    except Exception as exc:  # pykwalify raises SchemaError or its own CoreError
        message = str(exc).replace("\n", " ").strip()
        raise ParamsError(f"{where}: invalid PyRadiomics parameters: {message}") from exc
