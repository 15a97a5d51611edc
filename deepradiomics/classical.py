"""The PyRadiomics backend: classical feature classes computed by PyRadiomics itself.

All classical classes of a params file are computed in one ``RadiomicsFeatureExtractor.execute`` call
per case, so preprocessing (resampling, filters, discretisation) happens once, exactly as in plain
PyRadiomics, and names and values are PyRadiomics' own.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import FeatureError, ParamsError
from .featureclass import FeatureClass
from .naming import FeatureName, feature_class_of, format_name, is_diagnostic, is_feature

#: PyRadiomics 3.0.1's feature classes (``radiomics.getFeatureClasses()``), listed to avoid importing it.
CLASSICAL_CLASS_NAMES = ("firstorder", "shape", "shape2D", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
#: the classes whose matrices are sized by the number of grey levels (GLCM: Ng x Ng x 13 angles)
TEXTURE_CLASS_NAMES = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")

#: most grey levels a discretisation may give: for the texture classes (a 4096 x 4096 x 13 GLCM of float64
#: is 1.7 GB; project's choice, well above the 16-256 levels radiomics studies use), and for first order alone
MAX_TEXTURE_GREY_LEVELS = 4096
MAX_GREY_LEVELS = 2**20

#: PyRadiomics' set-up is not thread-safe: its parameter validation goes through pykwalify, whose one
#: module-level ruamel YAML object parses the schema file (two threads at once get a ParserError, a
#: ComposerError or an AttributeError from the parser's events), and the first extractor of a process
#: imports its modules. Everything that builds or validates PyRadiomics parameters holds this lock (once per
#: extractor, not per case), so the threads of one worker (a Dask worker with --nthreads) share it safely.
PYRADIOMICS_SETUP_LOCK = threading.RLock()


def to_float(value: Any) -> float:
    """PyRadiomics returns 0-d numpy arrays and numpy scalars: convert them to Python floats."""
    return float(np.asarray(value, dtype=np.float64))


def plain_scalar(value: Any) -> Any:
    """``value`` with numpy scalars and 0-d arrays as Python scalars, containers converted element by element.

    numpy 2 prints a numpy scalar inside a container as ``np.float64(1.0)``: containers of plain values
    print as PyRadiomics' own CLI (numpy 1) wrote them, e.g. ``(1.0, 2.0)``.
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else [plain_scalar(v) for v in value.tolist()]
    if isinstance(value, tuple):
        return tuple(plain_scalar(v) for v in value)
    if isinstance(value, list):
        return [plain_scalar(v) for v in value]
    if isinstance(value, Mapping):
        return {plain_scalar(k): plain_scalar(v) for k, v in value.items()}
    return value


def diagnostic_value(value: Any) -> Any:
    """A table cell: scalars as Python scalars, tuples, lists, dicts and arrays as text (as PyRadiomics' own CLI writes them).

    Every value, nested ones included, is plain first (:func:`plain_scalar`), so no ``np.float64(...)``
    repr ever reaches a text cell.
    """
    value = plain_scalar(value)
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    return str(value)


@dataclass(frozen=True)
class ClassicalSettings:
    """Settings of a classical class used on its own (in params files a class takes a feature list)."""

    features: tuple[str, ...] = ()


class ClassicalFeatureClass(FeatureClass):
    """A PyRadiomics feature class seen through the FeatureClass contract.

    The :class:`~deepradiomics.extractor.Extractor` computes all classical classes of a params file in
    one PyRadiomics call (:class:`PyRadiomicsBackend`); ``compute`` here serves standalone use and the
    conformance check: the class's features on the original image with PyRadiomics' defaults.
    """

    family = "classical"
    Settings = ClassicalSettings

    def _radiomics_class(self):
        import radiomics

        return radiomics.getFeatureClasses()[self.name]

    def feature_names(self, all_names: bool = False) -> list[str]:
        """Feature names in PyRadiomics' order; deprecated ones only with ``all_names=True``."""
        names = self._radiomics_class().getFeatureNames()
        chosen = [n for n, deprecated in names.items() if all_names or not deprecated]
        if self.settings.features and not all_names:
            return [n for n in chosen if n in self.settings.features]
        return chosen

    def params_entry(self) -> list[str]:
        """In a params file a PyRadiomics class takes its feature list ([] = all)."""
        return list(self.settings.features)

    def compute(self, case) -> dict[str, float]:
        """The class's features on the case's original image with PyRadiomics' default settings."""
        backend = PyRadiomicsBackend(
            {"imageType": {"Original": {}}, "featureClass": {self.name: list(self.settings.features)}, "setting": {}}
        )
        result = backend.execute(case)
        prefix = f"original_{self.name}_"
        return {k[len(prefix):]: v for k, v in result.items() if k.startswith(prefix)}


