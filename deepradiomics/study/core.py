"""``run_study``: compare feature families on a binary label and write a report folder.

>>> result = run_study("features.csv", labels="cases.csv", target="grade", positive="G3")  # doctest: +SKIP
>>> result.metrics.query("metric == 'AUC'")                                                 # doctest: +SKIP
>>> result.write("report/")                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from .. import naming
from ..errors import DeepRadiomicsError, ParamsError, did_you_mean
from .classification import MODELS, FamilyCV, check_model, cross_validate, fit_and_score
from .confounds import case_covariates, confound_table
from .families import feature_families
from .statistics import (
    METRICS,
    adjust_pvalues,
    bootstrap_metrics,
    corrected_resampled_ttest,
    delong_test,
)

logger = logging.getLogger("deepradiomics.study")

METRICS_COLUMNS = ["family", "model", "metric", "mean", "sd", "ci_low", "ci_high", "validation"]
EXTERNAL_COLUMNS = ["family", "model", "metric", "estimate", "sd", "ci_low", "ci_high", "interval", "successes", "trials", "n_cases"]
COMPARISON_COLUMNS = [
    "model",
    "family_a",
    "family_b",
    "metric",
    "value_a",
    "value_b",
    "difference",
    "test",
    "statistic",
    "p_value",
    "p_adjusted",
]


class StudyDataError(DeepRadiomicsError, ValueError):
    """The features or labels table cannot be used for a study (missing column, no overlap, ...)."""


# --------------------------------------------------------------------------------------------- data
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


def _fmt_value(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _is_blank(series: pd.Series) -> pd.Series:
    return series.isna() | series.astype(str).str.strip().isin(["", "nan", "NaN", "None"])


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


def _labels_series(
    features: pd.DataFrame, labels, target: str, id_column: str, features_name: str
) -> tuple[pd.Series, str, np.ndarray]:
    """The target values aligned to the feature rows, the labels' name, and which rows have no label row."""
    if labels is None:
        if target not in features.columns:
            raise StudyDataError(
                f"target column {target!r} is not in {features_name} and no labels table was given;"
                f" pass --labels MANIFEST.csv or one of its columns: {_list(features.columns)}."
                + did_you_mean(target, map(str, features.columns))
            )
        return features[target], features_name, np.zeros(len(features), bool)
    table, name = read_table(labels, "labels", index_col=None, id_column=id_column)
    if id_column not in table.columns:
        if table.index.name == id_column:
            table = table.reset_index()
        else:
            raise StudyDataError(
                f"labels table {name} has no {id_column!r} column to join on (columns:"
                f" {_list(table.columns)}); the features table is indexed by {id_column}."
                + did_you_mean(id_column, map(str, table.columns))
            )
    if target not in table.columns:
        raise StudyDataError(
            f"target column {target!r} is not in labels table {name}; its columns are:"
            f" {_list(table.columns)}." + did_you_mean(target, map(str, table.columns))
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


def _list(columns, limit: int = 30) -> str:
    cols = [str(c) for c in columns]
    return ", ".join(cols[:limit]) + (f", ... ({len(cols)} in all)" if len(cols) > limit else "")


def prepare_data(
    features,
    labels,
    target: str,
    positive=None,
    id_column: str = "ID",
    what: str = "features",
    expected_classes: tuple[str, str] | None = None,
) -> LabelledData:
    """Join features and labels, drop unusable rows, encode the target as 0/1.

    Rows dropped (each counted in ``notes`` and logged on stderr): batch error rows (non-empty
    ``diagnostics_Error``), cases absent from the labels table, cases with a blank target.

    The positive class is ``positive`` when given (other values form the negative class), else the
    larger of exactly two distinct values in sorted order (``G3`` over ``G2``, ``1`` over ``0``).
    """
    frame, name = read_table(features, what)
    if frame.index.duplicated().any():
        raise StudyDataError(
            f"{name} repeats case IDs {frame.index[frame.index.duplicated()].unique()[:5].tolist()}; keep one row per case"
        )
    notes: list[str] = []
    if naming.ERROR_COLUMN in frame.columns:
        failed = ~_is_blank(frame[naming.ERROR_COLUMN])
        if failed.any() and failed.all():
            first = frame.index[0]
            raise StudyDataError(
                f"every case of {name} ({len(frame)}) failed extraction ({naming.ERROR_COLUMN}); first: "
                f"{first}: {' '.join(str(frame.loc[first, naming.ERROR_COLUMN]).split())[:300]}. Fix the inputs and run batch again"
            )
        if failed.any():
            notes.append(f"dropped {int(failed.sum())} case(s) of {name} whose extraction failed ({naming.ERROR_COLUMN})")
            frame = frame[~failed]
    values, labels_name, absent = _labels_series(frame, labels, target, id_column, name)
    n_absent = int(absent.sum())
    if n_absent:
        notes.append(f"dropped {n_absent} case(s) of {name} that have no row in {labels_name}")
    blank = _is_blank(values)
    n_blank = int(blank.sum()) - n_absent
    if n_blank:
        notes.append(f"dropped {n_blank} of {len(values) - n_absent} case(s) of {name} with a blank {target!r} in {labels_name}")
    keep = ~blank
    frame, values = frame[keep], values[keep]
    if not len(frame):
        raise StudyDataError(f"no case of {name} is left for the study of {target!r}: " + "; ".join(notes or ["the table has no row"]))
    text = values.map(_fmt_value)
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
    elif positive is not None:
        pos = _fmt_value(positive)
        if pos not in classes:
            raise StudyDataError(
                f"--positive {positive!r} is not a value of {target!r} in {labels_name}; its values are:"
                f" {', '.join(classes)}." + did_you_mean(pos, classes)
            )
        others = [c for c in classes if c != pos]
        negative = others[0] if len(others) == 1 else "not " + pos
        if len(others) > 1:
            notes.append(f"{target!r} has {len(classes)} values; studying {pos} versus all others ({', '.join(others)})")
    else:
        if len(classes) != 2:
            raise StudyDataError(
                f"target {target!r} in {labels_name} has {len(classes)} distinct value(s)"
                f" ({', '.join(classes[:10])}); a study needs two classes, or name the positive one with"
                " --positive VALUE"
            )
        negative, pos = classes
    y = (text == pos).to_numpy().astype(int)

    feature_cols = naming.feature_columns([str(c) for c in frame.columns])
    if not feature_cols:
        raise StudyDataError(f"{name} has no feature column (<imageType>_<featureClass>_<Feature>): give a table written by `deepradiomics batch`")
    X = frame[feature_cols].apply(pd.to_numeric, errors="coerce").astype(float)
    infinite = np.isinf(X.to_numpy())
    if infinite.any():
        columns = [c for c, bad in zip(X.columns, infinite.any(axis=0)) if bad]
        notes.append(
            f"replaced {int(infinite.sum())} infinite value(s) by missing ones (imputed within each training fold) in"
            f" {len(columns)} column(s): {_list(columns, 10)}"
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
        notes.append(f"{len(empty)} feature column(s) have no value (left out by the models): {_list(empty, 10)}")
    for note in notes:
        logger.warning(note)
    covariates = case_covariates(frame)
    return LabelledData(X, y, pos, negative, notes, n_blank, covariates if len(covariates.columns) else None)


# -------------------------------------------------------------------------------------------- result
@dataclass
class StudyResult:
    """Everything a study computed; :meth:`write` turns it into a report folder.

    Attributes
    ----------
    metrics
        Tidy table ``family, model, metric, mean, sd, ci_low, ci_high, validation``.
    fold_metrics
        Per-fold metrics of the k-fold models (``family, model, repeat, fold, n_test, <metrics>``).
    comparisons
        Paired comparisons of families on AUC (``COMPARISON_COLUMNS``).
    predictions
        Out-of-fold score of every case (mean over repeats) per (family, model): columns
        ``<family>:<model>``, plus ``label``.
    external
        External-validation metrics (``EXTERNAL_COLUMNS``) or None.
    external_predictions
        Test-set scores per (family, model) plus ``label``, or None.
    responsible
        :class:`~deepradiomics.study.responsible.ResponsibleVectors` or None.
    info
        Target, classes, counts, families, settings, notes.
    """

    metrics: pd.DataFrame
    fold_metrics: pd.DataFrame
    comparisons: pd.DataFrame
    predictions: pd.DataFrame
    external: pd.DataFrame | None
    external_predictions: pd.DataFrame | None
    responsible: object | None
    info: dict
    caveats: list[str] = field(default_factory=list)
    cv: dict = field(default_factory=dict, repr=False)

    def write(self, out_dir: str | Path) -> Path:
        """Write the CSVs, figures and ``report.html`` into ``out_dir``; return the report path."""
        from .report import write_report

        return write_report(self, out_dir)


# ---------------------------------------------------------------------------------------------- run
def run_study(
    features=None,
    labels=None,
    target: str = "label",
    positive=None,
    groups: Mapping[str, Sequence[str]] | None = None,
    models: Sequence[str] = ("logistic", "dlr"),
    folds: int = 5,
    repeats: int = 5,
    seed: int = 0,
    test=None,
    test_labels=None,
    caveats: Sequence[str] = (),
    correction: str = "holm",
    responsible: bool | str = "auto",
    n_boot: int = 2000,
    id_column: str = "ID",
    *,
    manifest=None,
    params=None,
    jobs: int = 1,
    cache_dir=None,
    progress: bool = False,
) -> StudyResult:
    """Compare feature families on a binary label.

    The features come either from a table (``features``) or from images (``manifest`` + ``params``): then
    the classes that need no fit are extracted once, and fitted classes (e.g. ``fisher``'s GMM) are fitted
    inside every training fold on the training cases only and applied to the held-out fold, so that no
    test patient informs them (see :mod:`.foldwise`).

    Parameters
    ----------
    features
        Features table (CSV path or DataFrame indexed by case ID), as written by ``deepradiomics batch``.
        With ``manifest`` and ``params`` too, its columns join those extracted from the images (on the
        case ID), e.g. a fixed table next to a fold-wise fitted class.
    labels
        Labels table with an ``id_column`` column (e.g. the batch manifest); None: ``target`` is a
        column of the features table (of the manifest, for a study from images).
    target
        Label column. Rows where it is blank are dropped (logged on stderr).
    positive
        The positive class value; default: the larger of the two values.
    groups
        ``{family: [feature classes]}`` replacing the default families (see :mod:`.families`).
    models
        Any of ``"logistic"`` and ``"dlr"`` (repeated stratified k-fold) and ``"dlr-loo"`` (the DLR paper's
        leave-one-out; see :mod:`.classification` for its downward bias on weak signals).
    folds, repeats, seed
        Repeated stratified k-fold settings; identical splits for every family (paired comparisons).
    test, test_labels
        External test set: each family's model is fitted on the whole first set and scored on it, with
        exact Clopper-Pearson CIs for the proportions and stratified bootstrap CIs for AUC and MCC. ``test_labels`` defaults to ``labels``.
    caveats
        Free-text caveats about the data, printed in the report's caveats section.
    correction
        Multiple-testing correction for comparisons and responsible vectors (holm, fdr_bh, bonferroni, none).
    responsible
        ``"auto"``: find responsible vectors when a class of the table declares a histogram (class metadata
        ``histograms``, e.g. codeword counts); True: require them; False: skip.
    n_boot
        Bootstrap replicates for the AUC and MCC CIs of leave-one-out and external results.
    manifest, params
        A study from images: the batch manifest of the cases and the params file (or Params / mapping) of
        the classes to compare; ``test`` is then a manifest too (fitted classes fitted on every training case).
    jobs, cache_dir, progress
        Worker processes, the folder keeping per-case rows and descriptors (a re-run reuses them), and a
        progress bar, for a study from images.
    """
    models = [check_model(m) for m in models]
    if not models:
        raise ParamsError("no model to fit; pass at least one of " + ", ".join(MODELS))
    if folds < 2 or repeats < 1:
        raise ParamsError(f"--folds must be >= 2 and --repeats >= 1 (got {folds} and {repeats})")
    adjust_pvalues([0.5], correction)  # validates the name early
    from_images = manifest is not None or params is not None
    if from_images:
        from .foldwise import prepare_images

        data, source = prepare_images(manifest, params, labels, target, positive, id_column, jobs, cache_dir, progress, features)
    else:
        from .foldwise import FixedFeatures

        if features is None:
            raise ParamsError("no features: give a features table (from `deepradiomics batch`), or a manifest and a params file")
        data = prepare_data(features, labels, target, positive, id_column)
        source = FixedFeatures(data.features)
    families = feature_families(source.columns, groups)
    n_pos, n_neg = int(data.y.sum()), int(len(data.y) - data.y.sum())
    logger.info("study of %r: %d %s vs %d %s; families %s", target, n_pos, data.positive, n_neg, data.negative, list(families))

    cv: dict[tuple[str, str], FamilyCV] = {}
    metric_rows, fold_frames, pred_cols = [], [], {}
    for model in models:
        for family, cols in families.items():
            res = cross_validate(source.select(cols), data.y, model, family, folds, repeats, seed, n_boot)
            cv[(family, model)] = res
            for metric, row in res.summary.iterrows():
                metric_rows.append(
                    {"family": family, "model": model, "metric": metric, **row.to_dict(), "validation": res.validation}
                )
            if len(res.fold_metrics):
                fold_frames.append(res.fold_metrics.assign(family=family, model=model))
            pred_cols[f"{family}:{model}"] = np.nanmean(res.scores, axis=0)
    metrics = pd.DataFrame(metric_rows, columns=METRICS_COLUMNS)
    fold_metrics = (
        pd.concat(fold_frames, ignore_index=True)[["family", "model", "repeat", "fold", "n_test", *METRICS]]
        if fold_frames
        else pd.DataFrame(columns=["family", "model", "repeat", "fold", "n_test", *METRICS])
    )
    predictions = pd.DataFrame(pred_cols, index=data.features.index)
    predictions.insert(0, "label", np.where(data.y == 1, data.positive, data.negative))

    comparisons = compare_families(cv, data.y, correction)

    external = external_predictions = None
    if test is not None:
        reference, test_table = data, test
        if from_images:
            from dataclasses import replace

            from .foldwise import external_images

            # fitted classes fitted on every training case, applied to the test cases; labels from the test manifest
            reference = replace(data, features=source.full_table())
            test_table = external_images(source, test, params, jobs, cache_dir, progress)
            test_labels = test_labels if test_labels is not None else test
        external, external_predictions = _external(
            reference,
            families,
            models,
            test_table,
            test_labels if test_labels is not None else labels,
            target,
            id_column,
            seed,
            n_boot,
        )

    rv, rv_group = _responsible(data, responsible, correction)
    confounds = _confounds(data, families)

    all_caveats = [str(c) for c in caveats if str(c).strip()]
    info = {
        "target": target,
        "positive": data.positive,
        "negative": data.negative,
        "n_cases": len(data.y),
        "n_positive": n_pos,
        "n_negative": n_neg,
        "n_dropped_blank": data.n_dropped_blank,
        "families": {k: len(v) for k, v in families.items()},
        "family_classes": {k: sorted({naming.feature_class_of(c) for c in v}) for k, v in families.items()},
        "models": list(models),
        "folds": folds,
        "repeats": repeats,
        "seed": seed,
        "correction": correction,
        "n_boot": n_boot,
        "notes": list(data.notes),
        "features_source": features if not isinstance(features, pd.DataFrame) else "DataFrame",
        "responsible_histogram": rv_group,
    }
    if from_images:
        info["features_source"] = f"images of {manifest if not isinstance(manifest, pd.DataFrame) else 'a manifest DataFrame'} with {getattr(params, 'source', params)}"
        if features is not None:
            info["features_source"] += f", joined with {features if not isinstance(features, pd.DataFrame) else 'a features DataFrame'}"
        info["foldwise"] = {"classes": [f.name for f in source.fitted], **source.stats.as_dict()}
    if confounds is not None:
        info["confounds"] = confounds
    if test is not None:
        info["n_test"] = int(len(external_predictions))
    return StudyResult(metrics, fold_metrics, comparisons, predictions, external, external_predictions, rv, info, all_caveats, cv)


def _confounds(data: LabelledData, families: Mapping[str, Sequence[str]]) -> list[dict] | None:
    """Per family, how many features follow ROI volume / number of slices (:mod:`.confounds`), as records.

    Descriptive, over every kept case, on the columns extracted once: the columns of fitted classes in a
    study from images change with every split and are not assessed (fitting them on every case for this
    would inform them with test cases). None when the table has no covariate diagnostics.
    """
    if data.covariates is None:
        return None
    fixed = set(map(str, data.features.columns))
    assessed = {name: kept for name, cols in families.items() if (kept := [c for c in cols if c in fixed])}
    left_out = [name for name in families if name not in assessed]
    if left_out:
        data.notes.append(f"confounds not assessed for {', '.join(left_out)}: fitted inside each fold, their features differ per split")
    return confound_table(data.features, data.covariates, assessed).to_dict("records") if assessed else None


def _responsible(data: LabelledData, responsible: bool | str, correction: str):
    """Responsible vectors of the table's histogram columns (classes' ``histograms`` metadata).

    With several histograms the frequency one is preferred (it does not grow with the number of slices),
    else the first; returns (ResponsibleVectors or None, the histogram group's name or None).
    """
    from .families import histogram_groups

    groups = histogram_groups(data.features.columns)
    if responsible is True and not groups:
        raise StudyDataError("responsible vectors were requested but no class of the features table declares a histogram (e.g. codeword counts)")
    if not responsible or not groups:
        return None, None
    from .responsible import responsible_vectors

    name = next((g for g in groups if g.endswith("-frequency")), next(iter(groups)))
    if len(groups) > 1:
        data.notes.append(f"responsible vectors searched in histogram {name} (of {', '.join(groups)})")
    try:
        return responsible_vectors(data.features[groups[name]], data.y, labels=(data.negative, data.positive), correction=correction), name
    except ParamsError as exc:
        if responsible is True:
            raise
        # "auto": the classification results stand on their own; say why the explanation is missing
        data.notes.append(f"responsible vectors skipped: {exc}")
        logger.warning(data.notes[-1])
        return None, name


def compare_families(cv: Mapping[tuple[str, str], FamilyCV], y, correction: str = "holm") -> pd.DataFrame:
    """Paired AUC comparisons of every pair of families, per model.

    - k-fold models: Nadeau-Bengio corrected resampled t-test on the per-fold AUC differences (same
      splits for both families), and DeLong on the out-of-fold scores averaged over repeats;
    - leave-one-out models: DeLong on the pooled leave-one-out scores.

    p-values are adjusted (``correction``) over the pairs within each (model, test).
    """
    rows = []
    y = np.asarray(y).astype(int)
    models = list(dict.fromkeys(m for _, m in cv))
    for model in models:
        fams = [f for f, m in cv if m == model]
        for fa, fb in combinations(fams, 2):
            a, b = cv[(fa, model)], cv[(fb, model)]
            if len(a.fold_metrics):
                da, db = a.fold_metrics["AUC"].to_numpy(), b.fold_metrics["AUC"].to_numpy()
                t, p = corrected_resampled_ttest(da - db, a.test_fraction)
                rows.append(
                    {
                        "model": model,
                        "family_a": fa,
                        "family_b": fb,
                        "metric": "AUC",
                        "value_a": float(np.nanmean(da)),
                        "value_b": float(np.nanmean(db)),
                        "difference": float(np.nanmean(da - db)),
                        "test": "Nadeau-Bengio corrected t (per-fold AUC)",
                        "statistic": t,
                        "p_value": p,
                    }
                )
            d = delong_test(y, np.nanmean(a.scores, axis=0), np.nanmean(b.scores, axis=0))
            rows.append(
                {
                    "model": model,
                    "family_a": fa,
                    "family_b": fb,
                    "metric": "AUC",
                    "value_a": d["auc_a"],
                    "value_b": d["auc_b"],
                    "difference": d["difference"],
                    "test": "DeLong (pooled out-of-fold scores)",
                    "statistic": d["z"],
                    "p_value": d["p"],
                }
            )
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS[:-1])
    table["p_adjusted"] = np.nan
    for _, idx in table.groupby(["model", "test"]).groups.items():
        table.loc[idx, "p_adjusted"] = adjust_pvalues(table.loc[idx, "p_value"].to_numpy(), correction)
    return table[COMPARISON_COLUMNS]


def _external(data, families, models, test, test_labels, target, id_column, seed, n_boot):
    test_data = prepare_data(
        test,
        test_labels,
        target,
        None,
        id_column,
        what="test features",
        expected_classes=(data.negative, data.positive),
    )
    shared = test_data.features.index.astype(str).intersection(data.features.index.astype(str))
    if len(shared):
        raise StudyDataError(
            f"the test set shares {len(shared)} case ID(s) with the training set (e.g. {list(shared[:3])});"
            " an external test set must hold other patients: remove them from one of the tables"
        )
    if len(np.unique(test_data.y)) < 2:
        raise StudyDataError(
            f"the test set has only class {data.positive if test_data.y.all() else data.negative}; external"
            " AUC needs both classes"
        )
    rows, preds = [], {}
    for model in models:
        _, threshold = MODELS[model]
        for family, cols in families.items():
            missing = [c for c in cols if c not in test_data.features.columns]
            if missing:
                raise StudyDataError(
                    f"the test features table lacks {len(missing)} column(s) of family {family!r}, e.g."
                    f" {missing[:5]}; extract the test cases with the same parameter file"
                )
            _, scores = fit_and_score(data.features[cols], data.y, test_data.features[cols], model, seed)
            preds[f"{family}:{model}"] = scores
            boot = bootstrap_metrics(test_data.y, scores, threshold, n_boot=n_boot, seed=seed)
            for metric, row in boot.iterrows():
                rows.append({"family": family, "model": model, "metric": metric, **row.to_dict(), "n_cases": len(scores)})
    external = pd.DataFrame(rows, columns=EXTERNAL_COLUMNS)
    predictions = pd.DataFrame(preds, index=test_data.features.index)
    predictions.insert(0, "label", np.where(test_data.y == 1, data.positive, data.negative))
    return external, predictions
