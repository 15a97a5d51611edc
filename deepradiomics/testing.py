"""Conformance checks every feature class, ours and third parties', must pass.

Like scikit-learn's ``check_estimator``: one small check per property, each reported by name.

Examples
--------
>>> from deepradiomics.testing import check_feature_class
>>> report = check_feature_class(MyClass, case=my_case)  # doctest: +SKIP
>>> print(report)  # doctest: +SKIP
PASS contract           class attributes, Settings dataclass, unknown settings refused
PASS names_valid        ...
"""

from __future__ import annotations

import math
import pickle
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError, NotFittedError, ParamsError
from .featureclass import ComputeResult, FeatureClass, contract_problems
from .naming import check_token


def synthetic_case(size: int = 24, seed: int = 0, modalities=("Image",)):
    """A small 3D case (a bright ellipsoid in noise) for mechanics checks, not for results."""
    import numpy as np
    import SimpleITK as sitk

    from .case import Case

    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:size, :size, :size] - size / 2
    inside = (x / (size / 3)) ** 2 + (y / (size / 4)) ** 2 + (z / (size / 5)) ** 2 <= 1
    images = {}
    for index, name in enumerate(modalities):
        array = rng.normal(100 + 10 * index, 10, size=(size,) * 3) + 80 * inside
        images[name] = sitk.GetImageFromArray(array.astype(np.float32))
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    return Case(images, mask, label=1, case_id="synthetic")


@dataclass
class CheckResult:
    """One conformance check: its name, whether it passed, and what it found or why it failed."""
    name: str
    passed: bool | None  # None: skipped (not applicable)
    detail: str = ""


@dataclass
class ConformanceReport:
    """The outcome of every named check of :func:`check_feature_class`."""

    cls: type
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        """The checks that failed."""
        return [r for r in self.results if r.passed is False]

    def __getitem__(self, name: str) -> CheckResult:
        return next(r for r in self.results if r.name == name)

    def __str__(self) -> str:
        status = {True: "PASS", False: "FAIL", None: "SKIP"}
        return "\n".join(f"{status[r.passed]} {r.name:<22} {r.detail}" for r in self.results)


class _Failed(AssertionError):
    pass


def _require(condition, message: str) -> None:
    if not condition:
        raise _Failed(message)


@dataclass
class _Context:
    """What the checks share: the class, how to build it, the case, and what earlier checks produced."""

    cls: type
    settings: object
    case: object
    fit_cases: list
    instance: object = None
    values: dict | None = None

    def fitted(self):
        """An instance of the class, fitted when it requires fit (built once, reused by later checks)."""
        if self.instance is None:
            self.instance = self.cls(self.settings)
        if self.cls.requires_fit and not self.instance.is_fitted():
            returned = self.instance.fit(self.fit_cases)
            _require(returned is self.instance, "fit() must return self")
            _require(self.instance.is_fitted(), "is_fitted() is False after fit()")
        return self.instance


def _same(a, b) -> bool:
    """Same features (names, order, values; NaN equal to NaN), from mappings or ComputeResults."""
    a, b = dict(ComputeResult.of(a).features), dict(ComputeResult.of(b).features)
    return list(a) == list(b) and all((x == y) or (math.isnan(x) and math.isnan(y)) for x, y in zip(a.values(), b.values()))


def _valid_token(token: str, what: str) -> None:
    try:
        check_token(token, what)
    except ValueError as exc:
        raise _Failed(str(exc)) from None


def check_contract(ctx: _Context) -> str:
    """Class attributes, Settings dataclass, unknown settings refused with the key named."""
    cls = ctx.cls
    _require(isinstance(cls, type) and issubclass(cls, FeatureClass), "is not a subclass of deepradiomics.FeatureClass")
    _valid_token(cls.name, "class name")
    problems = contract_problems(cls)
    _require(not problems, "; ".join(problems))
    try:
        cls({"surely_not_a_setting": 1})
    except ParamsError as exc:
        _require("surely_not_a_setting" in str(exc), "the error for an unknown setting does not name the key")
    else:
        raise _Failed("accepts an unknown setting key")
    return "class attributes, Settings dataclass, unknown settings refused"