@functools.cache
def classical_class(name: str) -> type:
    """The :class:`ClassicalFeatureClass` subclass for PyRadiomics class ``name`` (one class per name)."""
    return type(f"PyRadiomics_{name}", (ClassicalFeatureClass,), {"name": name, "__module__": __name__, "__reduce__": _reduce})


def _reduce(self):
    # the classes are built at run time, so pickle rebuilds them by name (batch workers receive instances)
    return (_rebuild, (self.name, self.settings))


def _rebuild(name: str, settings) -> ClassicalFeatureClass:
    return classical_class(name)(settings)


def _drop_symmetrical_notice(record) -> bool:
    return not str(record.msg).startswith("GLCM is symmetrical")


def _silence_symmetrical_glcm_notice() -> None:
    """PyRadiomics warns on every case that a symmetrical GLCM makes SumAverage = 2 x JointAverage.

    That is a property of the default settings, not of the case; printed once per case it buries real
    warnings in a batch. Only that message is filtered (idempotent), nothing else of PyRadiomics' logging.
    """
    import logging

    glcm_logger = logging.getLogger("radiomics.glcm")
    if _drop_symmetrical_notice not in glcm_logger.filters:
        glcm_logger.addFilter(_drop_symmetrical_notice)


def largest_bin_width(settings: Mapping[str, Any] | None, image_types: Mapping[str, Any] | None) -> float:
    """The largest ``binWidth`` PyRadiomics will bin with, over the enabled image types (0 if none bins by width).

    An image type's own settings override the general ones (as in PyRadiomics' ``execute``); an image type
    whose effective settings set ``binCount`` does not bin by width. PyRadiomics' default width is 25.
    """
    settings = dict(settings or {})
    widths = [0.0]
    for custom in (image_types or {"Original": {}}).values():
        effective = {**settings, **(custom or {})}
        if effective.get("binCount") is None:
            widths.append(float(effective.get("binWidth") or 25))
    return max(widths)


def widen_if_overflowing(image, bin_width: float):
    """Cast a narrow integer image to 32-bit when PyRadiomics' bin edges would overflow its type.

    PyRadiomics 3.0.1 computes the upper bin edge as ``maximum + 2 * binWidth`` in the image's own dtype.
    Under numpy 2's promotion rules an integer binWidth keeps that sum in (say) uint8, so 250 + 50 wraps
    to 44 and the histogram silently loses its top bins (seen on 1 of the 63 LGG FLAIR volumes: firstorder
    Entropy off by 2.4). Widening the type keeps every voxel value and fixes the edges; only the
    ``diagnostics_Image-original_Hash`` then differs from plain PyRadiomics on the same file.
    """
    import SimpleITK as sitk

    narrow = {
        sitk.sitkUInt8: np.uint8,
        sitk.sitkInt8: np.int8,
        sitk.sitkUInt16: np.uint16,
        sitk.sitkInt16: np.int16,
    }
    dtype = narrow.get(image.GetPixelID())
    if dtype is None:
        return image
    maximum = int(sitk.GetArrayViewFromImage(image).max())
    if maximum + 2 * bin_width <= np.iinfo(dtype).max:
        return image
    return sitk.Cast(image, sitk.sitkInt32)


