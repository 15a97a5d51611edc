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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError, NotFittedError, ParamsError
from .featureclass import FAMILIES, FeatureClass, contract_problems
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


def check_feature_class(cls: type, settings=None, case=None, fit_cases=None, raise_on_failure: bool = True) -> ConformanceReport:
    """Run every named check on ``cls``; return the report, or raise AssertionError listing the failures.

    Checks: ``contract`` (class attributes, Settings dataclass, unknown settings refused), ``init_stores_settings``,
    ``names_valid``, ``loads_from_params`` (through :class:`~deepradiomics.extractor.Extractor` from a params
    file, with the columns it announces), ``computes``, ``deterministic``, ``pickles`` (batch workers need it),
    and for fitted classes ``refuses_compute_before_fit`` and ``save_load_round_trip`` (including a tampered
    artifact being refused).

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
    report = ConformanceReport(cls)
    case = case if case is not None else synthetic_case()
    fit_cases = list(fit_cases) if fit_cases is not None else [case]
    state: dict = {}

    def run(name: str, check: Callable[[], str | None], applies: bool = True) -> None:
        if not applies:
            report.results.append(CheckResult(name, None, "not applicable"))
            return
        try:
            detail = check() or ""
        except _Failed as exc:
            report.results.append(CheckResult(name, False, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a crash is a failed check, reported with its type
            report.results.append(CheckResult(name, False, f"raised {type(exc).__name__}: {exc}"))
        else:
            report.results.append(CheckResult(name, True, detail))

    def contract():
        _require(isinstance(cls, type) and issubclass(cls, FeatureClass), "is not a subclass of deepradiomics.FeatureClass")
        try:
            check_token(cls.name, "class name")
        except ValueError as exc:
            raise _Failed(str(exc)) from None
        problems = contract_problems(cls)
        _require(not problems, "; ".join(problems))
        _require(cls.family in FAMILIES, f"family {cls.family!r} is not one of {FAMILIES}")
        try:
            cls({"surely_not_a_setting": 1})
        except ParamsError as exc:
            _require("surely_not_a_setting" in str(exc), "the error for an unknown setting does not name the key")
        else:
            raise _Failed("accepts an unknown setting key")
        return "class attributes, Settings dataclass, unknown settings refused"

    def init_stores_settings():
        instance = cls(settings)
        fitted = [k for k in vars(instance) if k.endswith("_") and not k.startswith("_")]
        _require(not fitted, f"__init__ sets fitted attributes {fitted} (ending in '_'); it should only store settings")
        state["instance"] = instance

    def refuses_compute_before_fit():
        instance = cls(settings)
        try:
            instance.compute(case)
        except NotFittedError as exc:
            _require("deepradiomics fit" in str(exc), "the NotFittedError does not name `deepradiomics fit`")
            return "NotFittedError naming `deepradiomics fit`"
        raise _Failed("compute() before fit did not raise NotFittedError")

    def fitted_instance():
        instance = state.get("instance") or cls(settings)
        if cls.requires_fit and not instance.is_fitted():
            returned = instance.fit(fit_cases)
            _require(returned is instance, "fit() must return self")
            _require(instance.is_fitted(), "is_fitted() is False after fit()")
        state["instance"] = instance
        return instance

    def names_valid():
        names = fitted_instance().feature_names()
        _require(isinstance(names, list) and names, "feature_names() must return a non-empty list")
        _require(len(set(names)) == len(names), "feature_names() has duplicates")
        for name in names:
            try:
                check_token(name, "feature name")
            except ValueError as exc:
                raise _Failed(str(exc)) from None
        return f"{len(names)} names"

    def computes():
        instance = fitted_instance()
        values = instance.compute(case)
        names = instance.feature_names()
        _require(list(values) == names, "compute() keys differ from feature_names() (same names, same order required)")
        for name, value in values.items():
            _require(isinstance(value, float), f"feature {name} is {type(value).__name__}, not float")
        _require(any(not math.isnan(v) for v in values.values()), "every feature is NaN")
        diagnostics = instance.diagnostics()
        _require(isinstance(diagnostics, dict), "diagnostics() must return a dict")
        for key in [*diagnostics, *instance.artifacts()]:
            try:
                check_token(key, "diagnostics key")
            except ValueError as exc:
                raise _Failed(str(exc)) from None
        state["values"] = values

    def deterministic():
        first = state.get("values") or fitted_instance().compute(case)
        again = fitted_instance().compute(case)
        same = all((a == b) or (math.isnan(a) and math.isnan(b)) for a, b in zip(first.values(), again.values()))
        _require(same, "compute() is not deterministic on the same case")

    def pickles():
        instance = fitted_instance()
        clone = pickle.loads(pickle.dumps(instance))
        if "values" in state:
            again = clone.compute(case)
            same = all((a == b) or (math.isnan(a) and math.isnan(b)) for a, b in zip(state["values"].values(), again.values()))
            _require(same, "a pickled and unpickled instance computes other values")
        return "pickle round trip computes the same values"

    def save_load_round_trip():
        instance = fitted_instance()
        with tempfile.TemporaryDirectory() as folder:
            digest = instance.save_fitted(Path(folder) / cls.name)
            restored = cls({**_settings_dict(instance), instance.fitted_setting: str(Path(folder) / cls.name)})
            values = restored.compute(case)
            _require(values == instance.compute(case), "the class rebuilt from its saved artifact computes other values")
            _require(restored.artifacts().get("Fitted") == digest, "artifacts() does not report the saved artifact's sha256")
            state_file = Path(folder) / cls.name / "state.npz"
            data = bytearray(state_file.read_bytes())
            data[len(data) // 2] ^= 0xFF
            state_file.write_bytes(bytes(data))
            try:
                cls({**_settings_dict(instance), instance.fitted_setting: str(Path(folder) / cls.name)}).compute(case)
            except ModelError:
                return "round trip exact; a tampered artifact is refused"
            raise _Failed("a tampered artifact was accepted")

    def loads_from_params():
        from .extractor import Extractor
        from .registry import get_registry

        registry = get_registry()
        temporary = cls.name not in registry
        if not temporary:
            _require(registry.get(cls.name) is cls, f"another class is registered as '{cls.name}': rename one of them")
        else:  # not installed yet (a class under development): register it for this check only
            registry.register(cls, source="check_feature_class")
        import yaml

        try:
            with tempfile.TemporaryDirectory() as folder:
                instance = fitted_instance()
                value = instance.params_entry()
                if cls.requires_fit:
                    instance.save_fitted(Path(folder) / cls.name)
                    value[instance.fitted_setting] = cls.name  # relative to the params file
                path = Path(folder) / "params.yaml"
                path.write_text(yaml.safe_dump({"featureClass": {cls.name: _plain(value)}}))
                row = Extractor.from_yaml(path).compute(case)
                expected = [f"{cls.image_type}_{cls.name}_{n}" for n in instance.feature_names()]
                columns = [c for c in row if not c.startswith("diagnostics_")]
                _require(columns == expected, f"the Extractor's columns {columns[:3]}... differ from the class's names {expected[:3]}...")
        finally:
            if temporary:
                registry.unregister(cls.name)
        return "params file -> Extractor -> columns" + (" (registered for the check only)" if temporary else "")

    run("contract", contract)
    run("init_stores_settings", init_stores_settings, not report.failed)
    run("refuses_compute_before_fit", refuses_compute_before_fit, cls.requires_fit and not report.failed)
    run("names_valid", names_valid, not report.failed)
    run("computes", computes, not report.failed)
    run("deterministic", deterministic, "values" in state)
    run("pickles", pickles, "instance" in state)
    run("save_load_round_trip", save_load_round_trip, cls.requires_fit and "values" in state)
    run("loads_from_params", loads_from_params, "values" in state)
    if raise_on_failure and report.failed:
        lines = "; ".join(f"{r.name}: {r.detail}" for r in report.failed)
        raise AssertionError(f"{getattr(cls, '__name__', cls)} fails {len(report.failed)} check(s): {lines}")
    return report


def _settings_dict(instance) -> dict:
    return instance.params_entry()


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


__all__ = ["ConformanceReport", "CheckResult", "check_feature_class", "synthetic_case"]