def check_init_stores_settings(ctx: _Context) -> str:
    """``__init__`` stores settings only: no fitted attribute (ending in ``_``) yet."""
    instance = ctx.cls(ctx.settings)
    fitted = [k for k in vars(instance) if k.endswith("_") and not k.startswith("_")]
    _require(not fitted, f"__init__ sets fitted attributes {fitted} (ending in '_'); it should only store settings")
    ctx.instance = instance
    return "settings only"


def check_refuses_compute_before_fit(ctx: _Context) -> str:
    """A fitted class raises NotFittedError naming ``deepradiomics fit`` when computing before fit."""
    try:
        ctx.cls(ctx.settings).compute(ctx.case)
    except NotFittedError as exc:
        _require("deepradiomics fit" in str(exc), "the NotFittedError does not name `deepradiomics fit`")
        return "NotFittedError naming `deepradiomics fit`"
    raise _Failed("compute() before fit did not raise NotFittedError")


def check_names_valid(ctx: _Context) -> str:
    """``feature_names()``: a non-empty list of distinct valid name tokens."""
    names = ctx.fitted().feature_names()
    _require(isinstance(names, list) and names, "feature_names() must return a non-empty list")
    _require(len(set(names)) == len(names), "feature_names() has duplicates")
    for name in names:
        _valid_token(name, "feature name")
    return f"{len(names)} names"


def check_computes(ctx: _Context) -> str:
    """``compute()`` gives floats named as ``feature_names()``, in order (a mapping, or a ComputeResult with the
    case's diagnostics); diagnostics keys are tokens; nothing about the case is left on the instance."""
    instance = ctx.fitted()
    before = set(vars(instance))
    result = instance.compute(ctx.case)
    _require(isinstance(result, (Mapping, ComputeResult)), f"compute() returned {type(result).__name__}: return a mapping or a ComputeResult")
    result = ComputeResult.of(result)
    values = dict(result.features)
    _require(list(values) == instance.feature_names(), "compute() keys differ from feature_names() (same names, same order required)")
    left = sorted(k for k in set(vars(instance)) - before if k.endswith("_") and not k.startswith("_"))
    _require(not left, f"compute() left per-case values {left} on the instance: return them in a ComputeResult's diagnostics")
    for name, value in values.items():
        _require(isinstance(value, float), f"feature {name} is {type(value).__name__}, not float")
    _require(any(not math.isnan(v) for v in values.values()), "every feature is NaN")
    diagnostics = instance.diagnostics()
    _require(isinstance(diagnostics, dict), "diagnostics() must return a dict")
    _require(isinstance(result.diagnostics, Mapping), "ComputeResult.diagnostics must be a mapping")
    for key in [*diagnostics, *result.diagnostics, *instance.artifacts()]:
        _valid_token(key, "diagnostics key")
    ctx.values = values
    return f"{len(values)} values"


def check_deterministic(ctx: _Context) -> str:
    """The same case gives the same values twice."""
    _require(_same(ctx.values, ctx.fitted().compute(ctx.case)), "compute() is not deterministic on the same case")
    return "same values twice"


def check_pickles(ctx: _Context) -> str:
    """A pickled and unpickled instance computes the same values (batch workers receive pickles)."""
    clone = pickle.loads(pickle.dumps(ctx.fitted()))
    _require(_same(ctx.values, clone.compute(ctx.case)), "a pickled and unpickled instance computes other values")
    return "pickle round trip computes the same values"