def pyradiomics_input(image, settings: Mapping[str, Any] | None, image_types: Mapping[str, Any] | None):
    """What to hand PyRadiomics as its image: ``image`` read (if a file) and widened if its bins would overflow.

    ``image`` is a path or a ``SimpleITK.Image``; a path is read here with ``sitk.ReadImage``, exactly as
    PyRadiomics' ``loadImage`` reads it, so PyRadiomics sees the same image. Anything else (a missing
    file, another type) is returned unchanged and PyRadiomics reports it as it always does. See
    :func:`widen_if_overflowing` for the one difference with plain PyRadiomics.
    """
    import SimpleITK as sitk

    if isinstance(image, (str, os.PathLike)) and os.path.isfile(image):
        image = sitk.ReadImage(str(image))  # callers verify files first (compat.execute, Case)
    if not isinstance(image, sitk.Image):
        return image
    return widen_if_overflowing(image, largest_bin_width(settings, image_types))


class PyRadiomicsBackend:
    """One ``RadiomicsFeatureExtractor`` per params set; ``execute(case)`` -> ordered ``{name: value}``.

    Parameters
    ----------
    pyradiomics_params
        A PyRadiomics parameter dict (``Params.to_pyradiomics()``).

    Two views of PyRadiomics' result: :meth:`execute` converts it for deepradiomics' tables (Python
    floats, diagnostics as scalars or text) and wraps PyRadiomics' failures in :class:`FeatureError`;
    :meth:`execute_raw` returns PyRadiomics' own ``OrderedDict`` untouched (0-d float64 arrays, tuples,
    dicts; PyRadiomics' exceptions), as the PyRadiomics drop-in (:mod:`deepradiomics.compat`) needs.
    """

    def __init__(self, pyradiomics_params: dict) -> None:
        self.pyradiomics_params = pyradiomics_params
        self._extractor = None

    @property
    def extractor(self):
        """PyRadiomics' ``RadiomicsFeatureExtractor`` for these params (built on first use, once, under
        :data:`PYRADIOMICS_SETUP_LOCK`: PyRadiomics' set-up is not thread-safe)."""
        extractor = self._extractor
        if extractor is None:
            with PYRADIOMICS_SETUP_LOCK:
                extractor = self._extractor
                if extractor is None:
                    extractor = pyradiomics_extractor(self.pyradiomics_params)
                    self._extractor = extractor
        return extractor

    def __getstate__(self) -> dict:
        # a worker builds its own extractor (under the lock) from the params: PyRadiomics' objects stay here
        return {"pyradiomics_params": self.pyradiomics_params, "_extractor": None}

    def check(self, where: str = "") -> None:
        """ParamsError, before any case, for settings PyRadiomics accepts at first but fails on at every case
        (``where``, e.g. the params file, prefixes the message).

        ``binCount`` beyond :data:`MAX_GREY_LEVELS` (or :data:`MAX_TEXTURE_GREY_LEVELS` with a texture class)
        would allocate its histogram per case; ``resampledPixelSpacing`` and ``resegmentRange`` of the wrong
        length are refused by PyRadiomics only once a case is read.
        """
        settings = dict(self.pyradiomics_params.get("setting") or {})
        prefix = f"{where}: " if where else ""
        limit, why = self.grey_level_limit()
        for key, custom in [("setting", settings), *((f"imageType.{k}", v or {}) for k, v in (self.pyradiomics_params.get("imageType") or {}).items())]:
            count = custom.get("binCount")
            if count is not None and isinstance(count, (int, float)) and count > limit:
                raise ParamsError(f"{prefix}{key}.binCount {count:g} is more than the {limit} grey levels allowed {why}: use binCount <= {limit}")
        spacing = settings.get("resampledPixelSpacing")
        if spacing is not None and (not isinstance(spacing, (list, tuple)) or len(spacing) != 3):
            raise ParamsError(f"{prefix}setting.resampledPixelSpacing {spacing!r} must list 3 spacings (x, y, z in mm; 0 keeps an axis), or be left out")
        reseg = settings.get("resegmentRange")
        if reseg is not None and (not isinstance(reseg, (list, tuple)) or len(reseg) not in (1, 2)):
            raise ParamsError(f"{prefix}setting.resegmentRange {reseg!r} must list 1 value (lower bound) or 2 (lower, upper), or be left out")

    def grey_level_limit(self) -> tuple[int, str]:
        """The most grey levels a discretisation may give under these params, and why (for messages)."""
        classes = set(self.pyradiomics_params.get("featureClass") or {})
        texture = sorted(classes & set(TEXTURE_CLASS_NAMES))
        if texture:
            return MAX_TEXTURE_GREY_LEVELS, f"with texture class(es) {', '.join(texture)} (their matrices are sized by the grey levels)"
        return MAX_GREY_LEVELS, "for first-order features"

    def largest_bin_width(self) -> float:
        """The largest binWidth PyRadiomics bins with under these params (see :func:`largest_bin_width`)."""
        return largest_bin_width(self.extractor.settings, self.extractor.enabledImagetypes)

    def execute_raw(self, image, mask, label: int | None = None, label_channel: int | None = None) -> OrderedDict:
        """PyRadiomics' own result for (image, mask): its types, keys, order and exceptions.

        ``image`` and ``mask`` are paths or ``SimpleITK.Image``; the image is widened first when its bins
        would overflow (:func:`pyradiomics_input`). Segment-based only: voxel maps are
        :func:`deepradiomics.voxel.compute_voxel_features`' business.
        """
        extractor = self.extractor
        image = pyradiomics_input(image, extractor.settings, extractor.enabledImagetypes)
        mask = str(mask) if isinstance(mask, os.PathLike) else mask
        return extractor.execute(image, mask, label=label, label_channel=label_channel)

    def execute(self, case) -> OrderedDict:
        """Classical features of ``case`` (its ``Image`` modality), diagnostics first, as PyRadiomics orders them.

        Values are Python floats, diagnostics scalars or text (:func:`diagnostic_value`), ready for a table.
        """
        image, mask = case.image(), case.mask_image()  # a CaseError is the case's fault: not wrapped below
        self.check()
        self._check_grey_levels(case)
        try:
            raw = self.execute_raw(image, mask, label=case.label)
        except (ValueError, RuntimeError, AssertionError, IndexError) as exc:
            raise FeatureError(
                f"PyRadiomics failed on case '{case.case_id}' (image '{case.source('Image')}', mask "
                f"'{case.source('mask')}', label {case.label}): {exc}"
            ) from exc
        except MemoryError as exc:
            width = smallest_bin_width(self.pyradiomics_params.get("setting"), self.pyradiomics_params.get("imageType"))
            binning = f"binWidth {width:g}" if width else "binCount"
            raise FeatureError(
                f"PyRadiomics ran out of memory on case '{case.case_id}' (image '{case.source('Image')}', mask '{case.source('mask')}'): "
                f"{' '.join(str(exc).split())}. With {binning}, a filtered image or a resampled grid may give more grey levels or "
                "voxels than fit: raise setting.binWidth (or set binCount), coarsen resampledPixelSpacing, or remove image types"
            ) from exc
        result = OrderedDict()
        for key, value in raw.items():
            result[key] = diagnostic_value(value) if is_diagnostic(key) else to_float(value)
        return result

    def _check_grey_levels(self, case) -> None:
        """FeatureError before PyRadiomics allocates its bins: the grey levels the original image's ROI gives
        with the smallest ``binWidth`` exceed the limit (:meth:`grey_level_limit`).

        The range is the ROI's on the image as read (clipped to ``resegmentRange``); with ``normalize`` or a
        sigma resegmentation PyRadiomics bins other values, so the check is left to its own (caught) failure.
        """
        settings = dict(self.pyradiomics_params.get("setting") or {})
        if settings.get("normalize") or settings.get("resegmentMode", "absolute") != "absolute":
            return
        width = smallest_bin_width(settings, self.pyradiomics_params.get("imageType"))
        if not width:
            return
        roi = case.mask_array()
        values = np.asarray(case.array(), dtype=np.float64)[roi] if roi.shape == case.array().shape else None
        if values is None or not values.size:
            return  # a geometry mismatch or an empty ROI: the case's own checks report it
        low, high = float(values.min()), float(values.max())
        reseg = settings.get("resegmentRange")
        if isinstance(reseg, (list, tuple)) and reseg:
            low = max(low, float(reseg[0]))
            high = min(high, float(reseg[1])) if len(reseg) > 1 else high
        levels = grey_levels(low, high, width)
        limit, why = self.grey_level_limit()
        if levels > limit:
            needed = (high - low) / (limit - 2) if high > low else width
            raise FeatureError(
                f"binWidth {width:g} gives {levels:,} grey levels over the ROI's intensity range [{low:g}, {high:g}] of case "
                f"'{case.case_id}' (image '{case.source('Image')}'); at most {limit:,} are allowed {why}: use setting.binWidth >= "
                f"{_round_up(needed):g}, or binCount"
            )


