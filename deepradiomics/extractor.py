"""The Extractor: (images, mask) -> one pandas row of classical and deep features.

Examples
--------
>>> extractor = Extractor.from_yaml("params/classical.yaml")  # doctest: +SKIP
>>> row = extractor.execute("flair.nii.gz", "mask.nii.gz", modalities={"t1": "t1.nii.gz"})  # doctest: +SKIP
>>> row["original_glcm_Contrast"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .case import MAIN_IMAGE, Case, ImageLike
from .errors import DeepRadiomicsError, FeatureError
from .naming import diagnostics_name, format_name
from .params import Params, load_params


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
        self._deep: dict | None = None

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
        """The PyRadiomics backend (``None`` when the params name no classical class)."""
        if self._backend is None and self.params.classical:
            from .classical import PyRadiomicsBackend

            self._backend = PyRadiomicsBackend(self.params.to_pyradiomics())
        return self._backend

    @property
    def deep_classes(self) -> dict:
        """Instantiated non-classical classes, in params order."""
        if self._deep is None:
            from .registry import get_registry

            registry = get_registry()
            self._deep = {
                name: registry.get(name)(settings, where=f"{self.params.source}: featureClass.{name}")
                for name, settings in self.params.deep.items()
            }
        return self._deep

    def fit(self, cases: Sequence[Case]) -> Extractor:
        """Fit the classes that learn a cohort-level encoder (``requires_fit``) on ``cases``."""
        for feature_class in self.deep_classes.values():
            if feature_class.requires_fit:
                feature_class.fit(cases)
        return self

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
        """Features of one case as a ``pandas.Series`` (diagnostics first, then features in params order).

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
        """
        return self.execute_case(self.make_case(image, mask, modalities, label, case_id))

    def execute_case(self, case: Case):
        """Features of a :class:`~deepradiomics.case.Case` as a ``pandas.Series`` named by its ID."""
        import pandas as pd

        return pd.Series(self.compute(case), name=case.case_id, dtype=object)

    def compute(self, case: Case) -> dict[str, Any]:
        """Ordered ``{column: value}`` for one case (what :meth:`execute_case` wraps in a Series)."""
        case.mask_image()  # fail early on a missing or empty mask, before any class runs
        diagnostics: dict[str, Any] = self.provenance()
        features: dict[str, dict[str, float]] = {}
        if self.backend is not None:
            for key, value in self.backend.execute(case).items():
                if key.startswith("diagnostics_"):
                    diagnostics[key] = value
                else:
                    features.setdefault(key.split("_")[1], {})[key] = value
        for name, feature_class in self.deep_classes.items():
            try:
                values = feature_class.compute(case)
            except DeepRadiomicsError:
                raise
            except Exception as exc:
                raise FeatureError(f"feature class '{name}' failed on case '{case.case_id}': {type(exc).__name__}: {exc}") from exc
            expected = feature_class.feature_names()
            if list(values) != list(expected):
                raise FeatureError(f"feature class '{name}' returned features {list(values)[:5]}... that differ from its feature_names()")
            features[name] = {format_name(feature_class.image_type, name, k): float(v) for k, v in values.items()}
            for key, value in feature_class.diagnostics().items():
                diagnostics[diagnostics_name(name, key)] = value
        row = dict(diagnostics)
        for name in self.params.class_order:
            row.update(features.pop(name, {}))
        for remaining in features.values():  # classes enabled through the PyRadiomics-compatible API
            row.update(remaining)
        return row

    def provenance(self) -> dict[str, Any]:
        """``diagnostics_Versions_*`` and ``diagnostics_Configuration_*`` of deepradiomics itself."""
        return {
            diagnostics_name("Versions", "deepradiomics"): __version__,
            diagnostics_name("Versions", "Python"): platform.python_version(),
            diagnostics_name("Configuration", "ParamsFile"): self.params.source,
            diagnostics_name("Configuration", "ParamsHash"): self.params.hash,
        }

    # -- many cases -----------------------------------------------------------------------------
    def execute_batch(self, manifest, jobs: int = 1, out_dir: str | os.PathLike | None = None, progress: bool = False, base_dir=None):
        """Features of every case of a manifest (path or DataFrame) as a DataFrame indexed by ID.

        Failed cases become rows with ``diagnostics_Error`` set and NaN features. See
        :func:`deepradiomics.batch.run_batch`.
        """
        from .batch import run_batch

        return run_batch(self, manifest, jobs=jobs, out_dir=out_dir, progress=progress, base_dir=base_dir)
