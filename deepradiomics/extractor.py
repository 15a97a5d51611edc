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
from .errors import DeepRadiomicsError, FeatureError
from .naming import diagnostics_name, format_name, is_diagnostic
from .params import Params, load_params

#: file name of the fitted params file written by :meth:`Extractor.save_fitted`
FITTED_PARAMS = "params.yaml"


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

        for name, feature_class in self.fitted_classes.items():
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
        path.write_text(header + yaml.safe_dump(_plain(data), sort_keys=False))
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

    def compute(self, case: Case) -> dict[str, Any]:
        """Ordered ``{column: value}`` for one case (what :meth:`execute_case` wraps in a Series).

        Order: deepradiomics' provenance and case diagnostics, PyRadiomics' diagnostics, each plugin
        class's diagnostics, then the features: PyRadiomics' block (in PyRadiomics' own order) where
        its first class stands in the params file, each plugin class where it stands.
        """
        self.check_fitted()  # before reading any image: a missing fit is a set-up error, not a case error
        case.mask_image()  # fail early on a missing or empty mask, before any class runs
        diagnostics: dict[str, Any] = self.provenance()
        diagnostics.update(case.diagnostics())
        blocks: dict[str, dict[str, float]] = {}
        if self.backend is not None:
            block = blocks.setdefault(_PYRADIOMICS_BLOCK, {})
            for key, value in self.backend.execute(case).items():
                (diagnostics if is_diagnostic(key) else block)[key] = value
        for name, feature_class in self.plugin_classes.items():
            blocks[name] = self._compute_class(name, feature_class, case)
            for key, value in feature_class.diagnostics().items():
                diagnostics[diagnostics_name(name, key)] = value
        row = dict(diagnostics)
        for name in self.params.class_order:
            row.update(blocks.pop(_PYRADIOMICS_BLOCK if name in self.params.pyradiomics else name, {}))
        for remaining in blocks.values():  # classes enabled through PyRadiomics' own API (compat)
            row.update(remaining)
        return row

    @staticmethod
    def _compute_class(name: str, feature_class, case: Case) -> dict[str, float]:
        try:
            values = feature_class.compute(case)
        except DeepRadiomicsError:
            raise
        except Exception as exc:
            raise FeatureError(f"feature class '{name}' failed on case '{case.case_id}': {type(exc).__name__}: {exc}") from exc
        expected = feature_class.feature_names()
        if list(values) != list(expected):
            raise FeatureError(f"feature class '{name}' returned features {list(values)[:5]}... that differ from its feature_names()")
        return {format_name(feature_class.image_type, name, k): float(v) for k, v in values.items()}

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


#: key of the PyRadiomics block in :meth:`Extractor.compute` (a name no registered class can have: it has '_')
_PYRADIOMICS_BLOCK = "_pyradiomics"


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.startswith(".")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
