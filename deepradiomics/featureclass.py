"""The FeatureClass contract shared by classical and deep feature classes.

A feature class has a ``name`` (its token in column names), a ``family`` ("classical" = hand-crafted or
"deep" = learned; it only groups columns), a typed ``Settings`` dataclass, ``feature_names()``,
``compute(case)`` and ``diagnostics()``; fitted classes add a cohort-level ``fit`` (see
:class:`FeatureClass`). ``__init__`` only stores settings (scikit-learn's habit); fitted state lives in
attributes ending in ``_``; what is derived from the settings and loaded on first use (a network, a
bundle's config) lives in private attributes, loaded once per instance under a lock (:func:`lazy`).

``compute(case)`` returns the case's features, or a :class:`ComputeResult`: the features and that case's
diagnostics together. Nothing about a case is left on the instance, so one instance serves several
threads (a Dask worker) and ``diagnostics()`` only reports what the settings and fitted state say.

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
import os
import threading
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import NotFittedError, ParamsError, did_you_mean

if TYPE_CHECKING:
    import numpy as np
    import SimpleITK

    from .case import Case

FAMILIES = ("classical", "deep")

#: guards the lazy loads of every feature-class instance (a network, a bundle's config): loaded once
#: even when threads of one worker compute cases with the same instance (re-entrant: a load may need another)
_LAZY_LOCK = threading.RLock()


def lazy(instance: Any, attribute: str, build: typing.Callable[[], Any]) -> Any:
    """``instance.<attribute>``, built by ``build()`` on first use, once, under a lock (double-checked)."""
    value = instance.__dict__.get(attribute)
    if value is None:
        with _LAZY_LOCK:
            value = instance.__dict__.get(attribute)
            if value is None:
                value = build()
                instance.__dict__[attribute] = value
    return value


@dataclasses.dataclass(frozen=True)
class ComputeResult:
    """What ``FeatureClass.compute`` returns: one case's features and its per-case diagnostics.

    ``features`` is ``{Feature: float}`` in ``feature_names()`` order; ``diagnostics`` is
    ``{Key: value}`` written as ``diagnostics_<class>_<Key>`` after the class's own ``diagnostics()``.
    """

    features: Mapping[str, float]
    diagnostics: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, value: Any) -> ComputeResult:
        """A ComputeResult from what ``compute`` or ``encode`` returned (a plain mapping means features only)."""
        if isinstance(value, ComputeResult):
            return value
        return cls(dict(value))


@dataclasses.dataclass(frozen=True)
class BundleSettings:
    """Settings shared by classes whose network comes from a model bundle (:class:`~deepradiomics.models.BundledModel`).

    ``model``: ``"default"`` (the class's default bundle), a shipped bundle's name, or a bundle folder
    (relative to the params file); ``modalities``: the case's modality names feeding the model's channels,
    in the model's channel order (default: the bundle's own channel names); ``device``: where it runs.
    """

    model: str = "default"
    modalities: tuple[str, ...] | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.modalities is not None and not self.modalities:
            raise ValueError("modalities: give the case's modality names in the model's channel order, or leave it out")


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


def _literal_choices(annotation: Any) -> tuple:
    """The values a ``Literal[...]`` annotation (alone or in an Optional/Union) allows; () for other types."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(v for arg in typing.get_args(annotation) for v in _literal_choices(arg))
    return ()


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
        annotation = hints.get(key, Any)
        if not _type_ok(value, annotation):
            choices = _literal_choices(annotation)
            if choices:
                raise ParamsError(
                    f"{where}.{key}: {value!r} is not one of {', '.join(map(repr, choices))}.{did_you_mean(str(value), map(str, choices))}"
                )
            raise ParamsError(f"{where}.{key}: value {value!r} is not of type {annotation}")
    try:
        return settings_cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{where}: {exc}") from exc


