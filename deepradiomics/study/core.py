"""``run_study``: compare feature families on a binary label and write a report folder.

>>> result = run_study("features.csv", labels="cases.csv", target="grade", positive="G3")  # doctest: +SKIP
>>> result.metrics.query("metric == 'AUC'")                                                 # doctest: +SKIP
>>> result.write("report/")                                                                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import naming
from ..errors import ParamsError, StudyDataError
from .classification import (
    DEFAULT_TAMING,
    MODELS,
    DLRProtocol,
    FamilyCV,
    Taming,
    check_model,
    cross_validate,
    dlr_protocol,
    fit_and_score,
)
from .confounds import confound_table
from .data import LabelledData, prepare_data
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
@dataclass(frozen=True)
class StudySpec:
    """What a study compares, on which cases, and how (what :func:`run_study` takes).

    Data
        ``features``: a features table (CSV/Parquet/JSON path or DataFrame indexed by case ID, as written by
        ``deepradiomics batch``). ``labels``: a labels table with an ``id_column`` column (e.g. the batch
        manifest); None: ``target`` is a column of the features table (of the manifest, for a study from
        images). ``target``: the label column (rows where it is blank are dropped); ``positive``: the
        positive class value (default: the larger of the two values).
        ``manifest`` and ``params``: a study from images (the batch manifest and the params file, Params or
        mapping of the classes to compare): the classes that need no fit are extracted once, and fitted
        classes (e.g. ``fisher``'s GMM) are fitted inside every training fold on the training cases only
        and applied to the held-out fold (see :mod:`.foldwise`); ``features`` then adds fixed columns
        joined on the case ID. ``test`` / ``test_labels``: an external test set (a manifest for a study
        from images): each family's model is fitted on the whole first set and scored on it, with exact
        Clopper-Pearson CIs for the proportions and stratified bootstrap CIs for AUC and MCC;
        ``test_labels`` defaults to ``labels`` (to the test manifest for a study from images).
    Evaluation
        ``groups``: ``{family: [feature classes]}`` replacing the default families (:mod:`.families`).
        ``models``: any of ``"logistic"``, ``"dlr"`` (repeated stratified k-fold) and ``"dlr-loo"`` (the DLR
        paper's leave-one-out; see :mod:`.classification`). ``folds``, ``repeats``, ``seed``: repeated
        stratified k-fold with identical splits for every family (paired comparisons). ``correction``: the
        multiple-testing correction of comparisons and responsible vectors (holm, fdr_bh, bonferroni, none).
        ``responsible``: ``"auto"`` (responsible vectors when a class declares a histogram), ``"project"``
        (required), ``"paper"`` (required, the VQ paper's procedure as it describes it) or ``"none"``.
        ``protocol``: the DLR pipeline's choices (:class:`~.classification.DLRProtocol`, or ``"default"`` /
        ``"paper"``: the DLR paper's, :data:`~.classification.PAPER`) for ``dlr`` and ``dlr-loo``.
        ``taming``: how every pipeline keeps near-constant columns from deciding
        (:class:`~.classification.Taming`; default :data:`~.classification.DEFAULT_TAMING`). ``n_boot``: bootstrap replicates for leave-one-out and external CIs. ``caveats``: free text
        printed in the report.
    Execution (a study from images)
        ``jobs`` worker processes, ``cache_dir`` for per-case rows and descriptors (a re-run reuses them),
        ``progress`` bars on stderr.
    """

    features: Any = None
    labels: Any = None
    target: str = "label"
    positive: Any = None
    id_column: str = "ID"
    manifest: Any = None
    params: Any = None
    test: Any = None
    test_labels: Any = None
    groups: Mapping[str, Sequence[str]] | None = None
    models: Sequence[str] = ("logistic", "dlr")
    folds: int = 5
    repeats: int = 5
    seed: int = 0
    correction: str = "holm"
    responsible: bool | str = "auto"
    n_boot: int = 2000
    caveats: Sequence[str] = ()
    protocol: DLRProtocol | str = "default"
    taming: Taming = DEFAULT_TAMING
    jobs: int = 1
    cache_dir: Any = None
    progress: bool = False

    @property
    def from_images(self) -> bool:
        """True for a study from images (a manifest and a params file)."""
        return self.manifest is not None or self.params is not None

    def check(self) -> None:
        """Refuse, before any work, what depends on the specification alone (ParamsError naming the option)."""
        for model in self.models:
            check_model(model)
        if not self.models:
            raise ParamsError("no model to fit; pass at least one of " + ", ".join(MODELS))
        if self.folds < 2 or self.repeats < 1:
            raise ParamsError(f"--folds must be >= 2 and --repeats >= 1 (got {self.folds} and {self.repeats})")
        adjust_pvalues([0.5], self.correction)  # validates the name
        if self.responsible not in (True, False, *RESPONSIBLE_CHOICES):
            raise ParamsError(f"--responsible {self.responsible!r} is not one of {', '.join(RESPONSIBLE_CHOICES)}")
        if not self.from_images and self.features is None:
            raise ParamsError("no features: give a features table (from `deepradiomics batch`), or a manifest and a params file")


def run_study(spec: StudySpec | Any = None, /, **options) -> StudyResult:
    """Compare feature families on a binary label: ``run_study(StudySpec(...))``.

    ``run_study(features, **options)`` and ``run_study(**options)`` build the :class:`StudySpec` from the
    same fields (``options`` also override the fields of a given spec). See :class:`StudySpec` for what
    each field means.
    """
    if isinstance(spec, StudySpec):
        spec = replace(spec, **options) if options else spec
    else:
        spec = StudySpec(features=spec, **options) if spec is not None else StudySpec(**options)
    spec = replace(spec, models=tuple(spec.models), protocol=dlr_protocol(spec.protocol))
    spec.check()
    data, source = _study_data(spec)
    leaks = fitted_on_study_cases(data)
    aliases = _aliases(spec, data)
    families = feature_families(source.columns, spec.groups, aliases)
    n_pos, n_neg = int(data.y.sum()), int(len(data.y) - data.y.sum())
    logger.info("study of %r: %d %s vs %d %s; families %s", spec.target, n_pos, data.positive, n_neg, data.negative, list(families))
    cv, metrics, fold_metrics, predictions = _cross_validate_families(spec, data, source, families)
    comparisons = compare_families(cv, data.y, spec.correction)
    external = external_predictions = None
    if spec.test is not None:
        external, external_predictions = _external_validation(spec, data, source, families)
    rv, rv_group = _responsible(data, spec.responsible, spec.correction, aliases)
    confounds = _confounds(data, families)
    info = _info(spec, data, families, source, rv_group)
    if confounds is not None:
        info["confounds"] = confounds
    if external_predictions is not None:
        info["n_test"] = int(len(external_predictions))
    caveats = [str(c) for c in spec.caveats if str(c).strip()]
    if leaks:
        info["leakage"] = leaks
        caveats.insert(0, _leak_caveat(leaks, len(data.y)))
    return StudyResult(metrics, fold_metrics, comparisons, predictions, external, external_predictions, rv, info, caveats, cv)


def fitted_on_study_cases(data: LabelledData) -> dict[str, list[str]]:
    """``{class: [case IDs]}`` of the study's own cases that a fitted class of the table was fitted on.

    A table extracted with a fitted class (``fisher``'s GMM) records the cases it was fitted on
    (``diagnostics_<class>_FittedOn``). Evaluated as a fixed table, every such case informed its own features
    (and its test fold's): the cross-validation is not leakage-free for that class. Each finding is also a
    warning and a note.
    """
    from ..extractor import FITTED_ON

    found: dict[str, list[str]] = {}
    table = data.diagnostics
    if table is None:
        return found
    study_ids = set(map(str, data.features.index))
    for column in table.columns:
        parts = str(column).split("_")
        if len(parts) != 3 or parts[0] != naming.DIAGNOSTICS_PREFIX or parts[2] != FITTED_ON:
            continue
        fitted_on: set[str] = set()
        for value in table[column].dropna().unique():
            try:
                fitted_on.update(map(str, json.loads(value)))
            except (TypeError, ValueError):
                continue
        shared = sorted(study_ids & fitted_on)
        if shared:
            found[parts[1]] = shared
            note = (
                f"class '{parts[1]}' of the table was fitted on {len(shared)} of the study's {len(study_ids)} cases: its columns are "
                "not leakage-free under cross-validation; study the images with --manifest --params to refit it inside every fold"
            )
            data.notes.append(note)
            logger.warning(note)
    return found


def _leak_caveat(leaks: Mapping[str, Sequence[str]], n_cases: int) -> str:
    parts = [f"{name} ({len(ids)} of {n_cases} cases)" for name, ids in leaks.items()]
    return (
        "NOT leakage-free: the table's fitted class(es) " + ", ".join(parts) + " were fitted on patients of this study, so their "
        "held-out patients informed their own features; read their results as optimistic, and study the images with "
        "--manifest --params, which refits them inside every training fold"
    )


def _aliases(spec: StudySpec, data: LabelledData) -> dict[str, str]:
    """``{token: class}`` of the table's configurations of another class (and the params' own, from images)."""
    from .families import instance_classes

    aliases = instance_classes(data.diagnostics) if data.diagnostics is not None else {}
    if spec.from_images:
        from ..params import Params, load_params

        params = spec.params if isinstance(spec.params, Params) else load_params(spec.params)
        aliases.update({name: params.class_of(name) for name in params.plugins if params.class_of(name) != name})
    return aliases


def _study_data(spec: StudySpec):
    """(LabelledData, feature source) of a study: a fixed table, or images with fold-wise fitted classes."""
    from .foldwise import FixedFeatures, prepare_images

    if spec.from_images:
        return prepare_images(
            spec.manifest, spec.params, spec.labels, spec.target, spec.positive, spec.id_column, spec.jobs, spec.cache_dir, spec.progress, spec.features
        )
    data = prepare_data(spec.features, spec.labels, spec.target, spec.positive, spec.id_column)
    return data, FixedFeatures(data.features)


def _cross_validate_families(spec: StudySpec, data: LabelledData, source, families: Mapping[str, Sequence[str]]):
    """Every (family, model) cross-validated on the same splits: (cv results, metrics, fold metrics, predictions)."""
    cv: dict[tuple[str, str], FamilyCV] = {}
    metric_rows, fold_frames, pred_cols = [], [], {}
    for model in spec.models:
        for family, cols in families.items():
            res = cross_validate(
                source.select(cols), data.y, model, family, spec.folds, spec.repeats, spec.seed, spec.n_boot, protocol=spec.protocol, taming=spec.taming
            )
            cv[(family, model)] = res
            for metric, row in res.summary.iterrows():
                metric_rows.append({"family": family, "model": model, "metric": metric, **row.to_dict(), "validation": res.validation})
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
    return cv, metrics, fold_metrics, predictions


def _external_validation(spec: StudySpec, data: LabelledData, source, families):
    """Metrics and scores of every (family, model) fitted on the study's cases and scored on the test set."""
    reference, test_table, test_labels = data, spec.test, spec.test_labels
    if spec.from_images:
        from .foldwise import external_images

        # fitted classes fitted on every training case, applied to the test cases; labels from the test manifest
        reference = replace(data, features=source.full_table())
        test_table = external_images(source, spec.test, spec.params, spec.jobs, spec.cache_dir, spec.progress)
        test_labels = test_labels if test_labels is not None else spec.test
    labels = test_labels if test_labels is not None else spec.labels
    return _external(reference, families, spec, test_table, labels)


def _info(spec: StudySpec, data: LabelledData, families, source, rv_group) -> dict:
    """The study's settings, counts, families and notes (study.json, the report)."""
    n_pos = int(data.y.sum())
    info = {
        "target": spec.target,
        "positive": data.positive,
        "negative": data.negative,
        "n_cases": len(data.y),
        "n_positive": n_pos,
        "n_negative": int(len(data.y) - n_pos),
        "n_dropped_blank": data.n_dropped_blank,
        "families": {k: len(v) for k, v in families.items()},
        "family_classes": {k: sorted({naming.feature_class_of(c) for c in v}) for k, v in families.items()},
        "models": list(spec.models),
        "folds": spec.folds,
        "repeats": spec.repeats,
        "seed": spec.seed,
        "correction": spec.correction,
        "n_boot": spec.n_boot,
        "notes": list(data.notes),
        "features_source": _describe_source(spec.features, "DataFrame"),
        "responsible_histogram": rv_group,
        "dlr_protocol": spec.protocol.describe() if any(m != "logistic" for m in spec.models) else None,
        "dlr_protocol_is_paper": spec.protocol == dlr_protocol("paper"),
        "taming": _taming_text(spec.taming),
    }
    if spec.from_images:
        info["features_source"] = f"images of {_describe_source(spec.manifest, 'a manifest DataFrame')} with {getattr(spec.params, 'source', spec.params)}"
        if spec.features is not None:
            info["features_source"] += f", joined with {_describe_source(spec.features, 'a features DataFrame')}"
        info["foldwise"] = {"classes": [f.name for f in source.fitted], **source.stats.as_dict()}
        if source.stats.not_converged:
            info["notes"].append(f"{source.stats.not_converged} of {source.stats.fits} fold-wise fits did not converge (their state after the last iteration was used)")
    return info


def _taming_text(taming: Taming) -> str:
    if taming.is_plain:
        return "exactly constant columns dropped, z-scored, not clipped"
    floor = f"columns with a training-fold spread <= {taming.floor:g} x their scale dropped" if taming.floor is not None else "exactly constant columns dropped"
    scaled = "z-scored" if taming.scaler == "zscore" else "scaled by median and IQR / 1.349"
    clipped = f", clipped at +-{taming.clip:g}" if taming.clip is not None else ", not clipped"
    return f"{floor}, {scaled}{clipped}"


def _describe_source(value, frame_name: str):
    if value is None:
        return None
    return frame_name if isinstance(value, pd.DataFrame) else value


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


#: values of ``StudySpec.responsible``: when to look for responsible vectors, and by which procedure
RESPONSIBLE_CHOICES = ("auto", "project", "paper", "none")


def _responsible(data: LabelledData, responsible: bool | str, correction: str, aliases: Mapping[str, str] | None = None):
    """Responsible vectors of the table's histogram columns (classes' ``histograms`` metadata).

    ``responsible``: ``"auto"`` (the project's procedure when a class declares a histogram), ``"project"`` or
    True (required), ``"paper"`` (required, the VQ paper's procedure on the raw counts:
    :data:`~deepradiomics.study.responsible.PAPER_DIFFERENCES`), ``"none"`` or False (skipped). With several
    histograms the project's procedure prefers the frequency one (it does not grow with the number of
    slices), the paper's the counts (the paper's histogram). Returns (ResponsibleVectors or None, the
    histogram group's name or None).
    """
    from .families import histogram_groups

    if responsible not in (True, False, *RESPONSIBLE_CHOICES):
        raise ParamsError(f"--responsible {responsible!r} is not one of {', '.join(RESPONSIBLE_CHOICES)}")
    required = responsible in (True, "project", "paper")
    procedure = "paper" if responsible == "paper" else "project"
    groups = histogram_groups(data.features.columns, aliases)
    if required and not groups:
        raise StudyDataError("responsible vectors were requested but no class of the features table declares a histogram (e.g. codeword counts)")
    if responsible in (False, "none") or not groups:
        return None, None
    from .responsible import responsible_vectors

    preferred = "-counts" if procedure == "paper" else "-frequency"
    name = next((g for g in groups if g.endswith(preferred)), next(iter(groups)))
    if len(groups) > 1:
        data.notes.append(f"responsible vectors searched in histogram {name} (of {', '.join(groups)})")
    try:
        found = responsible_vectors(
            data.features[groups[name]], data.y, labels=(data.negative, data.positive), correction=correction, procedure=procedure
        )
        return found, name
    except ParamsError as exc:
        if required:
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


def _external(data, families, spec: StudySpec, test, test_labels):
    models, target, id_column, seed, n_boot = spec.models, spec.target, spec.id_column, spec.seed, spec.n_boot
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
            _, scores = fit_and_score(data.features[cols], data.y, test_data.features[cols], model, seed, protocol=spec.protocol, taming=spec.taming)
            preds[f"{family}:{model}"] = scores
            boot = bootstrap_metrics(test_data.y, scores, threshold, n_boot=n_boot, seed=seed)
            for metric, row in boot.iterrows():
                rows.append({"family": family, "model": model, "metric": metric, **row.to_dict(), "n_cases": len(scores)})
    external = pd.DataFrame(rows, columns=EXTERNAL_COLUMNS)
    predictions = pd.DataFrame(preds, index=test_data.features.index)
    predictions.insert(0, "label", np.where(test_data.y == 1, data.positive, data.negative))
    return external, predictions
