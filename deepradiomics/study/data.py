"""Study data: reading feature and label tables, label handling, and the table a study works on.

:func:`prepare_data` joins a features table (from ``deepradiomics batch``, a DataFrame, or any table whose
index is the case ID) with a labels table, drops the rows a study cannot use (failed extractions, cases
without a label row or with a blank target), encodes the target as 0/1 and returns the float feature
matrix with what was dropped and why (:class:`LabelledData`). It stands alone: a table without feature
columns is accepted with ``require_features=False`` (a study whose every family is fitted fold-wise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import naming
from ..errors import DeepRadiomicsError, StudyDataError, did_you_mean

logger = logging.getLogger("deepradiomics.study")


def read_table(table, what: str, index_col: int | None = 0, id_column: str | None = None) -> tuple[pd.DataFrame, str]:
    """A DataFrame from a DataFrame or a table file (CSV, Parquet or JSON); returns (frame, name for messages).

    Case IDs (the index column, or ``id_column``) are read as text, so that ``001`` stays ``001``.
    Feature tables go through :func:`deepradiomics.io.read_table`, the reader of every command.
    """
    from .. import io

    if isinstance(table, pd.DataFrame):
        return table.copy(), f"the {what} DataFrame"
    path = Path(table)
    if not path.is_file():
        raise StudyDataError(f"{what} file {str(path)!r} does not exist; check the path")
    try:
        if index_col is not None:
            return io.read_table(path, what), str(path)
        if path.suffix.lower() in (".parquet", ".json"):
            return io.read_table(path, what).reset_index(), str(path)
        header = pd.read_csv(path, nrows=0).columns
        frame = pd.read_csv(path, dtype={id_column: str} if id_column in header else None)
    except DeepRadiomicsError as exc:
        raise StudyDataError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise StudyDataError(f"cannot read {what} file {str(path)!r} as CSV: {exc}") from exc
    return frame, str(path)


def join_tables(tables, what: str = "features") -> tuple[pd.DataFrame, str]:
    """Several features tables (paths or DataFrames) joined on the case ID; returns (table, name for messages).

    The tables may hold different classes of the same cases (e.g. one batch per params file). A feature
    column in two tables is refused (which one is meant is unknowable); other columns shared by the tables
    (manifest columns, versions) keep the first table's values. A case absent from a table, or failed in
    one, gets that table's reason in ``diagnostics_Error``, so a study drops it with a note as it drops a
    failed case.
    """
    frames = [read_table(t, what) for t in tables]
    if len(frames) == 1:
        return frames[0]
    frames = [(frame, f"{name} #{i + 1}" if name.startswith("the ") else name) for i, (frame, name) in enumerate(frames)]
    names = [name for _, name in frames]
    joined, first = frames[0][0].copy(), names[0]
    joined.index = joined.index.astype(str)
    owner = {c: first for c in naming.feature_columns([str(c) for c in joined.columns])}
    cleaned = []
    for position, (frame, name) in enumerate(frames):
        frame = frame.copy()
        frame.index = frame.index.astype(str)
        if frame.index.duplicated().any():
            raise StudyDataError(f"{name} repeats case IDs {frame.index[frame.index.duplicated()].unique()[:5].tolist()}; keep one row per case")
        cleaned.append((frame, name))
        if not position:
            continue
        for column in naming.feature_columns([str(c) for c in frame.columns]):
            if column in owner:
                raise StudyDataError(f"feature column '{column}' is in both {owner[column]} and {name}: give each class's columns in one table only")
            owner[column] = name
        added = [c for c in frame.columns if c not in joined.columns and c != naming.ERROR_COLUMN]
        joined = joined.join(frame[added], how="outer")
    errors = pd.Series("", index=joined.index, dtype=object)
    for frame, name in cleaned:  # the first reason a case cannot be used, table by table
        errors[~joined.index.isin(frame.index) & (errors == "")] = f"no row in {name}"
        if naming.ERROR_COLUMN in frame.columns:
            for case_id in frame.index[~is_blank(frame[naming.ERROR_COLUMN])]:
                errors[case_id] = errors[case_id] or f"failed in {name}: {frame.loc[case_id, naming.ERROR_COLUMN]}"
    joined[naming.ERROR_COLUMN] = errors.reindex(joined.index, fill_value="")
    return joined, " + ".join(names)


def format_label(value) -> str:
    """A label value as text, whole floats without their ``.0`` (``1.0`` -> ``"1"``)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def is_blank(series: pd.Series) -> pd.Series:
    """True where a cell is missing or blank text (``""``, ``nan``, ``None``)."""
    return series.isna() | series.astype(str).str.strip().isin(["", "nan", "NaN", "None"])