class FeatureClass:
    """Base class of every feature class (see the module docstring for an example).

    Subclasses set ``name``, ``family``, ``Settings`` and implement ``feature_names`` and ``compute``.

    Class metadata read by the framework and the study (never by class name):

    ``family``
        ``"classical"`` (hand-crafted) or ``"deep"`` (learned): only groups columns into study families.
        Whether PyRadiomics computes a class is the backend's business (the registry's source), not this.
    ``histograms``
        ``{name: regex over the feature token}`` of the column groups that are histograms (e.g. codeword
        counts): robustness reports their difference ratio and the study looks for responsible vectors.
    ``subfamilies``
        ``{suffix: regex over the feature token}``: extra study families ``<name>-<suffix>`` (e.g. per layer).
    ``network_input``
        True for a class that applies the case's input transforms (``case.input_transforms``, e.g. the
        input-domain perturbations of :mod:`deepradiomics.perturb`) to its own network input, at the one
        point where it forms that input, through :func:`deepradiomics.perturb.perturb_input` (or the
        ``input_transforms`` hook of :meth:`deepradiomics.nets.preprocess.Preprocessing.slices`). Robustness
        perturbs such a class in the ``input`` domain (the VQ paper's); the others (False, the default) read
        images and are perturbed in the ``image`` domain.

    **Fitted classes** (``requires_fit = True``) learn cohort-level state in three steps, so that the
    per-case work is done (and cached, and parallelised) once and only the cohort step is refitted::

        descriptors = [fc.describe(case) for case in cases]   # per case: dict of arrays
        fc.fit_descriptors(descriptors, case_ids)              # cohort step, fitted attributes end in "_"
        features = fc.encode(fc.describe(case))                # what compute(case) does

    ``fitted_state()`` / ``set_fitted_state(arrays)`` expose the fitted state as arrays, which
    :meth:`save_fitted` writes (``.npz`` + ``config.yaml`` with sha256, never pickle) and the setting named
    by ``fitted_setting`` points to, so a params file rebuilds the fitted class. ``compute`` before fit
    raises NotFittedError naming ``deepradiomics fit``.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "deep"
    Settings: ClassVar[type] = NoSettings
    requires_fit: ClassVar[bool] = False
    #: the setting holding the folder of the fitted artifact (fitted classes only)
    fitted_setting: ClassVar[str] = "fitted"
    histograms: ClassVar[Mapping[str, str]] = {}
    subfamilies: ClassVar[Mapping[str, str]] = {}
    #: optional capability: the class perturbs its own network input with ``case.input_transforms``
    network_input: ClassVar[bool] = False
    #: image type token of the columns this class produces
    image_type: ClassVar[str] = "original"
    #: settings naming a file whose identity ``artifacts()`` reports by sha256 (a model bundle): caches key on
    #: the sha256, not on how the path is spelled (``deepradiomics fit`` rewrites relative paths)
    artifact_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Any = None, *, where: str | None = None, base_dir: str | os.PathLike | None = None) -> None:
        self.settings = build_settings(self.Settings, settings, where or f"featureClass.{self.name}")
        self._where = where or f"featureClass.{self.name}"
        #: folder that relative paths in the settings are relative to (the params file's folder)
        self._base_dir = None if base_dir is None else Path(base_dir)

    def feature_names(self) -> list[str]:
        """The ``<Feature>`` tokens this class produces, in column order."""
        raise NotImplementedError

    def compute(self, case) -> ComputeResult | Mapping[str, float]:
        """Features of one :class:`~deepradiomics.case.Case`: ``{Feature: float}``, or a :class:`ComputeResult`
        with the case's diagnostics too.

        Fitted classes need not override it: it is ``encode(describe(case))`` once fitted.
        """
        if not self.requires_fit:
            raise NotImplementedError(f"{type(self).__name__} does not implement compute()")
        self.check_fitted()
        return self.encode(self.describe(case))

    def diagnostics(self) -> dict[str, Any]:
        """Provenance for ``diagnostics_<name>_<Key>`` columns from the settings and fitted state (model, sizes, ...).

        Per-case values (counts, sizes of this case) belong to the :class:`ComputeResult` of ``compute``.
        """
        return {}

    def check(self) -> None:
        """Refuse, before any case, settings that cannot work (ParamsError naming the setting and the fix).

        Called once per batch, in the main process, by the task's ``check`` (so a layer a bundle lacks or a
        bundle of another architecture fails the batch at once instead of every case). It may read small
        files (a bundle's ``config.yaml``) but should not load networks. The default checks nothing.
        """

    def fit_report(self) -> Mapping[str, Any]:
        """Optional capability of a fitted class: how its last fit went, e.g. ``{"Converged": False, "Iterations": 100}``
        (a fold-wise study counts the fits that did not converge). The default reports nothing."""
        return dict(getattr(self, "fit_report_", None) or {})

    def voxel_maps(self, case) -> Mapping[str, SimpleITK.Image] | None:
        """Optional capability: ``{Feature token: map}`` on the case's grid (see :mod:`deepradiomics.voxel`).

        The default returns None: the class provides no maps (voxel mode skips it with a warning).
        """
        return None

    def artifacts(self) -> dict[str, str]:
        """``{Key: sha256}`` of every model file or fitted artifact the features depend on.

        Written as ``diagnostics_<name>_<Key>Sha256``, folded into the params hash and into the batch
        cache key, so that a retrained model at the same path is never mistaken for the old one.
        The base class reports the fitted artifact of a fitted class (key ``Fitted``).
        """
        if not self.requires_fit:
            return {}
        digest = getattr(self, "fitted_sha256_", None)
        if digest is None and self.fitted_path() is not None:
            from .artifacts import read_artifact_config

            digest = read_artifact_config(self.fitted_path(), self.name)["state_sha256"]
        return {"Fitted": digest} if digest else {}

    def params_entry(self) -> Any:
        """This instance's entry in a params file's ``featureClass`` section (its settings, defaults left out)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self.Settings)}
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in dataclasses.asdict(self.settings).items()
            if v is not None and v != defaults.get(k)
        }

    def resolve_path(self, value: str | os.PathLike) -> Path:
        """A path setting resolved against the params file's folder (the working directory for dict params)."""
        path = Path(value).expanduser()
        if path.is_absolute() or self._base_dir is None:
            return path
        return self._base_dir / path

    # ------------------------------------------------------------------ fitted classes
    def describe(self, case) -> dict[str, np.ndarray]:
        """Per-case descriptors that ``fit_descriptors`` learns from and ``encode`` turns into features."""
        raise NotImplementedError(f"{type(self).__name__} is not a fitted class (requires_fit is False)")

    def fit_descriptors(self, descriptors: Sequence[Mapping[str, np.ndarray]], case_ids: Sequence[str] = ()) -> FeatureClass:
        """Learn the cohort-level state from the descriptors of the training cases; return self."""
        raise NotImplementedError(f"{type(self).__name__} is not a fitted class (requires_fit is False)")

    def encode(self, descriptors: Mapping[str, np.ndarray]) -> ComputeResult | Mapping[str, float]:
        """Features of one case from its descriptors (fitted state needed), as ``compute`` returns them."""
        raise NotImplementedError(f"{type(self).__name__} is not a fitted class (requires_fit is False)")

    def fitted_state(self) -> dict[str, np.ndarray] | None:
        """The fitted state as named arrays, or None before fit."""
        return None

    def set_fitted_state(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore the fitted state from named arrays (as returned by :meth:`fitted_state`)."""
        raise NotImplementedError(f"{type(self).__name__} is not a fitted class (requires_fit is False)")

    def fit(self, cases: Sequence) -> FeatureClass:
        """Fit on ``cases`` (describe each, then fit the cohort step); return self."""
        cases = list(cases)
        descriptors = [self.describe(case) for case in cases]
        return self.fit_from_descriptors(descriptors, [getattr(c, "case_id", str(i)) for i, c in enumerate(cases)])

    def fit_from_descriptors(self, descriptors: Sequence[Mapping[str, np.ndarray]], case_ids: Sequence[str]) -> FeatureClass:
        """What the framework calls: :meth:`fit_descriptors` plus the record of what it was fitted on."""
        if len(descriptors) == 0:
            raise NotFittedError(f"feature class '{self.name}' ({self._where}): no case to fit on")
        self.fit_descriptors(descriptors, case_ids)
        self.fitted_on_ = tuple(str(c) for c in case_ids)
        self.fitted_sha256_ = None  # fitted in memory: no artifact yet
        return self

    def fitted_path(self) -> Path | None:
        """The fitted artifact folder named by the ``fitted_setting`` setting, or None."""
        value = getattr(self.settings, self.fitted_setting, None)
        return None if value in (None, "") else self.resolve_path(value)

    def is_fitted(self) -> bool:
        """True for a class that needs no fit, or once fitted (in memory)."""
        return not self.requires_fit or self.fitted_state() is not None

    def check_fitted(self) -> None:
        """Load the fitted artifact named by the settings if needed; NotFittedError when there is none."""
        if self.is_fitted():
            return
        path = self.fitted_path()
        if path is None:
            raise NotFittedError(
                f"feature class '{self.name}' ({self._where}) is not fitted: run `deepradiomics fit PARAMS MANIFEST -o DIR` "
                f"and extract with DIR/params.yaml, or call Extractor.fit(cases) first"
            )
        self.load_fitted(path)

    def save_fitted(self, folder: str | os.PathLike, fitted_on: Sequence[str] = ()) -> str:
        """Write the fitted state to ``folder`` (``state.npz`` + ``config.yaml``); return its sha256."""
        from .artifacts import save_artifact

        state = self.fitted_state()
        if state is None:
            raise NotFittedError(f"feature class '{self.name}' is not fitted: nothing to save")
        settings = {k: v for k, v in dataclasses.asdict(self.settings).items() if k != self.fitted_setting}
        digest = save_artifact(folder, self.name, state, settings, fitted_on or getattr(self, "fitted_on_", ()))
        self.fitted_sha256_ = digest
        return digest

    def load_fitted(self, folder: str | os.PathLike) -> FeatureClass:
        """Restore the fitted state saved in ``folder`` (sha256 checked; ModelError when tampered)."""
        from .artifacts import load_artifact

        arrays, config = load_artifact(folder, self.name)
        saved = config.get("settings") or {}
        current = {k: v for k, v in dataclasses.asdict(self.settings).items() if k != self.fitted_setting}
        differing = [k for k in saved if k in current and _plain_value(current[k]) != saved[k]]
        if differing:
            raise ParamsError(
                f"{self._where}: settings {', '.join(differing)} differ from those the artifact '{folder}' was fitted with "
                f"({', '.join(f'{k}={saved[k]!r}' for k in differing)}): use the params.yaml written by `deepradiomics fit`, or refit"
            )
        self.set_fitted_state(arrays)
        self.fitted_sha256_ = config["state_sha256"]
        self.fitted_on_ = tuple(config.get("fitted_on") or ())
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"


def _plain_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    return value


def plain_data(value: Any) -> Any:
    """A YAML-friendly copy of nested settings: mappings with string keys, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


def run_compute(name: str, feature_class: FeatureClass, case: Case) -> ComputeResult:
    """``feature_class.compute(case)`` under the contract, as a :class:`ComputeResult`.

    An unexpected exception becomes a FeatureError naming the class and the case (deepradiomics errors pass
    as they are), and the features returned must be exactly ``feature_names()``, in order.
    """
    from .errors import DeepRadiomicsError, FeatureError

    try:
        result = ComputeResult.of(feature_class.compute(case))
    except DeepRadiomicsError:
        raise
    except Exception as exc:
        raise FeatureError(f"feature class '{name}' failed on case '{case.case_id}': {type(exc).__name__}: {exc}") from exc
    if list(result.features) != list(feature_class.feature_names()):
        raise FeatureError(f"feature class '{name}' returned features {list(result.features)[:5]}... that differ from its feature_names()")
    return result


def contract_problems(cls: type) -> list[str]:
    """What makes ``cls`` break the class-level contract (checked when the registry loads it)."""
    problems = []
    if not (isinstance(cls, type) and issubclass(cls, FeatureClass)):
        return [f"{cls!r} is not a subclass of deepradiomics.FeatureClass"]
    if cls.family not in FAMILIES:
        problems.append(f"family={cls.family!r} is not one of {FAMILIES}")
    if not dataclasses.is_dataclass(cls.Settings):
        problems.append("Settings is not a dataclass")
    elif cls.requires_fit and cls.fitted_setting not in {f.name for f in dataclasses.fields(cls.Settings)}:
        problems.append(f"it requires fit but its Settings have no field '{cls.fitted_setting}' (its fitted_setting)")
    return problems