def check_save_load_round_trip(ctx: _Context) -> str:
    """A fitted class rebuilt from its saved artifact computes the same values; a tampered artifact is refused."""
    instance = ctx.fitted()
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / ctx.cls.name
        digest = instance.save_fitted(target)
        settings = {**instance.params_entry(), instance.fitted_setting: str(target)}
        restored = ctx.cls(settings)
        _require(_same(restored.compute(ctx.case), ctx.values), "the class rebuilt from its saved artifact computes other values")
        _require(restored.artifacts().get("Fitted") == digest, "artifacts() does not report the saved artifact's sha256")
        state_file = target / "state.npz"
        data = bytearray(state_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        state_file.write_bytes(bytes(data))
        try:
            ctx.cls(settings).compute(ctx.case)
        except ModelError:
            return "round trip exact; a tampered artifact is refused"
    raise _Failed("a tampered artifact was accepted")


def check_loads_from_params(ctx: _Context) -> str:
    """Named in a params file, the class computes through the Extractor with the columns it announces."""
    import yaml

    from .extractor import Extractor
    from .registry import get_registry

    cls, registry = ctx.cls, get_registry()
    temporary = cls.name not in registry
    if not temporary:
        _require(registry.get(cls.name) is cls, f"another class is registered as '{cls.name}': rename one of them")
    else:  # not installed yet (a class under development): register it for this check only
        registry.register(cls, source="check_feature_class")
    try:
        with tempfile.TemporaryDirectory() as folder:
            instance = ctx.fitted()
            value = instance.params_entry()
            if cls.requires_fit:
                instance.save_fitted(Path(folder) / cls.name)
                value[instance.fitted_setting] = cls.name  # relative to the params file
            path = Path(folder) / "params.yaml"
            path.write_text(yaml.safe_dump({"featureClass": {cls.name: _plain(value)}}))
            row = Extractor.from_yaml(path).compute(ctx.case)
            expected = [f"{cls.image_type}_{cls.name}_{n}" for n in instance.feature_names()]
            columns = [c for c in row if not c.startswith("diagnostics_")]
            _require(columns == expected, f"the Extractor's columns {columns[:3]}... differ from the class's names {expected[:3]}...")
    finally:
        if temporary:
            registry.unregister(cls.name)
    return "params file -> Extractor -> columns" + (" (registered for the check only)" if temporary else "")


#: (name, check, applies(ctx, report)): run in this order; a check that does not apply is reported as skipped
CHECKS = (
    ("contract", check_contract, lambda ctx, report: True),
    ("init_stores_settings", check_init_stores_settings, lambda ctx, report: not report.failed),
    ("refuses_compute_before_fit", check_refuses_compute_before_fit, lambda ctx, report: ctx.cls.requires_fit and not report.failed),
    ("names_valid", check_names_valid, lambda ctx, report: not report.failed),
    ("computes", check_computes, lambda ctx, report: not report.failed),
    ("deterministic", check_deterministic, lambda ctx, report: ctx.values is not None),
    ("pickles", check_pickles, lambda ctx, report: ctx.values is not None),
    ("save_load_round_trip", check_save_load_round_trip, lambda ctx, report: ctx.cls.requires_fit and ctx.values is not None),
    ("loads_from_params", check_loads_from_params, lambda ctx, report: ctx.values is not None),
)


def check_feature_class(cls: type, settings=None, case=None, fit_cases=None, raise_on_failure: bool = True) -> ConformanceReport:
    """Run every named check of :data:`CHECKS` on ``cls``; return the report, or raise AssertionError listing failures.

    Checks: ``contract``, ``init_stores_settings``, ``refuses_compute_before_fit`` (fitted classes),
    ``names_valid``, ``computes``, ``deterministic``, ``pickles`` (batch workers need it),
    ``save_load_round_trip`` (fitted classes; a tampered artifact refused) and ``loads_from_params``
    (through :class:`~deepradiomics.extractor.Extractor` from a params file, with the columns it announces).

    Parameters
    ----------
    cls
        The class to check.
    settings
        Settings mapping to build it with (default: its defaults).
    case
        A case to compute on (default: :func:`synthetic_case`).
    fit_cases
        Cases for ``fit`` when the class ``requires_fit`` (default: ``[case]``).
    raise_on_failure
        Raise AssertionError (naming every failed check) when a check fails.
    """
    case = case if case is not None else synthetic_case()
    ctx = _Context(cls, settings, case, list(fit_cases) if fit_cases is not None else [case])
    report = ConformanceReport(cls)
    for name, check, applies in CHECKS:
        if not applies(ctx, report):
            report.results.append(CheckResult(name, None, "not applicable"))
            continue
        try:
            detail = check(ctx)
        except _Failed as exc:
            report.results.append(CheckResult(name, False, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a crash is a failed check, reported with its type
            report.results.append(CheckResult(name, False, f"raised {type(exc).__name__}: {exc}"))
        else:
            report.results.append(CheckResult(name, True, detail))
    if raise_on_failure and report.failed:
        lines = "; ".join(f"{r.name}: {r.detail}" for r in report.failed)
        raise AssertionError(f"{getattr(cls, '__name__', cls)} fails {len(report.failed)} check(s): {lines}")
    return report


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


__all__ = ["ConformanceReport", "CheckResult", "check_feature_class", "synthetic_case"]