def column_list(columns, limit: int = 30) -> str:
    """Column names for a message, cut after ``limit``."""
    cols = [str(c) for c in columns]
    return ", ".join(cols[:limit]) + (f", ... ({len(cols)} in all)" if len(cols) > limit else "")


@dataclass
class LabelledData:
    """Features and 0/1 labels of the cases kept for analysis."""

    features: pd.DataFrame  # feature columns only, float, indexed by case ID
    y: np.ndarray
    positive: str
    negative: str
    notes: list[str]
    n_dropped_blank: int = 0
    covariates: pd.DataFrame | None = None  # ROI volume / number of slices per kept case (study.confounds)
    #: the diagnostics and other non-feature columns of the kept rows (which patients a fitted class saw, ...)
    diagnostics: pd.DataFrame | None = None


def _labels_series(features: pd.DataFrame, labels, target: str, id_column: str, features_name: str) -> tuple[pd.Series, str, np.ndarray]:
    """The target values aligned to the feature rows, the labels' name, and which rows have no label row."""
    if labels is None:
        if target not in features.columns:
            raise StudyDataError(
                f"target column {target!r} is not in {features_name} and no labels table was given;"
                f" pass --labels MANIFEST.csv or one of its columns: {column_list(features.columns)}."
                + did_you_mean(target, map(str, features.columns))
            )
        return features[target], features_name, np.zeros(len(features), bool)
    table, name = read_table(labels, "labels", index_col=None, id_column=id_column)
    if id_column not in table.columns:
        if table.index.name != id_column:
            raise StudyDataError(
                f"labels table {name} has no {id_column!r} column to join on (columns:"
                f" {column_list(table.columns)}); the features table is indexed by {id_column}."
                + did_you_mean(id_column, map(str, table.columns))
            )
        table = table.reset_index()
    if target not in table.columns:
        raise StudyDataError(
            f"target column {target!r} is not in labels table {name}; its columns are:"
            f" {column_list(table.columns)}." + did_you_mean(target, map(str, table.columns))
        )
    ids = table[id_column].astype(str).str.strip()
    if ids.duplicated().any():
        raise StudyDataError(
            f"labels table {name} repeats IDs {ids[ids.duplicated()].unique()[:5].tolist()} in column"
            f" {id_column!r}; keep one row per case"
        )
    values = pd.Series(table[target].to_numpy(), index=ids)
    feature_ids = features.index.astype(str).str.strip()
    missing = ~feature_ids.isin(values.index)
    if missing.all():
        raise StudyDataError(
            f"no case ID of the features table (e.g. {feature_ids[:3].tolist()}) is in column"
            f" {id_column!r} of labels table {name} (e.g. {ids[:3].tolist()}); the features CSV must be"
            " indexed by the manifest's ID"
        )
    aligned = values.reindex(feature_ids)
    aligned.index = features.index
    return aligned, name, np.asarray(missing)


def _drop_failed(frame: pd.DataFrame, name: str, notes: list[str]) -> pd.DataFrame:
    """``frame`` without batch error rows (non-empty ``diagnostics_Error``); refused when every row failed."""
    if naming.ERROR_COLUMN not in frame.columns:
        return frame
    failed = ~is_blank(frame[naming.ERROR_COLUMN])
    if failed.any() and failed.all():
        first = frame.index[0]
        raise StudyDataError(
            f"every case of {name} ({len(frame)}) failed extraction ({naming.ERROR_COLUMN}); first: "
            f"{first}: {' '.join(str(frame.loc[first, naming.ERROR_COLUMN]).split())[:300]}. Fix the inputs and run batch again"
        )
    if failed.any():
        notes.append(f"dropped {int(failed.sum())} case(s) of {name} whose extraction failed ({naming.ERROR_COLUMN})")
    return frame[~failed]


def _classes(text: pd.Series, target: str, labels_name: str, positive, expected_classes, notes: list[str]) -> tuple[str, str]:
    """``(negative, positive)`` class names of the target values ``text`` (see :func:`prepare_data`)."""
    classes = sorted(text.unique())
    if expected_classes is not None:  # a test set: classes are those of the training set
        negative, pos = expected_classes
        allowed = set(classes) if negative.startswith("not ") else {negative, pos}
        stray = sorted(set(classes) - allowed)
        if stray:
            raise StudyDataError(
                f"{target!r} in {labels_name} has values {stray} that the training set does not have"
                f" ({negative} / {pos}); relabel or drop those cases"
            )
        return negative, pos
    if positive is not None:
        pos = format_label(positive)
        if pos not in classes:
            raise StudyDataError(
                f"--positive {positive!r} is not a value of {target!r} in {labels_name}; its values are:"
                f" {', '.join(classes)}." + did_you_mean(pos, classes)
            )
        others = [c for c in classes if c != pos]
        if len(others) > 1:
            notes.append(f"{target!r} has {len(classes)} values; studying {pos} versus all others ({', '.join(others)})")
        return (others[0] if len(others) == 1 else "not " + pos), pos
    if len(classes) != 2:
        raise StudyDataError(
            f"target {target!r} in {labels_name} has {len(classes)} distinct value(s)"
            f" ({', '.join(classes[:10])}); a study needs two classes, or name the positive one with"
            " --positive VALUE"
        )
    return classes[0], classes[1]


