"""Conformance check every feature class, ours and third parties', must pass.

Examples
--------
>>> from deepradiomics.testing import check_feature_class
>>> check_feature_class(MyClass, case=my_case)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math

from .errors import ParamsError
from .featureclass import FAMILIES, FeatureClass
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


def check_feature_class(cls: type, settings=None, case=None, fit_cases=None) -> None:
    """Raise AssertionError describing the first way ``cls`` breaks the FeatureClass contract.

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
    """

    def require(condition, message):
        if not condition:
            raise AssertionError(f"{getattr(cls, '__name__', cls)}: {message}")

    require(isinstance(cls, type) and issubclass(cls, FeatureClass), "is not a subclass of deepradiomics.FeatureClass")
    try:
        check_token(cls.name, "class name")
    except ValueError as exc:
        require(False, str(exc))
    require(cls.family in FAMILIES, f"family {cls.family!r} is not one of {FAMILIES}")
    require(dataclasses.is_dataclass(cls.Settings), "Settings is not a dataclass")
    try:
        cls({"surely_not_a_setting": 1})
    except ParamsError as exc:
        require("surely_not_a_setting" in str(exc), "the error for an unknown setting does not name the key")
    else:
        require(False, "accepts an unknown setting key")

    instance = cls(settings)
    require(not any(k.endswith("_") and not k.startswith("_") for k in vars(instance)), "__init__ sets fitted attributes (ending in '_'); it should only store settings")
    case = case if case is not None else synthetic_case()
    if cls.requires_fit:
        returned = instance.fit(fit_cases or [case])
        require(returned is instance, "fit() must return self")
    names = instance.feature_names()
    require(isinstance(names, list) and names, "feature_names() must return a non-empty list")
    require(len(set(names)) == len(names), "feature_names() has duplicates")
    for name in names:
        try:
            check_token(name, "feature name")
        except ValueError as exc:
            require(False, str(exc))
    values = instance.compute(case)
    require(list(values) == names, "compute() keys differ from feature_names() (same names, same order required)")
    for name, value in values.items():
        require(isinstance(value, float), f"feature {name} is {type(value).__name__}, not float")
    require(any(not math.isnan(v) for v in values.values()), "every feature is NaN")
    again = instance.compute(case)
    require(all((a == b) or (math.isnan(a) and math.isnan(b)) for a, b in zip(values.values(), again.values())), "compute() is not deterministic on the same case")
    diagnostics = instance.diagnostics()
    require(isinstance(diagnostics, dict), "diagnostics() must return a dict")
    for key in diagnostics:
        try:
            check_token(key, "diagnostics key")
        except ValueError as exc:
            require(False, str(exc))
