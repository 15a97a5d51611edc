"""Per-fold feature sources: fixed columns, and columns of fitted classes refitted inside every training fold.

A fitted class (``requires_fit``, e.g. ``fisher``'s GMM) learns a cohort-level state. Evaluated on a table
extracted with a state fitted on every case, its held-out cases would have informed their own features.
Here a study given images (a manifest and a params file) keeps that step inside cross-validation:

1. the classes that need no fit are extracted once through the batch machinery (parallel, resumable);
2. each fitted class describes every case once (:func:`deepradiomics.extractor.describe_cases`: parallel,
   cached as ``.npz`` keyed on the inputs);
3. for each split, each fitted class is fitted on the descriptors of the training cases only, then
   encodes the training and the held-out cases; the encoded table is cached per training set, so every
   family and model evaluated on the same split (the splits are identical for all of them, which keeps
   comparisons paired) reuses one fit.

:func:`cross_validate` takes either a table or a source with ``split(train, test) -> (X_train, X_test)``;
:class:`FixedFeatures` wraps a table, :class:`FoldwiseFeatures` combines fixed and fold-wise fitted
columns, and ``select(columns)`` restricts either to one family (a family without fitted columns never
triggers a fit).

Cost: one fit per distinct training set (5 x 5-fold CV: 25; leave-one-out: one per case), and every case
is encoded after each fit (its training-fold features change with the fit). ``benchmarks/fisher_speed.py``
measures it against a study on a fixed table.

Examples
--------
>>> import pandas as pd, numpy as np
>>> source = FixedFeatures(pd.DataFrame({"original_a_X": [1.0, 2.0, 3.0]}, index=["p", "q", "r"]))
>>> X_train, X_test = source.split(np.array([0, 2]), np.array([1]))
>>> X_train.ravel().tolist(), X_test.ravel().tolist()
([1.0, 3.0], [2.0])
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import naming
from ..featureclass import ComputeResult

logger = logging.getLogger("deepradiomics.study")


class FixedFeatures:
    """A feature table whose columns do not depend on the split (extracted once)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    @property
    def index(self) -> pd.Index:
        """The case IDs, in row order."""
        return self.frame.index

    @property
    def columns(self) -> list[str]:
        """The feature columns, in order."""
        return [str(c) for c in self.frame.columns]

    def select(self, columns: Sequence[str]) -> FixedFeatures:
        """The same features restricted to ``columns``."""
        return FixedFeatures(self.frame[list(columns)])

    def split(self, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(X_train, X_test) as float arrays, rows in the order of ``train`` and ``test``."""
        values = np.asarray(self.frame, dtype=float)
        return values[train], values[test]


@dataclass
class FittedColumns:
    """One fitted class of a fold-wise study: the instance, every case's descriptors, its column names."""

    name: str
    feature_class: Any
    descriptors: Mapping[str, Mapping[str, np.ndarray]]
    columns: list[str]


@dataclass
class FoldStats:
    """What the fold-wise refitting cost (for reports and benchmarks)."""

    describe_seconds: float = 0.0
    fits: int = 0
    fit_seconds: float = 0.0
    encode_seconds: float = 0.0
    reused: int = 0
    #: fits whose class reports it did not converge (``fit_report()["Converged"]``, e.g. the GMM's EM)
    not_converged: int = 0
    training_sets: list[tuple[str, ...]] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, float]:
        """The counts and seconds, rounded, for the study's info."""
        return {
            "describe_seconds": round(self.describe_seconds, 3),
            "fits": self.fits,
            "fit_seconds": round(self.fit_seconds, 3),
            "encode_seconds": round(self.encode_seconds, 3),
            "reused_fits": self.reused,
            "fits_not_converged": self.not_converged,
        }