def _feature_matrix(frame: pd.DataFrame, name: str, require_features: bool, notes: list[str]) -> pd.DataFrame:
    """The float feature columns of ``frame`` (infinite values as missing, each step noted)."""
    feature_cols = naming.feature_columns([str(c) for c in frame.columns])
    if not feature_cols:
        if require_features:
            raise StudyDataError(f"{name} has no feature column (<imageType>_<featureClass>_<Feature>): give a table written by `deepradiomics batch`")
        return pd.DataFrame(index=frame.index)
    X = frame[feature_cols].apply(pd.to_numeric, errors="coerce").astype(float)
    infinite = np.isinf(X.to_numpy())
    if infinite.any():
        columns = [c for c, bad in zip(X.columns, infinite.any(axis=0)) if bad]
        notes.append(
            f"replaced {int(infinite.sum())} infinite value(s) by missing ones (imputed within each training fold) in"
            f" {len(columns)} column(s): {column_list(columns, 10)}"
        )
        X = X.replace([np.inf, -np.inf], np.nan)
    # columns without information: all values missing, or one value for every case. The pipeline drops them in
    # every fold (kept here: histogram columns keep their codeword positions); a table of nothing else would
    # end in scikit-learn's ValueError, so it is refused here.
    empty = [c for c in X.columns if X[c].isna().all()]
    constant = [c for c in X.columns if c not in empty and X[c].nunique(dropna=True) <= 1]
    if len(empty) + len(constant) == X.shape[1]:
        raise StudyDataError(
            f"no usable feature in {name}: of its {X.shape[1]} feature column(s), {len(empty)} are empty (all missing) and"
            f" {len(constant)} are constant over the {len(X)} case(s) kept; check the extraction (diagnostics_Error, settings)"
        )
    if empty:
        notes.append(f"{len(empty)} feature column(s) have no value (left out by the models): {column_list(empty, 10)}")
    return X


def prepare_data(
    features,
    labels,
    target: str,
    positive=None,
    id_column: str = "ID",
    what: str = "features",
    expected_classes: tuple[str, str] | None = None,
    require_features: bool = True,
) -> LabelledData:
    """Join features and labels, drop unusable rows, encode the target as 0/1.

    Rows dropped (each counted in ``notes`` and logged on stderr): batch error rows (non-empty
    ``diagnostics_Error``), cases absent from the labels table, cases with a blank target.

    The positive class is ``positive`` when given (other values form the negative class), else the
    larger of exactly two distinct values in sorted order (``G3`` over ``G2``, ``1`` over ``0``).
    ``expected_classes`` (``(negative, positive)``) checks a test set against its training set's classes.
    ``require_features=False`` accepts a table without feature columns (``features`` then has none).
    ``features`` may be a list of tables, joined on the case ID (:func:`join_tables`).
    """
    from .confounds import case_covariates

    frame, name = join_tables(features, what) if isinstance(features, (list, tuple)) else read_table(features, what)
    if frame.index.duplicated().any():
        raise StudyDataError(f"{name} repeats case IDs {frame.index[frame.index.duplicated()].unique()[:5].tolist()}; keep one row per case")
    notes: list[str] = []
    frame = _drop_failed(frame, name, notes)
    values, labels_name, absent = _labels_series(frame, labels, target, id_column, name)
    n_absent = int(absent.sum())
    if n_absent:
        notes.append(f"dropped {n_absent} case(s) of {name} that have no row in {labels_name}")
    blank = is_blank(values)
    n_blank = int(blank.sum()) - n_absent
    if n_blank:
        notes.append(f"dropped {n_blank} of {len(values) - n_absent} case(s) of {name} with a blank {target!r} in {labels_name}")
    frame, values = frame[~blank], values[~blank]
    if not len(frame):
        raise StudyDataError(f"no case of {name} is left for the study of {target!r}: " + "; ".join(notes or ["the table has no row"]))
    text = values.map(format_label)
    negative, pos = _classes(text, target, labels_name, positive, expected_classes, notes)
    y = (text == pos).to_numpy().astype(int)
    X = _feature_matrix(frame, name, require_features, notes)
    for note in notes:
        logger.warning(note)
    covariates = case_covariates(frame)
    others = frame[[c for c in frame.columns if not naming.is_feature(str(c))]]
    return LabelledData(X, y, pos, negative, notes, n_blank, covariates if len(covariates.columns) else None, others)