def smallest_bin_width(settings: Mapping[str, Any] | None, image_types: Mapping[str, Any] | None) -> float:
    """The smallest ``binWidth`` PyRadiomics bins with over the enabled image types (0 if none bins by width)."""
    settings = dict(settings or {})
    widths = []
    for custom in (image_types or {"Original": {}}).values():
        effective = {**settings, **(custom or {})}
        if effective.get("binCount") is None:
            widths.append(float(effective.get("binWidth") or 25))
    return min(widths) if widths else 0.0


def grey_levels(low: float, high: float, width: float) -> int:
    """How many bins PyRadiomics' fixed-width discretisation (``getBinEdges``) makes for values in [low, high]."""
    lower = low - math.fmod(low, width) if low >= 0 else low - (low % width)
    count = math.ceil((high + 2 * width - lower) / width) - 1
    return max(1, int(min(count, 2**62)))


def _round_up(value: float) -> float:
    """``value`` rounded up to 3 significant digits (a bin width suggestion that keeps under the limit)."""
    if value <= 0 or not math.isfinite(value):
        return value
    digits = 2 - math.floor(math.log10(value))
    return math.ceil(value * 10**digits) / 10**digits


def pyradiomics_extractor(pyradiomics_params: Mapping[str, Any]):
    """A configured ``RadiomicsFeatureExtractor``, built under :data:`PYRADIOMICS_SETUP_LOCK` (its validation uses
    pykwalify's shared YAML parser)."""
    import copy

    with PYRADIOMICS_SETUP_LOCK:
        from radiomics import featureextractor

        _silence_symmetrical_glcm_notice()
        return featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(dict(pyradiomics_params)))