class _FoldEncoder:
    """Fits each fitted class on a training set and encodes every case; caches the table per training set."""

    def __init__(self, index: pd.Index, fitted: Sequence[FittedColumns], stats: FoldStats, progress: bool = False) -> None:
        self.index = index
        self.fitted = {f.name: f for f in fitted}
        self.stats = stats
        self.progress = progress
        self._bars: dict[str, Any] = {}
        self._tables: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
        self._state: dict[str, tuple[str, ...]] = {}  # the training set each class instance is fitted on now

    def _tick(self, name: str, seconds: float, n_train: int) -> None:
        """One fit done: a count-up progress bar per class on stderr, and an INFO line with its time."""
        if self.progress:
            import sys

            from tqdm.auto import tqdm

            bar = self._bars.get(name)
            if bar is None:
                bar = self._bars[name] = tqdm(desc=f"{name} fold-wise fits", unit="fit", file=sys.stderr, dynamic_ncols=True)
            bar.update(1)
        logger.info("%s: fit %d on %d training cases in %.1f s", name, self.stats.fits, n_train, seconds)

    def fitted_class(self, name: str, train_ids: tuple[str, ...]):
        """The instance of class ``name`` fitted on the descriptors of ``train_ids`` (fitted now unless it already is)."""
        entry = self.fitted[name]
        if self._state.get(name) != train_ids:
            start = time.perf_counter()
            entry.feature_class.fit_from_descriptors([entry.descriptors[i] for i in train_ids], list(train_ids))
            seconds = time.perf_counter() - start
            self.stats.fits += 1
            self.stats.fit_seconds += seconds
            self.stats.training_sets.append(train_ids)
            self._state[name] = train_ids
            if entry.feature_class.fit_report().get("Converged") is False:
                self.stats.not_converged += 1
            self._tick(name, seconds, len(train_ids))
        return entry.feature_class

    def table(self, name: str, train_ids: tuple[str, ...]) -> np.ndarray:
        """(n_cases, n_columns) features of class ``name`` for every case, fitted on ``train_ids`` only."""
        key = (name, train_ids)
        if key in self._tables:
            self.stats.reused += 1
            return self._tables[key]
        entry = self.fitted[name]
        feature_class = self.fitted_class(name, train_ids)
        fitted_at = time.perf_counter()
        names = feature_class.feature_names()
        rows = []
        for case_id in self.index:
            values = ComputeResult.of(feature_class.encode(entry.descriptors[str(case_id)])).features
            rows.append([values[c] for c in names])
        self.stats.encode_seconds += time.perf_counter() - fitted_at
        table = np.asarray(rows, dtype=float)
        self._tables[key] = table
        return table


