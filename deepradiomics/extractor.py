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
import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ._version import __version__
from .batch import BatchTask, run_batch, run_tasks
from .case import MAIN_IMAGE, Case, ImageLike
from .classical import classical_columns_problem
from .errors import DeepRadiomicsError, FeatureError, ParamsError
from .featureclass import ComputeResult, plain_data, run_compute
from .naming import LAYOUTS, diagnostics_name, feature_class_of, format_name, is_diagnostic, is_feature
from .params import Params, load_params
from .voxel import VoxelOutput, compute_maps, missing_map_files

#: file name of the fitted params file written by :meth:`Extractor.save_fitted`
FITTED_PARAMS = "params.yaml"
#: diagnostics key of a fitted class listing (as a JSON list) the case IDs its fitted state was fitted on
FITTED_ON = "FittedOn"


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
    def of(cls, source: Extractor | Params | Mapping | str | os.PathLike) -> Extractor:
        """``source`` itself when it is an Extractor, else an Extractor of that params set (file, mapping or Params).

        The one place where the higher layers (studies, robustness, explanations) accept any of these.
        """
        return source if isinstance(source, Extractor) else cls(source)

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
            params = self.params
            self._classes = {
                name: registry.get(params.class_of(name))(params.class_settings(name), where=f"{params.source}: featureClass.{name}", base_dir=params.base_dir)
                for name in params.plugins
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
        for name, feature_class in self.fitted_classes.items():
            if cases is not None:
                cases = list(cases)
                feature_class.fit(cases)
                continue
            descriptors = describe_cases(feature_class, manifest, jobs=jobs, cache_dir=cache_dir, progress=progress, label=self.params.label, name=name)
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
        """A :class:`~deepradiomics.case.Case` of these images (the params' label unless ``label`` is given)."""
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

    def compute(self, case: Case, layout: str = "deepradiomics", descriptors_dir: str | os.PathLike | None = None) -> dict[str, Any]:
        """Ordered ``{column: value}`` for one case (what :meth:`execute_case` wraps in a Series).

        ``layout="deepradiomics"`` (default): PyRadiomics' diagnostics, deepradiomics' provenance and case
        diagnostics, each plugin class's diagnostics, then the features: PyRadiomics' block (in
        PyRadiomics' own order) where its first class stands in the params file, each plugin class where
        it stands. ``layout="pyradiomics"``: exactly PyRadiomics' keys in its order (its diagnostics, then
        its features), then the plugin classes' features; no deepradiomics diagnostics.
        ``descriptors_dir``: the ``--cache-dir`` of ``deepradiomics fit``: fitted classes encode the descriptors
        cached there for this case (computed and cached when absent) instead of describing the case again.
        """
        if layout not in LAYOUTS:
            raise ParamsError(f"layout '{layout}' is not one of {', '.join(LAYOUTS)}")
        self.check_fitted()  # before reading any image: a missing fit is a set-up error, not a case error
        case.mask_image()  # fail early on a missing or empty mask, before any class runs
        # PyRadiomics' diagnostics first (as its own tables), then deepradiomics' provenance, the case's and the classes'
        diagnostics: dict[str, Any] = {}
        blocks: dict[str, dict[str, float]] = {}
        result: dict[str, Any] = {}
        warnings = None
        if self.backend is not None:
            block = blocks.setdefault(_PYRADIOMICS_BLOCK, {})
            with _CapturedWarnings("radiomics") as warnings:
                result = self._execute_backend(case)
            for key, value in result.items():
                (diagnostics if is_diagnostic(key) else block)[key] = value
        diagnostics.update(self.provenance())
        diagnostics.update(case.diagnostics())
        if self.backend is not None:
            problem = self.classical_columns_problem(blocks[_PYRADIOMICS_BLOCK])
            if problem:
                why = f"PyRadiomics warned: {warnings.messages[-1]}" if warnings.messages else "PyRadiomics skipped it"
                raise FeatureError(
                    f"{self.params.source}: {problem} on case '{case.case_id}' ({why}): fix that setting, the mask, "
                    "or remove the class or image type"
                )
        for name, feature_class in self.plugin_classes.items():
            computed = self._compute_class(name, feature_class, case, descriptors_dir)
            blocks[name] = {format_name(feature_class.image_type, name, k): float(v) for k, v in computed.features.items()}
            if name != feature_class.name:  # a second configuration of a class: the table says which class
                diagnostics[diagnostics_name(name, "Class")] = feature_class.name
            if feature_class.requires_fit:  # which cases informed the fitted state (a study checks it for leakage)
                diagnostics[diagnostics_name(name, FITTED_ON)] = json.dumps(list(getattr(feature_class, "fitted_on_", ())))
            for key, value in {**feature_class.diagnostics(), **computed.diagnostics}.items():
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

    def _compute_class(self, name: str, feature_class, case: Case, descriptors_dir=None) -> ComputeResult:
        expected = feature_class.feature_names()
        if not expected:
            raise FeatureError(
                f"{self.params.source}: featureClass.{name} produces no feature with these settings: "
                "check its settings (e.g. an empty selection) or remove the class"
            )
        if feature_class.requires_fit and descriptors_dir is not None:
            return run_compute(name, _CachedDescriptors(feature_class, name, Path(descriptors_dir)), case)
        return run_compute(name, feature_class, case)

    # -- what a complete row holds --------------------------------------------------------------
    def classical_columns_problem(self, features: Mapping[str, Any] | Sequence[str]) -> str | None:
        """What is missing or extra among the PyRadiomics feature columns of a row (None when complete);
        see :func:`deepradiomics.classical.classical_columns_problem`."""
        return classical_columns_problem(self.params, features)

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
        sources |= {registry.entry(self.params.class_of(name)).source for name in self.params.plugins}
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

    # -- voxel maps -----------------------------------------------------------------------------
    def compute_maps(self, case: Case, jobs: int = 1, diagnostics: bool = False, record_engine: bool = True):
        """Feature maps of one case (``{feature name: SimpleITK.Image}``): PyRadiomics' classes' maps (its voxel
        mode, by the engine of ``voxelSetting.engine``: ``fast`` by default), then those of the plugin classes
        that provide them (:func:`deepradiomics.voxel.compute_maps`); ``diagnostics`` adds PyRadiomics'
        diagnostics first, ``record_engine`` the ``diagnostics_Voxel_Engine`` entry."""
        self.check_fitted()
        return compute_maps(
            self.backend, self.plugin_classes, case, jobs=jobs, diagnostics=diagnostics, engine=self.params.voxel_engine, record_engine=record_engine
        )

    def maps_row(self, case: Case, output: VoxelOutput, layout: str = "deepradiomics", folder: str | os.PathLike | None = None) -> dict:
        """Compute the case's maps, write them as ``output`` says (to ``folder``, default the case's folder of
        ``output``), return its row: provenance and case diagnostics (deepradiomics layout), then
        ``feature name -> file path``."""
        maps = self.compute_maps(case, jobs=output.jobs, diagnostics=layout == "pyradiomics", record_engine=layout == "deepradiomics")
        row = dict(self.provenance()) if layout == "deepradiomics" else {}
        if layout == "deepradiomics":
            row.update(case.diagnostics())
        row.update(output.write(maps, case, folder))
        return row

    # -- many cases -----------------------------------------------------------------------------
    def batch_task(
        self, layout: str = "deepradiomics", transforms=(), voxel: VoxelOutput | None = None, descriptors_dir: str | os.PathLike | None = None
    ) -> ExtractionTask:
        """The :class:`~deepradiomics.batch.BatchTask` extracting these params from one case: a row of features
        (``layout``), or with ``voxel`` the case's maps written to files and a row of their paths.

        ``transforms``: case transforms applied to every case, or ``{ID: transforms}`` per case.
        ``descriptors_dir``: a ``deepradiomics fit --cache-dir`` whose descriptors the fitted classes reuse.
        """
        if layout not in LAYOUTS:
            raise ParamsError(f"layout '{layout}' is not one of {', '.join(LAYOUTS)}")
        transforms = transforms if isinstance(transforms, Mapping) else tuple(transforms)
        descriptors = None if descriptors_dir is None else str(descriptors_dir)
        return ExtractionTask(self, layout=layout, voxel=voxel, descriptors_dir=descriptors, label=self.params.label, transforms=transforms)

    def describe_task(self, name: str) -> DescribeTask:
        """The batch task computing the per-case descriptors of the fitted class ``name`` (what ``fit`` learns from)."""
        return DescribeTask(self.plugin_classes[name], label=self.params.label)

    def execute_batch(
        self,
        manifest,
        jobs: int = 1,
        out_dir: str | os.PathLike | None = None,
        progress: bool = False,
        base_dir=None,
        *,
        layout: str = "deepradiomics",
        transforms=(),
        voxel: VoxelOutput | None = None,
        descriptors_dir: str | os.PathLike | None = None,
        **options,
    ):
        """Features of every case of a manifest (path or DataFrame) as a DataFrame indexed by ID.

        Failed cases become rows with ``diagnostics_Error`` set and NaN features. ``layout``,
        ``transforms`` and ``voxel`` are those of :meth:`batch_task`; the other options (``scheduler``,
        ``run``) those of :func:`deepradiomics.batch.run_tasks`.
        """
        task = self.batch_task(layout=layout, transforms=transforms, voxel=voxel, descriptors_dir=descriptors_dir)
        return run_batch(task, manifest, jobs=jobs, out_dir=out_dir, progress=progress, base_dir=base_dir, **options)


@dataclass
class ExtractionTask(BatchTask):
    """Extraction of one case by an :class:`Extractor` (what a batch worker runs): its row of features, or
    with ``voxel`` its maps written to files and the row of their paths (:meth:`Extractor.maps_row`)."""

    extractor: Extractor
    layout: str = "deepradiomics"
    voxel: VoxelOutput | None = None
    descriptors_dir: str | None = None

    @property
    def numeric(self) -> bool:
        """Feature columns are float64 unless the rows hold map paths (voxel mode)."""
        return self.voxel is None

    def check(self) -> None:
        """Before any case runs: NotFittedError when a fitted class has neither its fit nor its artifact, and
        ParamsError for settings no case can satisfy (each class's :meth:`~deepradiomics.featureclass.FeatureClass.check`,
        PyRadiomics' :meth:`~deepradiomics.classical.PyRadiomicsBackend.check`)."""
        if self.extractor.backend is not None:
            self.extractor.backend.check(self.extractor.params.source)
        for feature_class in self.extractor.plugin_classes.values():
            feature_class.check()  # a bundle of another architecture, a layer it lacks: the whole batch, at once
        self.extractor.check_fitted()  # a missing fit fails the whole batch at once, not every case

    def namespace(self) -> dict:
        """What every result depends on beyond the case: the params hash (with every sha256), code versions, layout."""
        key = {"params": self.extractor.params_hash, "code": self.extractor.code_versions(), "layout": self.layout}
        if self.voxel is not None:
            key["voxel"] = self.voxel.describe()
        return key

    def compute(self, case: Case) -> dict:
        """The row of one case."""
        if self.voxel is not None:
            return self.extractor.maps_row(case, self.voxel, self.layout)
        return self.extractor.compute(case, layout=self.layout, descriptors_dir=self.descriptors_dir)

    def row_problem(self, row: dict) -> str | None:
        """A stored row is reused only when complete (feature columns, or the map files it names)."""
        if self.voxel is not None:
            return missing_map_files(row)
        return self.extractor.columns_problem(row) if self.layout == "deepradiomics" else None


@dataclass
class DescribeTask(BatchTask):
    """The per-case descriptors of a fitted class (``describe``): what ``fit`` and fold-wise studies learn from."""

    feature_class: Any
    result_kind: ClassVar[str] = "arrays"

    def check(self) -> None:
        """The class's settings (:meth:`~deepradiomics.featureclass.FeatureClass.check`), before any case is described."""
        self.feature_class.check()

    def namespace(self) -> dict:
        """What every result depends on beyond the case: the params hash (with every sha256), code versions, layout."""
        import dataclasses

        fc = self.feature_class
        skipped = {fc.fitted_setting, *fc.artifact_settings}  # the artifacts' sha256 identify those
        settings = {k: v for k, v in dataclasses.asdict(fc.settings).items() if k not in skipped}
        artifacts = {k: v for k, v in fc.artifacts().items() if k != "Fitted"}
        return {"class": fc.name, "settings": settings, "artifacts": artifacts}

    def compute(self, case: Case) -> dict:
        """The row of one case."""
        return self.feature_class.describe(case)


def describe_cases(
    feature_class,
    manifest,
    jobs: int = 1,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    label: int = 1,
    base_dir: str | os.PathLike | None = None,
    scheduler: str = "processes",
    name: str | None = None,
) -> dict[str, dict]:
    """``{ID: descriptors}`` of a fitted class for every case of ``manifest`` (parallel, cached), in manifest order.

    A failing case stops the fit with its message (a cohort-level encoder silently fitted on fewer cases
    than the user listed would be a hidden change of the study). With ``cache_dir`` the descriptors of
    each case are kept as ``cache_dir/descriptors/<name>/<case>.npz`` (keyed like the batch cache; ``name``
    is the class's entry in the params file, default the class's name) and reused by later fits, e.g. the
    fold-wise refits of a study.
    """
    from .batch import BatchRun

    task = DescribeTask(feature_class, label=label)
    folder = Path(cache_dir) / "descriptors" / (name or feature_class.name) if cache_dir is not None else None
    run = BatchRun()
    frame, _, results = run_tasks(
        task, manifest, jobs=jobs, out_dir=folder, progress=progress, base_dir=base_dir, scheduler=scheduler, run=run, desc=f"describe {feature_class.name}"
    )
    if run.failed:
        first = f"{run.failed[0][0]}: {run.failed[0][1]}"
        raise DeepRadiomicsError(
            f"fitting '{feature_class.name}' needs every case of the manifest, but {len(run.failed)} failed; first: {first}. "
            "Fix or remove those cases and fit again"
        )
    return {case_id: results[case_id] for case_id in frame["ID"]}


class _CachedDescriptors:
    """A fitted class computing from the descriptors cached under ``<cache>/descriptors/<name>/`` (as ``fit``
    wrote them, keyed as :class:`DescribeTask` keys them), describing and caching a case that is not there."""

    def __init__(self, feature_class, name: str, cache_dir: Path) -> None:
        self.feature_class, self.name, self.cache_dir = feature_class, name, cache_dir

    def feature_names(self) -> list[str]:
        return self.feature_class.feature_names()

    def compute(self, case: Case):
        from .batch import ArrayCache

        task = DescribeTask(self.feature_class, label=case.label)
        cache = ArrayCache(self.cache_dir / "descriptors" / self.name)
        key = task.cache_key(case)
        descriptors = cache.load(case.case_id, key)
        if descriptors is None:
            descriptors = self.feature_class.describe(case)
            cache.store(case.case_id, key, descriptors)
        self.feature_class.check_fitted()
        return self.feature_class.encode(descriptors)


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


#: key of the PyRadiomics block in :meth:`Extractor.compute` (a name no registered class can have: it has '_')
_PYRADIOMICS_BLOCK = "_pyradiomics"


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.startswith(".")


