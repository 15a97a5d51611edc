"""Intensity perturbations for robustness studies, as small recorded transforms, in two domains.

Kobayashi et al. (2021) perturb "the entire pixel value of input images" by scaling and shifting, with
magnitudes s from 0.0 to 1.0 in steps of 0.1, and state that they did so "for pixel intensities that were
standardized through Z-score normalization": the paper perturbs the network's input. A perturbation here
acts in one of two domains:

``domain="input"`` (the paper's definition)
    Applied by a feature class to its own network input, where it forms that input (classes declaring
    ``FeatureClass.network_input``; the case carries these transforms in ``Case.input_transforms``, and
    each class calls :func:`perturb_input` once). For ``vqhist`` and ``fisher`` that input is the z-scored,
    resized slices of the bundle's preprocessing; for ``cnn`` the patches scaled to [-127.5, 127.5].
``domain="image"``
    Applied to every modality image when it is read, mask untouched (what a classical study perturbs; see
    :class:`deepradiomics.case.Case`). A class that normalises its input (a z-score, cnn's per-patch
    min-max scaling) undoes a whole-image scale entirely, and turns a whole-image shift into one step
    whatever s is (the background becomes foreground): this is the raw-image robustness, not the paper's.

The formulas are the same in both domains, on the image ``I`` or on the network input ``x``:

- :class:`IntensityScale` ``x' = (1 + s) x`` over the whole image/input (``region="image"``, the
  paper's "entire pixel value"), or with ``region="foreground"``, ``x' = mu + (1 + s)(x - mu)`` over the
  foreground only;
- :class:`IntensityShift` ``x' = x + s * sd`` over the whole image/input, or over the foreground only.

``mu`` and ``sd`` are the mean and standard deviation of the *unperturbed* foreground, so a shift is
expressed in units of the tissue's intensity spread (the paper does not state its unit; this choice is
the project's). Image domain: the foreground is the voxels > 0 of the image. Input domain: the values of
the input that come from voxels > 0; ``mu`` and ``sd`` are those the class's input is standardised
by, per unit it normalises independently: for the z-scored slices of ``vqhist`` and ``fisher`` 0 and 1 by
construction (per channel), so the shift at level s adds exactly s, as in the paper's z-scored input;
for ``cnn``, each patch's own foreground mean and standard deviation in its [-127.5, 127.5] units (a patch
of uniformly spread values has sd 255 / sqrt(12) = 73.6), so the shift moves the patch by s of its own
spread and the scale widens it to [-(1 + s) 127.5, (1 + s) 127.5] (about 0, the patch's mid-range).

Every perturbed image, level 0 included, is float32, so that every level takes the same PyRadiomics code
path (on 8-bit images PyRadiomics 3.0.1 computes its top bin edge in the image's integer type and can
overflow). Each transform has ``describe()`` (recorded in ``diagnostics_Case_Transforms`` and in the batch
cache key): ``scale(0.5, image)`` in the image domain, ``scale(0.5, image, input)`` in the input domain,
so rows of different domains or levels never share a cached result.

Examples
--------
>>> import SimpleITK as sitk, numpy as np
>>> image = sitk.GetImageFromArray(np.array([[[0.0, 2.0, 4.0]]], dtype=np.float32))
>>> sitk.GetArrayFromImage(IntensityShift(0.5)(image)).ravel().tolist()
[0.5, 2.5, 4.5]
>>> sitk.GetArrayFromImage(IntensityScale(1.0, region="foreground")(image)).ravel().tolist()
[0.0, 1.0, 5.0]
>>> import torch
>>> z = torch.tensor([[-1.0, 0.0, 2.0]])
>>> perturb_input(z, [IntensityShift(0.5, domain="input")], mean=0.0, sd=1.0).tolist()
[[-0.5, 0.5, 2.5]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import CaseError, ParamsError
from .nets.preprocess import perturb_input

__all__ = [
    "DEFAULT_LEVELS",
    "DOMAINS",
    "IntensityScale",
    "IntensityShift",
    "KINDS",
    "REGIONS",
    "parse_levels",
    "perturb_input",
    "perturbation",
]

REGIONS = ("image", "foreground")
KINDS = ("scale", "shift")
#: where a perturbation acts: the raw image, or the network input a class forms (the paper's)
DOMAINS = ("image", "input")
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
    domain: str = "image"

    kind = "perturbation"

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise ParamsError(f"perturbation region '{self.region}' is not one of {', '.join(REGIONS)}")
        if self.domain not in DOMAINS:
            raise ParamsError(f"perturbation domain '{self.domain}' is not one of {', '.join(DOMAINS)}")
        if not np.isfinite(self.level) or self.level <= -1:
            raise ParamsError(f"perturbation level {self.level} must be a finite number > -1")

    @property
    def network_input(self) -> bool:
        """True for the input domain: a class applies it to its network input (``Case.input_transforms``)."""
        return self.domain == "input"

    def describe(self) -> str:
        """``kind(level, region)``, with ``, input`` added in the input domain (diagnostics and cache keys)."""
        suffix = ", input" if self.network_input else ""
        return f"{self.kind}({self.level:g}, {self.region}{suffix})"

    def __call__(self, image, case=None, name: str = "image"):
        import SimpleITK as sitk

        if self.network_input:
            raise ParamsError(
                f"{self.describe()} acts on a class's network input, not on an image: give it to Case.with_input_transforms"
            )
        raw = sitk.GetArrayFromImage(image).astype(np.float64)
        where = f"image '{case.source(name)}' of case '{case.case_id}'" if case is not None else "the image"
        out = self.apply(raw, where)
        result = sitk.GetImageFromArray(out.astype(np.float32))
        result.CopyInformation(image)
        return result

    def apply(self, raw: np.ndarray, where: str = "the image") -> np.ndarray:
        """The perturbed voxels of the image ``raw`` (image domain; statistics of its voxels > 0)."""
        raise NotImplementedError

    def apply_input(self, x, *, mean, sd, foreground):
        """The perturbed network input ``x`` (a torch tensor; see :func:`perturb_input` for the arguments)."""
        raise NotImplementedError


def _select(condition, inside, outside):
    """``inside`` where ``condition`` holds, else ``outside`` (torch tensors)."""
    import torch

    return torch.where(condition, inside, outside)


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

    def apply_input(self, x, *, mean, sd, foreground):
        """``(1 + s) x`` (whole input) or ``mu + (1 + s)(x - mu)`` over ``foreground``."""
        if self.level == 0:
            return x
        if self.region == "image":
            return x * (1.0 + self.level)
        return _select(foreground, mean + (1.0 + self.level) * (x - mean), x)


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

    def apply_input(self, x, *, mean, sd, foreground):
        """``x + s sd`` over the whole input, or over ``foreground`` only."""
        if self.level == 0:
            return x
        if self.region == "image":
            return x + self.level * sd
        return _select(foreground, x + self.level * sd, x)


PERTURBATIONS = {"scale": IntensityScale, "shift": IntensityShift}


def perturbation(kind: str, level: float, region: str = "image", domain: str = "image") -> _Perturbation:
    """The transform of ``kind`` (``scale`` or ``shift``) at ``level`` over ``region`` (``image`` or
    ``foreground``) in ``domain`` (``image``: the raw image; ``input``: a class's network input, the paper's)."""
    if kind not in PERTURBATIONS:
        raise ParamsError(f"perturbation '{kind}' is not one of {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[kind](float(level), region, domain)


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