class FoldwiseFeatures:
    """Fixed columns plus columns of fitted classes refitted on the training cases of every split.

    Parameters
    ----------
    fixed
        The table of the classes that need no fit, indexed by case ID (may have no columns).
    fitted
        The fitted classes with the descriptors of every case of ``fixed.index``.
    stats
        Filled with the number and cost of the fits.
    """

    def __init__(
        self, fixed: pd.DataFrame, fitted: Sequence[FittedColumns], stats: FoldStats | None = None, *, progress: bool = False, _encoder=None, _columns=None
    ) -> None:
        self.fixed = fixed
        self.fitted = list(fitted)
        self.stats = stats if stats is not None else FoldStats()
        self._encoder = _encoder or _FoldEncoder(fixed.index, self.fitted, self.stats, progress)
        all_columns = [str(c) for c in fixed.columns] + [c for f in self.fitted for c in f.columns]
        self._columns = list(_columns) if _columns is not None else all_columns
        missing = [f for f in self.fitted for i in fixed.index if str(i) not in f.descriptors]
        if missing:
            raise ValueError(f"class '{missing[0].name}' has no descriptors for some cases of the table")

    @property
    def index(self) -> pd.Index:
        """The case IDs, in row order."""
        return self.fixed.index

    @property
    def columns(self) -> list[str]:
        """The feature columns, in order."""
        return list(self._columns)

    def select(self, columns: Sequence[str]) -> FoldwiseFeatures:
        """The same source restricted to ``columns`` (sharing the per-training-set cache)."""
        known = set(self._columns)
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise KeyError(f"columns {unknown[:3]} are not in this feature source")
        return FoldwiseFeatures(self.fixed, self.fitted, self.stats, _encoder=self._encoder, _columns=columns)

    def split(self, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(X_train, X_test): fixed columns as they are, fitted columns from a fit on the ``train`` rows only."""
        ids = [str(i) for i in self.index]
        train_ids = tuple(sorted(ids[i] for i in train))
        blocks: dict[str, np.ndarray] = {}
        fixed_cols = [c for c in self._columns if c in self.fixed.columns]
        if fixed_cols:
            values = np.asarray(self.fixed[fixed_cols], dtype=float)
            for j, column in enumerate(fixed_cols):
                blocks[column] = values[:, j]
        for entry in self.fitted:
            own = set(entry.columns)
            wanted = [c for c in self._columns if c in own]
            if not wanted:
                continue  # a family without this class's columns never fits it
            table = self._encoder.table(entry.name, train_ids)
            position = {c: j for j, c in enumerate(entry.columns)}
            for column in wanted:
                blocks[column] = table[:, position[column]]
        matrix = np.column_stack([blocks[c] for c in self._columns]) if self._columns else np.zeros((len(ids), 0))
        return matrix[train], matrix[test]

    def fitted_class(self, name: str, train_ids: Sequence[str] | None = None):
        """The instance of fitted class ``name`` fitted on ``train_ids`` (default: every case of the source)."""
        ids = train_ids if train_ids is not None else [str(i) for i in self.index]
        return self._encoder.fitted_class(name, tuple(sorted(ids)))

    def full_table(self, train_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Every column for every case, the fitted ones fitted on ``train_ids`` (default: every case)."""
        ids = [str(i) for i in self.index]
        chosen = tuple(sorted(train_ids if train_ids is not None else ids))
        frame = self.fixed.copy()
        for entry in self.fitted:
            table = self._encoder.table(entry.name, chosen)
            frame = pd.concat([frame, pd.DataFrame(table, index=self.index, columns=entry.columns)], axis=1)
        return frame[self._columns]


def split_params(params):
    """(params of the classes that need no fit or None, names of the fitted classes) of a :class:`Params`."""
    from ..extractor import Extractor
    from ..params import load_params

    extractor = Extractor(params)
    fitted = list(extractor.fitted_classes)
    data = params.to_dict()
    data["featureClass"] = {k: v for k, v in data["featureClass"].items() if k not in fitted}
    if not data["featureClass"]:
        return None, fitted
    return load_params(data, name=f"{params.source} (classes without fit)", base_dir=params.base_dir), fitted


def fitted_columns(extractor, names: Sequence[str], manifest, base, ids: Sequence[str], jobs: int = 1, cache_dir=None, progress: bool = False, stats: FoldStats | None = None) -> list[FittedColumns]:
    """Describe the cases ``ids`` of ``manifest`` once per fitted class (parallel, cached); return the sources."""
    from ..batch import read_manifest
    from ..extractor import describe_cases

    frame, base = read_manifest(manifest, base)
    frame = frame[frame["ID"].isin(set(map(str, ids)))]
    out = []
    for name in names:
        feature_class = extractor.plugin_classes[name]
        if feature_class.fitted_path() is not None:
            logger.warning(
                "class '%s' points to the fitted artifact '%s': the study ignores it and refits the class inside every training fold",
                name,
                feature_class.fitted_path(),
            )
        start = time.perf_counter()
        descriptors = describe_cases(feature_class, frame, jobs=jobs, cache_dir=cache_dir, progress=progress, label=extractor.params.label, base_dir=base, name=name)
        if stats is not None:
            stats.describe_seconds += time.perf_counter() - start
        columns = [naming.format_name(feature_class.image_type, name, f) for f in feature_class.feature_names()]
        out.append(FittedColumns(name, feature_class, descriptors, columns))
    return out



def fixed_rows(rest, frame: pd.DataFrame, base, jobs: int, cache_dir, progress: bool) -> pd.DataFrame:
    """The batch table of the classes that need no fit (``rest``, a Params or None), rows kept under
    ``cache_dir/rows``; without such classes, the manifest itself indexed by ID."""
    if rest is None:
        table = frame.set_index("ID", drop=True)
        table.index.name = "ID"
        return table
    from pathlib import Path

    from ..extractor import Extractor

    rows_dir = Path(cache_dir) / "rows" if cache_dir is not None else None
    return Extractor(rest).execute_batch(frame, jobs=jobs, out_dir=rows_dir, progress=progress, base_dir=base)


def join_fixed_table(table: pd.DataFrame, features, classes: Sequence[str] = ()) -> pd.DataFrame:
    """``table`` (rows of a manifest's cases) with the feature columns of a batch table ``features`` added.

    Its feature columns and the other columns ``table`` lacks (diagnostics) are added. Cases of ``table``
    without a row in ``features`` get the batch error column filled in, so the study drops them with a note
    as it drops failed cases. Columns of a class in ``classes`` (those the params file extracts) are
    refused: which of the two would be meant is unknowable.
    """
    from ..errors import StudyDataError
    from ..io import read_table
    from .data import is_blank

    if isinstance(features, (list, tuple)):
        from .data import join_tables

        extra, name = join_tables(features)
    else:
        name = "the features table" if isinstance(features, pd.DataFrame) else str(features)
        extra = features.copy() if isinstance(features, pd.DataFrame) else read_table(features)
    if "ID" in extra.columns:
        extra = extra.set_index("ID", drop=True)
    extra.index = extra.index.astype(str)
    if naming.ERROR_COLUMN in extra.columns:
        extra = extra[is_blank(extra[naming.ERROR_COLUMN])]
    columns = naming.feature_columns([str(c) for c in extra.columns])
    if not columns:
        raise StudyDataError(f"{name} has no feature columns (original_*, wavelet-*, ...); give a table written by `deepradiomics batch`")
    both = sorted({naming.feature_class_of(c) for c in columns} & set(classes))
    if both:
        raise StudyDataError(
            f"{name} has columns of class(es) {', '.join(both)}, which the params file extracts too; "
            "remove them from one of the two"
        )
    joined = table.copy()
    joined.index = joined.index.astype(str)
    missing = ~joined.index.isin(extra.index)
    # its features and the columns the rows lack (e.g. diagnostics such as ROI volume and slice count, for
    # the confounds); columns both have (manifest columns) stay as the images' rows have them
    added = [c for c in extra.columns if c not in joined.columns and c != naming.ERROR_COLUMN]
    joined = joined.join(extra[added], how="left")
    if missing.any():
        error = joined[naming.ERROR_COLUMN] if naming.ERROR_COLUMN in joined.columns else pd.Series("", index=joined.index, dtype=object)
        joined[naming.ERROR_COLUMN] = error.astype(object).where(~missing, f"no usable row in {name} (absent, or failed there)")
    return joined


def check_labels_before_cases(frame: pd.DataFrame, labels, target: str, positive=None, id_column: str = "ID", folds: int | None = None, where: str = "the manifest") -> None:
    """Refuse, from the manifest and the labels alone, a cohort a study cannot split, before any case is read.

    ``frame`` is the manifest (:func:`deepradiomics.batch.read_manifest`); its cases with a label (the
    ``target`` of ``labels``, default the manifest's own column) must hold at least ``max(2, folds)`` cases of
    each of the two classes (stratified ``folds``-fold cross-validation). Failed extractions can only lower
    these counts, so what fails here would fail after every case was described.

    Raises
    ------
    StudyDataError
        The manifest lists no case, the target is missing, or a class is too small (naming the counts and the fix).
    ParamsError
        Too few cases of a class for ``folds`` (as :func:`~deepradiomics.study.classification.check_class_sizes`).
    """
    from ..errors import StudyDataError
    from .classification import check_class_sizes
    from .data import _classes, _labels_series, format_label, is_blank

    if not len(frame):
        raise StudyDataError(f"{where} lists no case: a study needs the cases of two classes")
    table = frame.set_index("ID", drop=False)
    values, labels_name, _ = _labels_series(table, labels, target, id_column, where)
    values = values[~is_blank(values)]
    if not len(values):
        raise StudyDataError(f"no case of {where} has a value of {target!r} in {labels_name}: label the cases, or choose another --target")
    text = values.map(format_label)
    _, pos = _classes(text, target, labels_name, positive, None, [])
    y = (text == pos).to_numpy().astype(int)
    what = f"the labelled cases of {where} ({target!r} in {labels_name})"
    if folds is not None:
        check_class_sizes(y, folds, what)
    elif min(int(y.sum()), int(len(y) - y.sum())) < 2:
        raise StudyDataError(f"{what} have {int(y.sum())} positive and {int(len(y) - y.sum())} negative cases; a cross-validated study needs at least 2 of each class: add cases")


def check_params_before_cases(extractor) -> None:
    """Every class's settings (:meth:`~deepradiomics.featureclass.FeatureClass.check`) and PyRadiomics' before any
    case of a study from images is extracted or described (a fitted class is not fitted yet: no fit is asked for)."""
    if extractor.backend is not None:
        extractor.backend.check(extractor.params.source)
    for feature_class in extractor.plugin_classes.values():
        feature_class.check()


def prepare_images(
    manifest,
    params,
    labels=None,
    target: str = "label",
    positive=None,
    id_column: str = "ID",
    jobs: int = 1,
    cache_dir=None,
    progress: bool = False,
    features=None,
    folds: int | None = None,
):
    """Features of a manifest's cases for a study: ``(LabelledData of the fixed columns, FoldwiseFeatures)``.

    The classes of ``params`` that need no fit are extracted once (:func:`deepradiomics.batch.run_batch`,
    per-case rows kept under ``cache_dir/rows`` for resuming); failed cases and cases without a label are
    dropped as in :func:`~deepradiomics.study.core.prepare_data`; the fitted classes then describe the kept
    cases once (``cache_dir/descriptors``) and are refitted per split by the returned source. ``labels``
    defaults to the manifest itself. ``features`` (a table from ``deepradiomics batch``, path or DataFrame)
    adds fixed columns extracted earlier: joined on the case ID (a manifest case without a row there is
    dropped like a failed case; a class extracted by both is refused). Before any case is extracted or described,
    the labels are checked against ``folds`` (:func:`check_labels_before_cases`) and every class's settings
    against what no case can change (:func:`check_params_before_cases`).
    """
    from ..batch import read_manifest
    from ..errors import ParamsError
    from ..extractor import Extractor
    from ..params import Params, load_params
    from .data import prepare_data

    if manifest is None or params is None:
        raise ParamsError("a study from images needs both a manifest (--manifest) and a params file (--params)")
    params = params if isinstance(params, Params) else load_params(params)
    frame, base = read_manifest(manifest)
    if labels is None:
        labels = manifest if not isinstance(manifest, pd.DataFrame) else frame
    where = "the manifest DataFrame" if isinstance(manifest, pd.DataFrame) else f"manifest '{manifest}'"
    check_labels_before_cases(frame, labels, target, positive, id_column, folds, where)
    check_params_before_cases(Extractor(params))
    rest, fitted_names = split_params(params)
    table = fixed_rows(rest, frame, base, jobs, cache_dir, progress)
    if features is not None:
        table = join_fixed_table(table, features, [*params.pyradiomics, *params.plugins])
    # with only fitted classes the table has no feature column yet: labels and dropped rows are still prepared
    data = prepare_data(table, labels, target, positive, id_column, require_features=False)
    stats = FoldStats()
    extractor = Extractor(params)
    fitted = fitted_columns(extractor, fitted_names, frame, base, list(data.features.index.astype(str)), jobs, cache_dir, progress, stats)
    fixed = data.features.copy()
    fixed.index = fixed.index.astype(str)
    data.features = fixed
    if fitted_names:
        data.notes.append(
            f"fitted class(es) {', '.join(fitted_names)} refitted inside every training fold on the training cases only "
            "(descriptors computed once per case)"
        )
    return data, FoldwiseFeatures(fixed, fitted, stats, progress=progress)


def external_images(source: FoldwiseFeatures, test_manifest, params, jobs: int = 1, cache_dir=None, progress: bool = False) -> pd.DataFrame:
    """The test table of an external validation from images: fixed classes extracted on ``test_manifest``,
    fitted classes fitted on every training case of ``source`` and applied to the test cases.

    Returns the test cases' table (the manifest's columns passed through, then the features).
    """
    from ..batch import read_manifest
    from ..extractor import describe_cases
    from ..params import Params, load_params

    params = params if isinstance(params, Params) else load_params(params)
    frame, base = read_manifest(test_manifest)
    rest, _ = split_params(params)
    table = fixed_rows(rest, frame, base, jobs, cache_dir, progress)
    table.index = table.index.astype(str)
    for entry in source.fitted:
        feature_class = source.fitted_class(entry.name)
        descriptors = describe_cases(feature_class, frame, jobs=jobs, cache_dir=cache_dir, progress=progress, label=params.label, base_dir=base, name=entry.name)
        names = feature_class.feature_names()
        rows = []
        for case_id in table.index:
            values = ComputeResult.of(feature_class.encode(descriptors[case_id])).features
            rows.append([values[c] for c in names])
        table = pd.concat([table, pd.DataFrame(rows, index=table.index, columns=entry.columns)], axis=1)
    return table