def validate_pyradiomics_params(pyradiomics_params: Mapping[str, Any], where: str) -> None:
    """Check a PyRadiomics parameter mapping against PyRadiomics' own schema (pykwalify), under the set-up lock.

    Raises
    ------
    ParamsError
        Naming the key (``setting.padDistance``), the value and the schema's rule, without pykwalify's
        ``<SchemaError ...>`` wrapping.
    """
    import logging

    with PYRADIOMICS_SETUP_LOCK:
        import pykwalify.core
        import radiomics

        schema_file, schema_funcs = radiomics.getParameterValidationFiles()
        logging.getLogger("pykwalify").setLevel(logging.CRITICAL)
        core = pykwalify.core.Core(source_data=dict(pyradiomics_params), schema_files=[schema_file], extensions=[schema_funcs])
        try:
            core.validate(raise_exception=True)
        except Exception as exc:  # pykwalify raises SchemaError or its own CoreError
            raise ParamsError(f"{where}: {schema_error_message(exc)}") from exc


def schema_error_message(exc: BaseException) -> str:
    """A pykwalify validation error as one readable line: each failed rule with its key (``setting.padDistance``).

    pykwalify's ``str`` is ``<SchemaError: error code 2: Schema validation failed: - Type 'scalar' has size of
    '-1', less than min limit '0'. Path: '/setting/padDistance'.: Path: '/'>``: the rules are kept, named by
    their dotted key, and the wrapping is dropped.
    """
    import re

    text = str(getattr(exc, "msg", None) or exc)
    rules = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")]
    if not rules:
        rules = [re.sub(r"^<?\w*Error: error code \d+: ", "", " ".join(text.split())).removesuffix(">").removesuffix(": Path: '/'")]
    out = []
    for rule in rules:
        rule = " ".join(rule.split()).rstrip(".")
        rule = re.sub(r"Type 'scalar' has size of '([^']*)', greater than max limit '([^']*)'", r"\1 is more than the maximum \2", rule)
        rule = re.sub(r"Type 'scalar' has size of '([^']*)', less than min limit '([^']*)'", r"\1 is less than the minimum \2", rule)
        rule = re.sub(r"Value '([^']*)' is not of type '([^']*)'", r"\1 is not of type \2", rule)
        key = re.search(r"\.? Path: '/([^']*)'", rule)
        if key:
            rule = f"{key.group(1).replace('/', '.')}: {rule[: key.start()]}" if key.group(1) else rule[: key.start()]
        out.append(rule)
    return "invalid PyRadiomics parameters: " + "; ".join(out) + " (PyRadiomics' parameter schema): fix the value"


