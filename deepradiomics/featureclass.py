"""The FeatureClass contract shared by classical and deep feature classes.

A feature class has a ``name`` (its token in column names), a ``family`` ("classical" or "deep"), a
typed ``Settings`` dataclass, ``feature_names()``, ``compute(case)``, an optional cohort-level
``fit(cases)`` and ``diagnostics()``. ``__init__`` only stores settings (scikit-learn's habit);
fitted state lives in attributes ending in ``_``.

Example of a third-party class (see ``plugins/template.py`` for a complete one)::

    @dataclass(frozen=True)
    class VolumeSettings:
        unit: str = "mm3"

    class MaskVolume(FeatureClass):
        name = "maskvolume"
        Settings = VolumeSettings

        def feature_names(self):
            return ["Volume"]

        def compute(self, case):
            spacing = case.mask_image().GetSpacing()
            return {"Volume": float(case.mask_array().sum() * np.prod(spacing))}
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .errors import ParamsError, did_you_mean

FAMILIES = ("classical", "deep")


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """Settings of a class that takes none."""


def _type_ok(value: Any, annotation: Any) -> bool:
    """Loose runtime check of YAML values against simple annotations (str, int, float, bool, list, ...)."""
    if annotation in (Any, "Any") or isinstance(annotation, str):
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (list, tuple, Sequence):
        return isinstance(value, (list, tuple))
    if origin in (dict, Mapping):
        return isinstance(value, Mapping)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def build_settings(settings_cls: type, values: Mapping[str, Any] | None, where: str) -> Any:
    """Build a ``Settings`` dataclass from a mapping; unknown keys and wrong types raise ParamsError.

    ``where`` says where the mapping came from (e.g. ``"params.yaml: featureClass.vqhist"``).
    """
    if values is None:
        values = {}
    if dataclasses.is_dataclass(values) and isinstance(values, settings_cls):
        return values
    if not isinstance(values, Mapping):
        raise ParamsError(f"{where}: expected a mapping of settings, got {type(values).__name__} {values!r}")
    fields = {f.name: f for f in dataclasses.fields(settings_cls)}
    hints = typing.get_type_hints(settings_cls)
    for key, value in values.items():
        if key not in fields:
            valid = ", ".join(fields) or "none"
            raise ParamsError(f"{where}: unknown setting '{key}'.{did_you_mean(str(key), fields)} Valid settings: {valid}")
        if not _type_ok(value, hints.get(key, Any)):
            raise ParamsError(f"{where}.{key}: value {value!r} is not of type {hints.get(key)}")
    try:
        return settings_cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{where}: {exc}") from exc


class FeatureClass:
    """Base class of every feature class (see the module docstring for an example).

    Subclasses set ``name``, ``family``, ``Settings`` and implement ``feature_names`` and ``compute``.
    Classes that learn a cohort-level encoder set ``requires_fit = True`` and implement ``fit``.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "deep"
    Settings: ClassVar[type] = NoSettings
    requires_fit: ClassVar[bool] = False
    #: image type token of the columns this class produces
    image_type: ClassVar[str] = "original"

    def __init__(self, settings: Any = None, *, where: str | None = None) -> None:
        self.settings = build_settings(self.Settings, settings, where or f"featureClass.{self.name}")

    def feature_names(self) -> list[str]:
        """The ``<Feature>`` tokens this class produces, in column order."""
        raise NotImplementedError

    def compute(self, case) -> dict[str, float]:
        """Features of one :class:`~deepradiomics.case.Case` as ``{Feature: float}``."""
        raise NotImplementedError

    def fit(self, cases: Sequence) -> FeatureClass:
        """Learn a cohort-level encoder from ``cases`` (only for ``requires_fit`` classes)."""
        return self

    def diagnostics(self) -> dict[str, Any]:
        """Provenance for ``diagnostics_<name>_<Key>`` columns (model sha256, settings, ...)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"
