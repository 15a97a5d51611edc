"""Intensity perturbations of a Case (robustness studies), as small recorded transforms.

Kobayashi et al. (2021) perturb "the entire pixel value of input images" by scaling and shifting, with
magnitudes s from 0.0 to 1.0 in steps of 0.1. As Case transforms (applied to every modality image when
it is read, mask untouched; see :class:`deepradiomics.case.Case`):

- :class:`IntensityScale` ``I' = (1 + s) I`` over the whole image (the paper's definition), or with
  ``region="foreground"``, ``I' = mu + (1 + s)(I - mu)`` over the voxels > 0 only;
- :class:`IntensityShift` ``I' = I + s * sd`` over the whole image, or over the voxels > 0 only.

``mu`` and ``sd`` are the mean and standard deviation of the image's foreground (voxels > 0) *before* the
perturbation, so the shift is expressed in units of the tissue's intensity spread and means the same on
8-bit MRI and on CT (the paper does not state its unit; this choice is ours). Every perturbed image,
level 0 included, is float32, so that every level takes the same PyRadiomics code path (on 8-bit images
PyRadiomics 3.0.1 computes its top bin edge in the image's integer type and can overflow).

Each transform has ``describe()`` (recorded in ``diagnostics_Case_Transforms`` and in the batch cache key).

Examples
--------
>>> import SimpleITK as sitk, numpy as np
>>> image = sitk.GetImageFromArray(np.array([[[0.0, 2.0, 4.0]]], dtype=np.float32))
>>> sitk.GetArrayFromImage(IntensityShift(0.5)(image)).ravel().tolist()
[0.5, 2.5, 4.5]
>>> sitk.GetArrayFromImage(IntensityScale(1.0, region="foreground")(image)).ravel().tolist()
[0.0, 1.0, 5.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import CaseError, ParamsError

REGIONS = ("image", "foreground")
KINDS = ("scale", "shift")
#: the paper's levels: 0.0 to 1.0 in steps of 0.1
DEFAULT_LEVELS = tuple(round(0.1 * i, 1) for i in range(11))


def _foreground_stats(raw: np.ndarray, where: str) -> tuple[np.ndarray, float, float]:
    foreground = raw > 0
    if not foreground.any():
        raise CaseError(f"{where} has no voxel > 0: the foreground statistics of the perturbation are undefined")
    values = raw[foreground]
    sd = float(values.std())
    return foreground, float(values.mean()), sd if sd > 0 else 1.0


@dataclass(frozen=True)
class _Perturbation:
    level: float
    region: str = "image"

    kind = "perturbation"

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise ParamsError(f"perturbation region '{self.region}' is not one of {', '.join(REGIONS)}")
        if not np.isfinite(self.level) or self.level <= -1:
            raise ParamsError(f"perturbation level {self.level} must be a finite number > -1")

    def describe(self) -> str:
        return f"{self.kind}({self.level:g}, {self.region})"

    def __call__(self, image, case=None, name: str = "image"):
        import SimpleITK as sitk

        raw = sitk.GetArrayFromImage(image).astype(np.float64)
        where = f"image '{case.source(name)}' of case '{case.case_id}'" if case is not None else "the image"
        out = self.apply(raw, where)
        result = sitk.GetImageFromArray(out.astype(np.float32))
        result.CopyInformation(image)
        return result

    def apply(self, raw: np.ndarray, where: str = "the image") -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class IntensityScale(_Perturbation):
    """``I' = (1 + s) I`` (whole image) or ``mu + (1 + s)(I - mu)`` over the foreground (voxels > 0)."""

    kind = "scale"

    def apply(self, raw: np.ndarray, where: str = "the image") -> np.ndarray:
        """The perturbed voxels of ``raw`` (see the class docstring for the formula)."""
        if self.level == 0:
            return raw
        if self.region == "image":
            return raw * (1.0 + self.level)
        foreground, mean, _ = _foreground_stats(raw, where)
        out = raw.copy()
        out[foreground] = mean + (1.0 + self.level) * (raw[foreground] - mean)
        return out


@dataclass(frozen=True)
class IntensityShift(_Perturbation):
    """``I' = I + s sd`` (whole image, or only voxels > 0), ``sd`` = the foreground standard deviation."""

    kind = "shift"

    def apply(self, raw: np.ndarray, where: str = "the image") -> np.ndarray:
        """The perturbed voxels of ``raw`` (see the class docstring for the formula)."""
        if self.level == 0:
            return raw
        foreground, _, sd = _foreground_stats(raw, where)
        if self.region == "image":
            return raw + self.level * sd
        out = raw.copy()
        out[foreground] = raw[foreground] + self.level * sd
        return out


PERTURBATIONS = {"scale": IntensityScale, "shift": IntensityShift}


def perturbation(kind: str, level: float, region: str = "image") -> _Perturbation:
    """The transform of ``kind`` (``scale`` or ``shift``) at ``level`` over ``region`` (``image`` or ``foreground``)."""
    if kind not in PERTURBATIONS:
        raise ParamsError(f"perturbation '{kind}' is not one of {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[kind](float(level), region)


def parse_levels(text: str | list[float] | tuple[float, ...]) -> list[float]:
    """``"0,0.1,0.5"`` -> [0.0, 0.1, 0.5]; 0 is added when absent; levels must be finite, > -1 and distinct."""
    if isinstance(text, str):
        try:
            levels = [float(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise ParamsError(f"levels '{text}' are not comma-separated numbers, e.g. 0,0.1,0.2") from None
    else:
        levels = [float(t) for t in text]
    if any(not np.isfinite(level) or level <= -1 for level in levels):
        raise ParamsError(f"levels {levels}: a level must be a finite number > -1 (scale 1 + s must stay positive)")
    levels = sorted(set(levels) | {0.0})
    if len(levels) < 2:
        raise ParamsError("give at least one non-zero level, e.g. --levels 0,0.1,0.2")
    return levels