# ---------------------------------------------------------------------------------------------- column checks
#: the image-type token PyRadiomics writes in a column name for each image type (``wavelet2-LLH`` for level 2)
IMAGE_TYPE_TOKENS = {
    "Original": "original",
    "Wavelet": "wavelet",
    "LoG": "log-sigma",
    "Square": "square",
    "SquareRoot": "squareroot",
    "Logarithm": "logarithm",
    "Exponential": "exponential",
    "Gradient": "gradient",
    "LBP2D": "lbp-2D",
    "LBP3D": "lbp-3D",
}


def image_type_of(token: str) -> str | None:
    """The image type (``LoG``) of an image-type token of a column name (``log-sigma-1-0-mm-3D``)."""
    import re

    for image_type, prefix in IMAGE_TYPE_TOKENS.items():
        if token == prefix or token.startswith(prefix + "-") or (image_type == "Wavelet" and re.match(r"^wavelet\d*-", token)):
            return image_type
    return None


def enabled_features(name: str, listed) -> list[str]:
    """The features PyRadiomics computes for class ``name`` given its params list (empty: all non-deprecated)."""
    return list(listed) if listed else classical_class(name)().feature_names()


def classical_columns_problem(params, features) -> str | None:
    """What is missing or extra among the PyRadiomics feature columns of a row (None when complete).

    ``params`` is a :class:`~deepradiomics.params.Params`; ``features`` the row's columns (or a mapping).
    PyRadiomics computes every enabled feature of each class on each derived image of each enabled image
    type (shape classes on the original image only). An image type or class it skipped (LoG without
    sigma, shape2D without force2D, shape on a 2D ROI, LBP without scikit-image) leaves no column: that
    is reported naming the key, instead of a row that silently lacks those features.
    """
    columns = [c for c in features if is_feature(c) and feature_class_of(c) in params.pyradiomics]
    seen: dict[tuple[str, str], set[str]] = {}
    for column in columns:
        name = FeatureName.parse(column)
        if not name.feature_class.startswith("shape") and image_type_of(name.image_type) not in params.image_types:
            return f"column '{column}' belongs to no enabled image type (imageType: {', '.join(params.image_types)})"
        seen.setdefault((name.image_type, name.feature_class), set()).add(name.feature)
    for feature_class in params.pyradiomics:
        wanted = set(_enabled_cached(feature_class, tuple(params.pyradiomics[feature_class])))
        types = ["Original"] if feature_class.startswith("shape") else list(params.image_types)
        for image_type in types:
            problem = _image_type_problem(seen, feature_class, image_type, wanted)
            if problem:
                return problem
    return None


@functools.cache  # asked once per cached row on a resume: the feature list of a class does not change
def _enabled_cached(name: str, listed: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(enabled_features(name, listed))


def _image_type_problem(seen: Mapping, feature_class: str, image_type: str, wanted: set[str]) -> str | None:
    shape = feature_class.startswith("shape")
    tokens = [t for (t, c) in seen if c == feature_class and (shape or image_type_of(t) == image_type)]
    if not tokens:
        return f"featureClass.{feature_class} gave no feature" if shape else f"imageType.{image_type} with featureClass.{feature_class} gave no feature"
    for token in tokens:
        got = seen[(token, feature_class)]
        if got != wanted:
            missing, extra = sorted(wanted - got), sorted(got - wanted)
            detail = f"lacks {format_name(token, feature_class, missing[0])}" if missing else f"has unexpected {format_name(token, feature_class, extra[0])}"
            return f"featureClass.{feature_class} on {token} {detail}"
    return None
