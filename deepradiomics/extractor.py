"""The Extractor: (images, mask) -> one pandas row of classical and deep features.

Examples
--------
>>> extractor = Extractor.from_yaml("params/classical.yaml")  # doctest: +SKIP
>>> row = extractor.execute("flair.nii.gz", "mask.nii.gz", modalities={"t1": "t1.nii.gz"})  # doctest: +SKIP
>>> row["original_glcm_Contrast"]  # doctest: +SKIP

A params file naming a fitted class (``requires_fit``) is fitted first, on a cohort, then saved so that
its fitted params file can be used like any other::

    extractor = Extractor.from_yaml("params/fitted.yaml")
    extractor.fit(cases)                       # or `deepradiomics fit PARAMS MANIFEST -o DIR`
    extractor.save_fitted("fitted/")           # fitted/params.yaml + one artifact folder per class
    Extractor.from_yaml("fitted/params.yaml").execute(image, mask)
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .case import MAIN_IMAGE, Case, ImageLike
from .errors import DeepRadiomicsError, FeatureError, ParamsError
from .featureclass import plain_data, run_compute
from .naming import FeatureName, diagnostics_name, feature_class_of, format_name, is_diagnostic, is_feature
from .params import Params, load_params

#: file name of the fitted params file written by :meth:`Extractor.save_fitted`
FITTED_PARAMS = "params.yaml"
#: row layouts of :meth:`Extractor.compute`: deepradiomics' own, or exactly PyRadiomics' keys (plus plugin features)
LAYOUTS = ("deepradiomics", "pyradiomics")


class Extractor:
    """Computes the classes of a params set on cases.

    Parameters
    ----------
    params
        A :class:`~deepradiomics.params.Params`, a params mapping, or the path of a YAML file.
    overrides
        ``setting`` keys to override (as ``-s KEY=VALUE`` on the command line).
    """

    def __init__(self, params: Params | Mapping | str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> None:
        if not isinstance(params, Params):
            params = load_params(params)
        if overrides:
            params = params.with_settings(overrides)
        self.params = params
        self._backend = None
        self._classes: dict | None = None
        self._all_features: dict[str, list[str]] = {}

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> Extractor:
        """Build from a params file."""
        return cls(load_params(Path(path)), overrides)

    @classmethod
    def from_dict(cls, params: Mapping, overrides: Mapping[str, Any] | None = None) -> Extractor:
        """Build from a params mapping (same layout as a params file)."""
        return cls(load_params(params), overrides)

    # -- classes --------------------------------------------------------------------------------
    @property
    def backend(self):
        """The PyRadiomics backend (``None`` when the params name no PyRadiomics class)."""
        if self._backend is None and self.params.pyradiomics:
            from .classical import PyRadiomicsBackend

            self._backend = PyRadiomicsBackend(self.params.to_pyradiomics())
        return self._backend

    @property
    def plugin_classes(self) -> dict:
        """Instantiated classes not computed by PyRadiomics (deep and plugin classes), in params order."""
        if self._classes is None:
            from .registry import get_registry

            registry = get_registry()
            self._classes = {
                name: registry.get(name)(settings, where=f"{self.params.source}: featureClass.{name}", base_dir=self.params.base_dir)
                for name, settings in self.params.plugins.items()
            }
        return self._classes

    @property
    def fitted_classes(self) -> dict:
        """The plugin classes that learn a cohort-level state (``requires_fit``)."""
        return {name: c for name, c in self.plugin_classes.items() if c.requires_fit}

    def check_fitted(self) -> None:
        """NotFittedError (naming ``deepradiomics fit``) unless every fitted class is fitted or has its artifact."""
        for feature_class in self.fitted_classes.values():
            feature_class.check_fitted()

    def fit(self, cases: Sequence[Case] | None = None, *, manifest=None, jobs: int = 1, cache_dir=None, progress: bool = False) -> Extractor:
        """Fit the classes that learn a cohort-level state on ``cases`` or on the cases of ``manifest``.

        Each case is described once per fitted class (in parallel over ``jobs`` workers for a manifest,
        cached in ``cache_dir`` when given), then each class fits its cohort step on those descriptors.
        """
        from .batch import describe_cases

        for feature_class in self.fitted_classes.values():
            if cases is not None:
                cases = list(cases)
                feature_class.fit(cases)
                continue
            descriptors = describe_cases(feature_class, manifest, jobs=jobs, cache_dir=cache_dir, progress=progress, label=self.params.label)
            feature_class.fit_from_descriptors(list(descriptors.values()), list(descriptors))
        return self

    def save_fitted(self, out_dir: str | os.PathLike) -> Path:
        """Write each fitted class's artifact to ``out_dir/<class>/`` and ``out_dir/params.yaml`` naming them.

        The params file is this extractor's, with each fitted class's ``fitted_setting`` set to the
        artifact folder relative to ``out_dir`` and other relative paths rewritten to stay valid.
        Returns the path of the fitted params file.
        """
        import yaml

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        data = self.params.to_dict()
        for name, feature_class in self.plugin_classes.items():
            settings = data["featureClass"][name]
            for key, value in list(settings.items()):
                # relative paths of the original params (e.g. a model folder) must stay valid from out_dir
                if isinstance(value, str) and self.params.base_dir is not None and _looks_like_path(value):
                    candidate = self.params.base_dir / value
                    if candidate.exists():
                        settings[key] = os.path.relpath(candidate.resolve(), out.resolve())
            if feature_class.requires_fit:
                feature_class.save_fitted(out / name)
                settings[feature_class.fitted_setting] = name
        header = (
            f"# Written by deepradiomics {__version__} (`deepradiomics fit`): the params of {self.params.source}\n"
            "# with each fitted class pointing to its fitted artifact (folders beside this file).\n"
        )
        path = out / FITTED_PARAMS
        path.write_text(header + yaml.safe_dump(plain_data(data), sort_keys=False))
        return path

    # -- one case -------------------------------------------------------------------------------
    def make_case(
        self,
        image: ImageLike,
        mask: ImageLike,
        modalities: Mapping[str, ImageLike] | None = None,
        label: int | None = None,
        case_id: str = "case",
    ) -> Case:
        images = {MAIN_IMAGE: image, **dict(modalities or {})}
        return Case(images, mask, label=self.params.label if label is None else label, case_id=case_id)

    def execute(
        self,
        image: ImageLike,
        mask: ImageLike,
        modalities: Mapping[str, ImageLike] | None = None,
        label: int | None = None,
        case_id: str = "case",
    ):
        """Features of one case as a ``pandas.Series`` (diagnostics first, then features).

        Parameters
        ----------
        image
            The main image (read by the classical classes): a file, a DICOM folder or a SimpleITK image.
        mask
            The label map.
        modalities
            Extra named images for deep classes, e.g. ``{"t1": "t1.nii.gz", "t1ce": "t1ce.nii.gz"}``.
        label
            Label value of the region of interest (default: the params' ``setting.label``, else 1).
        case_id
            Name of the row (and of the case in messages).
        """
        return self.execute_case(self.make_case(image, mask, modalities, label, case_id))

    def execute_case(self, case: Case):
        """Features of a :class:`~deepradiomics.case.Case` as a ``pandas.Series`` named by its ID."""
        import pandas as pd

        return pd.Series(self.compute(case), name=case.case_id, dtype=object)

    def compute(self, case: Case, layout: str = "deepradiomics") -> dict[str, Any]:
        """Ordered ``{column: value}`` for one case (what :meth:`execute_case` wraps in a Series).

        ``layout="deepradiomics"`` (default): deepradiomics' provenance and case diagnostics, PyRadiomics'
        diagnostics, each plugin class's diagnostics, then the features: PyRadiomics' block (in
        PyRadiomics' own order) where its first class stands in the params file, each plugin class where
        it stands. ``layout="pyradiomics"``: exactly PyRadiomics' keys in its order (its diagnostics, then
        its features), then the plugin classes' features; no deepradiomics diagnostics.
        """
        if layout not in LAYOUTS:
            raise ParamsError(f"layout '{layout}' is not one of {', '.join(LAYOUTS)}")
        self.check_fitted()  # before reading any image: a missing fit is a set-up error, not a case error
        case.mask_image()  # fail early on a missing or empty mask, before any class runs
        diagnostics: dict[str, Any] = self.provenance()
        diagnostics.update(case.diagnostics())
        blocks: dict[str, dict[str, float]] = {}
        result: dict[str, Any] = {}
        if self.backend is not None:
            block = blocks.setdefault(_PYRADIOMICS_BLOCK, {})
            with _CapturedWarnings("radiomics") as warnings:
                result = self._execute_backend(case)
            for key, value in result.items():
                (diagnostics if is_diagnostic(key) else block)[key] = value
            problem = self.classical_columns_problem(block)
            if problem:
                why = f"PyRadiomics warned: {warnings.messages[-1]}" if warnings.messages else "PyRadiomics skipped it"
                raise FeatureError(
                    f"{self.params.source}: {problem} on case '{case.case_id}' ({why}): fix that setting, the mask, "
                    "or remove the class or image type"
                )
        for name, feature_class in self.plugin_classes.items():
            blocks[name] = self._compute_class(name, feature_class, case)
            for key, value in feature_class.diagnostics().items():
                diagnostics[diagnostics_name(name, key)] = value
        if layout == "pyradiomics":
            row = dict(result)
            for name in self.plugin_classes:
                row.update(blocks[name])
            return row
        row = dict(diagnostics)
        for name in self.params.class_order:
            row.update(blocks.pop(_PYRADIOMICS_BLOCK if name in self.params.pyradiomics else name, {}))
        for remaining in blocks.values():  # classes enabled through PyRadiomics' own API (compat)
            row.update(remaining)
        return row

    def _execute_backend(self, case: Case) -> dict[str, Any]:
        """PyRadiomics' result for ``case``; any failure of PyRadiomics becomes one FeatureError naming the case."""
        try:
            return self.backend.execute(case)
        except DeepRadiomicsError:
            raise
        except Exception as exc:  # PyRadiomics raises TypeError, ZeroDivisionError, MemoryError... on odd inputs
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise FeatureError(
                f"PyRadiomics failed on case '{case.case_id}' (image '{case.source('Image')}', mask '{case.source('mask')}', "
                f"label {case.label}) with the settings of {self.params.source}: {type(exc).__name__}: {message}"
            ) from exc

    def _compute_class(self, name: str, feature_class, case: Case) -> dict[str, float]:
        expected = feature_class.feature_names()
        if not expected:
            raise FeatureError(
                f"{self.params.source}: featureClass.{name} produces no feature with these settings: "
                "check its settings (e.g. an empty selection) or remove the class"
            )
        values = run_compute(name, feature_class, case)
        return {format_name(feature_class.image_type, name, k): float(v) for k, v in values.items()}

    # -- what a complete row holds --------------------------------------------------------------
    def classical_columns_problem(self, features: Mapping[str, Any] | Sequence[str]) -> str | None:
        """What is missing or extra among the PyRadiomics feature columns of a row (None when complete).

        PyRadiomics computes every enabled feature of each class on each derived image of each enabled image
        type (shape classes on the original image only). An image type or class it skipped (LoG without
        sigma, shape2D without force2D, shape on a 2D ROI, LBP without scikit-image) leaves no column: that
        is reported naming the key, instead of a row that silently lacks those features.
        """
        columns = [c for c in features if is_feature(c) and feature_class_of(c) in self.params.pyradiomics]
        seen: dict[tuple[str, str], set[str]] = {}
        for column in columns:
            name = FeatureName.parse(column)
            if not name.feature_class.startswith("shape") and _image_type_of(name.image_type) not in self.params.image_types:
                return f"column '{column}' belongs to no enabled image type (imageType: {', '.join(self.params.image_types)})"
            seen.setdefault((name.image_type, name.feature_class), set()).add(name.feature)
        for feature_class in self.params.pyradiomics:
            wanted = set(self._classical_features(feature_class))
            types = ["Original"] if feature_class.startswith("shape") else list(self.params.image_types)
            for image_type in types:
                tokens = [t for (t, c) in seen if c == feature_class and (c.startswith("shape") or _image_type_of(t) == image_type)]
                if not tokens:
                    where = f"featureClass.{feature_class}" if feature_class.startswith("shape") else f"imageType.{image_type} with featureClass.{feature_class}"
                    return f"{where} gave no feature"
                for token in tokens:
                    got = seen[(token, feature_class)]
                    if got != wanted:
                        missing, extra = sorted(wanted - got), sorted(got - wanted)
                        detail = f"lacks {format_name(token, feature_class, missing[0])}" if missing else f"has unexpected {format_name(token, feature_class, extra[0])}"
                        return f"featureClass.{feature_class} on {token} {detail}"
        return None

    def _classical_features(self, feature_class: str) -> list[str]:
        listed = self.params.pyradiomics[feature_class]
        if listed:
            return list(listed)
        if feature_class not in self._all_features:  # asked once per cached row on a resume: remember it
            from .registry import get_registry

            self._all_features[feature_class] = get_registry().get(feature_class)().feature_names()  # the non-deprecated ones
        return self._all_features[feature_class]

    def columns_problem(self, row: Mapping[str, Any]) -> str | None:
        """What makes a stored row incomplete for these params: a missing or extra feature column (None when complete).

        The batch cache uses it to refuse a row written by other code or edited by hand.
        """
        features = [c for c in row if is_feature(c)]
        known = set(self.params.class_order)
        for column in features:
            if feature_class_of(column) not in known:
                return f"unexpected column '{column}' (class not in the params)"
        for name, feature_class in self.plugin_classes.items():
            wanted = [format_name(feature_class.image_type, name, f) for f in feature_class.feature_names()]
            got = [c for c in features if feature_class_of(c) == name]
            if set(got) != set(wanted):
                missing, extra = sorted(set(wanted) - set(got)), sorted(set(got) - set(wanted))
                return f"missing column '{missing[0]}'" if missing else f"unexpected column '{extra[0]}'"
        if self.params.pyradiomics:
            return self.classical_columns_problem(features)
        return None

    def code_versions(self) -> dict[str, str]:
        """Versions of the code that computes the features: deepradiomics, PyRadiomics and each plugin's distribution."""
        from importlib import metadata

        from .registry import get_registry

        versions = {"deepradiomics": __version__}
        registry = get_registry()
        sources = {"pyradiomics"} if self.params.pyradiomics else set()
        sources |= {registry.entry(name).source for name in self.params.plugins}
        for source in sorted(sources):
            try:
                versions[source] = metadata.version(source)
            except (metadata.PackageNotFoundError, ValueError):
                versions[source] = "unversioned"  # a class registered at run time (tests, notebooks)
        return versions

    def artifacts(self) -> dict[str, str]:
        """``{column: sha256}`` of every model and fitted artifact the plugin classes use."""
        out = {}
        for name, feature_class in self.plugin_classes.items():
            for key, digest in feature_class.artifacts().items():
                out[diagnostics_name(name, f"{key}Sha256")] = digest
        return out

    @property
    def params_hash(self) -> str:
        """The params hash extended by every artifact sha256 (first 16 hex digits): what the features depend on."""
        artifacts = self.artifacts()
        if not artifacts:
            return self.params.hash
        text = self.params.hash + "".join(f"|{k}={v}" for k, v in sorted(artifacts.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def provenance(self) -> dict[str, Any]:
        """``diagnostics_Versions_*``, ``diagnostics_Configuration_*`` and the artifact hashes."""
        return {
            diagnostics_name("Versions", "deepradiomics"): __version__,
            diagnostics_name("Versions", "Python"): platform.python_version(),
            diagnostics_name("Configuration", "ParamsFile"): self.params.source,
            diagnostics_name("Configuration", "ParamsHash"): self.params_hash,
            **self.artifacts(),
        }

    # -- many cases -----------------------------------------------------------------------------
    def execute_batch(self, manifest, jobs: int = 1, out_dir: str | os.PathLike | None = None, progress: bool = False, base_dir=None, **kwargs):
        """Features of every case of a manifest (path or DataFrame) as a DataFrame indexed by ID.

        Failed cases become rows with ``diagnostics_Error`` set and NaN features. See
        :func:`deepradiomics.batch.run_batch` for the other keyword arguments.
        """
        from .batch import run_batch

        return run_batch(self, manifest, jobs=jobs, out_dir=out_dir, progress=progress, base_dir=base_dir, **kwargs)


class _CapturedWarnings:
    """Collects the warnings a logger (and its children) emits inside a ``with`` block, one line each."""

    def __init__(self, name: str) -> None:
        import logging

        self.logger = logging.getLogger(name)
        self.messages: list[str] = []
        self.handler = logging.Handler(logging.WARNING)
        self.handler.emit = lambda record: self.messages.append(" ".join(record.getMessage().split()))

    def __enter__(self) -> _CapturedWarnings:
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc_info) -> None:
        self.logger.removeHandler(self.handler)


#: the image-type token PyRadiomics writes in a column name for each image type (``wavelet2-LLH`` for level 2)
_IMAGE_TYPE_TOKENS = {
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


def _image_type_of(token: str) -> str | None:
    """The image type (``LoG``) of an image-type token of a column name (``log-sigma-1-0-mm-3D``)."""
    import re

    for image_type, prefix in _IMAGE_TYPE_TOKENS.items():
        if token == prefix or token.startswith(prefix + "-") or (image_type == "Wavelet" and re.match(r"^wavelet\d*-", token)):
            return image_type
    return None


#: key of the PyRadiomics block in :meth:`Extractor.compute` (a name no registered class can have: it has '_')
_PYRADIOMICS_BLOCK = "_pyradiomics"


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.startswith(".")


