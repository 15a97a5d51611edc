"""Robustness of every feature class to intensity scale and shift (Kobayashi et al. 2021).

Every case of a manifest is perturbed (:mod:`deepradiomics.perturb`: whole-image scale ``(1 + s) I`` and
shift ``I + s sd`` as in the paper, or the foreground-only variants) at levels s = 0, 0.1, ..., 1.0, and
every (case, perturbation) is extracted by the batch machinery like any batch: in parallel over ``jobs``
workers or a Dask cluster, resumable from ``out_dir``, with failed cases as error rows. Then:

- **every family** (classical and deep alike): per feature, ICC(2,1) (two-way random effects, absolute
  agreement, single measurement; Shrout & Fleiss 1979) and ICC(3,1) (consistency) over the cases
  (targets) x perturbation levels (raters), level 0 included, and per level the ICC(2,1) of (level 0,
  level s). Absolute agreement is the headline: a perturbation that moves a feature by the same amount in
  every case is a real loss of reproducibility, which the consistency form ignores;
- **histogram classes** (classes declaring ``histograms``, e.g. codeword counts): the paper's difference
  ratio ``sum_k |h_k - h0_k| / sum_k h0_k`` per case and level (h0: unperturbed), mean and sd over cases;
- **classification** (optional, with labels): for each family, the study's pipeline
  (:func:`deepradiomics.study.classification.make_pipeline`, default ``logistic``) is trained in stratified
  k-fold cross-validation on *unperturbed* features and scores the held-out cases' *perturbed* features;
  the metrics of the pooled out-of-fold scores per level (AUC, accuracy, sensitivity, specificity, PPV,
  NPV, ...) show the degradation. Labels are read and encoded by the study's own label handling.

A case whose extraction failed at any level is left out of that family's statistics (and listed).

Examples
--------
>>> result = run_robustness("params/combined.yaml", "cases.csv", jobs=2, out_dir="cache/")  # doctest: +SKIP
>>> result.icc_summary  # doctest: +SKIP
>>> result.write("robustness_out/")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ParamsError, RobustnessDataError
from ..perturb import DEFAULT_LEVELS, KINDS, REGIONS, parse_levels, perturbation
from .statistics import icc, icc_many  # noqa: F401 (icc re-exported)

logger = logging.getLogger("deepradiomics.study.robustness")

#: column of the expanded manifest holding the original case ID
CASE_COLUMN = "Case"


def histogram_ratio(h, h0) -> np.ndarray:
    """``sum_k |h_k - h0_k| / sum_k h0_k`` of histograms (last axis = bins); NaN where ``h0`` is empty."""
    h, h0 = np.asarray(h, dtype=np.float64), np.asarray(h0, dtype=np.float64)
    total = h0.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.abs(h - h0).sum(axis=-1) / np.where(total > 0, total, 1.0), np.nan)


# ---------------------------------------------------------------------------------------------- result
@dataclass
class RobustnessResult:
    """Tables of :func:`run_robustness` (see :meth:`write` for the files).

    ``features``: one row per (case, kind, level), the extracted table; ``icc``: one row per (feature,
    kind); ``icc_summary``: per family and kind, the median ICC(2,1) over features and the fraction >= 0.9;
    ``pairwise``: per family, kind and level, the median ICC(2,1) of (level 0, level s);
    ``histogram_ratios``: per case, histogram, kind and level; ``histogram_summary``: their mean and sd;
    ``classification``: per family, kind and level, the metrics of the perturbed out-of-fold scores;
    ``combined``: the per-level summary of all of these.
    """

    levels: list[float]
    kinds: list[str]
    region: str
    features: pd.DataFrame
    icc: pd.DataFrame
    icc_summary: pd.DataFrame
    pairwise: pd.DataFrame
    histogram_ratios: pd.DataFrame
    histogram_summary: pd.DataFrame
    classification: pd.DataFrame | None
    combined: pd.DataFrame
    failed: list[tuple[str, str]] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def write(self, out_dir: str | os.PathLike) -> Path:
        """``robustness.csv`` (per level), ``icc.csv``, ``icc_summary.csv``, ``icc_pairwise.csv``,
        ``histogram_ratios.csv``, ``histogram_summary.csv``, ``classification.csv`` (with labels),
        ``features.csv`` (every extracted row), ``robustness.png``, ``timing.csv``, ``notes.txt``."""
        from ..io import write_table

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.combined.to_csv(out / "robustness.csv", index=False)
        self.icc.to_csv(out / "icc.csv", index=False)
        self.icc_summary.to_csv(out / "icc_summary.csv", index=False)
        self.pairwise.to_csv(out / "icc_pairwise.csv", index=False)
        self.histogram_ratios.to_csv(out / "histogram_ratios.csv", index=False)
        self.histogram_summary.to_csv(out / "histogram_summary.csv", index=False)
        if self.classification is not None:
            self.classification.to_csv(out / "classification.csv", index=False)
        write_table(self.features, out / "features.csv")
        pd.DataFrame([self.timing]).to_csv(out / "timing.csv", index=False)
        (out / "notes.txt").write_text("\n".join(self.notes) + ("\n" if self.notes else ""))
        plot_robustness(self, out / "robustness.png")
        return out


def plot_robustness(result: RobustnessResult, path: str | os.PathLike) -> Path:
    """Histogram ratio vs level, per-family ICC(2,1) distributions, AUC vs level."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = 2 + (result.classification is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 3.8), dpi=110)
    ax = axes[0]
    if len(result.histogram_summary):
        for (group, kind), frame in result.histogram_summary.groupby(["histogram", "kind"], sort=False):
            ax.errorbar(frame["level"], frame["ratio_mean"], yerr=frame["ratio_sd"], marker="o", ms=3, capsize=2, label=f"{group} {kind}")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no histogram class in params", ha="center", transform=ax.transAxes)
    ax.set_xlabel("perturbation level s")
    ax.set_ylabel("sum|h - h0| / sum h0 (mean ± sd)")
    ax.set_title("histogram difference ratio", fontsize=9)
    ax = axes[1]
    data, names = [], []
    for (family, kind), frame in result.icc.groupby(["family", "kind"], sort=False):
        values = frame["icc21"].dropna().to_numpy()
        data.append(values)
        names.append(f"{family}\n{kind} (n={values.size})")
    if data:
        ax.boxplot(data)
        ax.set_xticks(range(1, len(names) + 1), names, fontsize=6, rotation=30)
    ax.axhline(0.9, color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(0.75, color="grey", linestyle=":", linewidth=0.8)
    ax.set_ylabel("ICC(2,1) across levels")
    ax.set_title("per-feature ICC by family", fontsize=9)
    if result.classification is not None:
        ax = axes[2]
        for (family, kind), frame in result.classification.groupby(["family", "kind"], sort=False):
            ax.plot(frame["level"], frame["AUC"], marker="o", ms=3, label=f"{family} {kind}")
        ax.set_xlabel("perturbation level s")
        ax.set_ylabel("out-of-fold AUC")
        ax.set_title("classification on perturbed features", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- pieces
def _expanded_manifest(frame: pd.DataFrame, kinds: Sequence[str], levels: Sequence[float], region: str) -> tuple[pd.DataFrame, dict]:
    """One manifest row per (case, perturbation) and the transforms of each; level 0 once per case."""
    perturbations = [("scale", 0.0)] + [(kind, level) for kind in kinds for level in levels if level != 0]
    rows, transforms = [], {}
    for record in frame.to_dict(orient="records"):
        for kind, level in perturbations:
            transform = perturbation(kind, level, region)
            row_id = f"{record['ID']}|{transform.describe()}"
            rows.append({**record, "ID": row_id, CASE_COLUMN: record["ID"], "perturbation": kind if level else "none", "level": level})
            transforms[row_id] = (transform,)
    return pd.DataFrame(rows), transforms


def _cube(table: pd.DataFrame, cases: list[str], kind: str, levels: Sequence[float], columns: list[str]) -> np.ndarray:
    """(cases, levels, features) values of one kind, level 0 taken from the unperturbed rows."""
    slices = []
    for level in levels:
        rows = table[(table["level"] == 0)] if level == 0 else table[(table["perturbation"] == kind) & (table["level"] == level)]
        slices.append(rows.set_index(CASE_COLUMN).reindex(cases)[columns].to_numpy(dtype=np.float64))
    return np.stack(slices, axis=1)


def _icc_tables(table, cases, families, kinds, levels):
    icc_rows, summary_rows, pair_rows = [], [], []
    for family, columns in families.items():
        for kind in kinds:
            cube = _cube(table, cases, kind, levels, columns)
            finite = np.isfinite(cube).all(axis=(0, 1))
            result = icc_many(np.where(np.isfinite(cube), cube, 0.0))
            for j, name in enumerate(columns):
                note = "non-finite values" if not finite[j] else ("no variance across cases and levels" if not np.isfinite(result["icc21"][j]) else "")
                icc_rows.append(
                    {
                        "feature": name,
                        "family": family,
                        "kind": kind,
                        "icc21": float(result["icc21"][j]) if finite[j] else np.nan,
                        "icc31": float(result["icc31"][j]) if finite[j] else np.nan,
                        "n_cases": len(cases),
                        "n_levels": len(levels),
                        "note": note,
                    }
                )
            values = np.where(finite, result["icc21"], np.nan)
            kept = values[np.isfinite(values)]
            summary_rows.append(
                {
                    "family": family,
                    "kind": kind,
                    "n_features": len(columns),
                    "n_with_icc": int(kept.size),
                    "icc21_median": float(np.median(kept)) if kept.size else np.nan,
                    "fraction_icc21_ge_0.9": float(np.mean(kept >= 0.9)) if kept.size else np.nan,
                    "fraction_icc21_ge_0.75": float(np.mean(kept >= 0.75)) if kept.size else np.nan,
                }
            )
            for i, level in enumerate(levels):
                if level == 0:
                    continue
                pair = icc_many(cube[:, [0, i], :][:, :, finite])["icc21"]
                pair = pair[np.isfinite(pair)]
                pair_rows.append(
                    {
                        "family": family,
                        "kind": kind,
                        "level": level,
                        "icc21_median": float(np.median(pair)) if pair.size else np.nan,
                        "fraction_icc21_ge_0.9": float(np.mean(pair >= 0.9)) if pair.size else np.nan,
                    }
                )
    return pd.DataFrame(icc_rows), pd.DataFrame(summary_rows), pd.DataFrame(pair_rows)


def _histogram_tables(table, cases, groups, kinds, levels):
    rows = []
    for group, columns in groups.items():
        for kind in kinds:
            cube = _cube(table, cases, kind, levels, columns)
            ratios = histogram_ratio(cube, cube[:, :1, :])  # (cases, levels)
            for c, case in enumerate(cases):
                for i, level in enumerate(levels):
                    rows.append({"ID": case, "histogram": group, "kind": kind, "level": level, "ratio": float(ratios[c, i])})
    ratios = pd.DataFrame(rows, columns=["ID", "histogram", "kind", "level", "ratio"])
    summary = (
        ratios.groupby(["histogram", "kind", "level"], sort=False)["ratio"]
        .agg(ratio_mean="mean", ratio_sd="std", ratio_max="max", n_cases="count")
        .reset_index()
    )
    return ratios, summary


def _classification(table, cases, families, kinds, levels, labels, target, positive, model, folds, seed, id_column):
    """Out-of-fold metrics per family, kind and level of a model trained on unperturbed features."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from .classification import MODELS, check_model, decision_scores, make_pipeline
    from .data import prepare_data
    from .statistics import METRICS, binary_metrics

    check_model(model)
    base = table[table["level"] == 0].set_index(CASE_COLUMN).reindex(cases)
    data = prepare_data(base, labels, target, positive, id_column)
    ids = list(data.features.index)
    y = data.y
    smaller = int(min(y.sum(), len(y) - y.sum()))
    if smaller < 2:
        raise RobustnessDataError(
            f"classification needs at least 2 cases of each class among the {len(y)} labelled cases (smaller class: {smaller}): "
            "use more cases or another target"
        )
    splitter = StratifiedKFold(n_splits=min(folds, smaller), shuffle=True, random_state=seed)
    _, threshold = MODELS[model]
    rows = []
    for family, columns in families.items():
        unperturbed = _cube(table, ids, "scale", [0.0], columns)[:, 0, :]
        scores = {(kind, level): np.full(len(y), np.nan) for kind in kinds for level in levels}
        for train, test in splitter.split(unperturbed, y):
            fitted = clone(make_pipeline(model, seed=seed)).fit(unperturbed[train], y[train])
            for kind in kinds:
                cube = _cube(table, [ids[i] for i in test], kind, levels, columns)
                for i, level in enumerate(levels):
                    scores[(kind, level)][test] = decision_scores(fitted, cube[:, i, :])
        for kind in kinds:
            for level in levels:
                metrics = binary_metrics(y, scores[(kind, level)], threshold)
                rows.append({"family": family, "kind": kind, "level": level, **{m: metrics[m] for m in METRICS}, "n_cases": len(y), "folds": splitter.n_splits})
    frame = pd.DataFrame(rows)
    frame["AUC_change"] = frame["AUC"] - frame.groupby(["family", "kind"])["AUC"].transform("first")
    return frame, data.notes, (data.positive, data.negative)


def _combined(kinds, levels, pairwise, histogram_summary, classification):
    combined = pd.DataFrame([{"kind": kind, "level": level} for kind in kinds for level in levels])
    if len(histogram_summary):
        wide = histogram_summary.pivot_table(index=["kind", "level"], columns="histogram", values=["ratio_mean", "ratio_sd"])
        wide.columns = [f"{group}_{metric}" for metric, group in wide.columns]
        combined = combined.merge(wide.reset_index(), on=["kind", "level"], how="left")
    if len(pairwise):
        wide = pairwise.pivot_table(index=["kind", "level"], columns="family", values="icc21_median")
        wide.columns = [f"{family}_icc21_median" for family in wide.columns]
        combined = combined.merge(wide.reset_index(), on=["kind", "level"], how="left")
    if classification is not None:
        wide = classification.pivot_table(index=["kind", "level"], columns="family", values=["AUC", "AUC_change", "accuracy"])
        wide.columns = [f"{family}_{metric}" for metric, family in wide.columns]
        combined = combined.merge(wide.reset_index(), on=["kind", "level"], how="left")
    return combined


# ---------------------------------------------------------------------------------------------- main
def run_robustness(
    params,
    manifest,
    *,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[float] | str = DEFAULT_LEVELS,
    region: str = "image",
    limit: int | None = None,
    labels=None,
    target: str | None = None,
    positive=None,
    model: str = "logistic",
    folds: int = 5,
    seed: int = 0,
    groups: Mapping[str, Sequence[str]] | None = None,
    jobs: int = 1,
    scheduler: str = "processes",
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
    id_column: str = "ID",
) -> RobustnessResult:
    """Scale and shift sweeps of every case of ``manifest`` for every class of ``params``.

    Parameters
    ----------
    params
        Params file, mapping or :class:`~deepradiomics.extractor.Extractor` (fitted classes fitted).
    manifest
        Batch manifest (CSV path or DataFrame).
    kinds, levels, region
        ``scale``/``shift``; levels s (0 always included); ``image`` (whole image, the paper's) or
        ``foreground`` (voxels > 0 only). See :mod:`deepradiomics.perturb`.
    limit
        Use only the first ``limit`` cases.
    labels, target, positive, model, folds, seed
        Optional classification degradation: the label column ``target`` of a labels table with ``id_column``
        (or of the manifest itself when ``labels`` is None), the positive class, the study model
        (``logistic``, ``dlr``) and CV folds.
    groups
        Study families to use instead of the defaults (see :func:`deepradiomics.study.feature_families`).
    jobs, scheduler, out_dir, progress
        As for :func:`deepradiomics.batch.run_tasks`: workers, Dask, resume folder, progress bar.
    """
    from ..batch import failures, read_manifest, run_batch
    from ..extractor import Extractor
    from .families import feature_families, histogram_groups

    started = time.perf_counter()
    kinds = list(kinds)
    for kind in kinds:
        perturbation(kind, 0.0)  # validates the kind
    if region not in REGIONS:
        raise ParamsError(f"region '{region}' is not one of {', '.join(REGIONS)}")
    levels = parse_levels(levels)
    if labels is not None and target is None:
        raise ParamsError("labels were given without a target column: name the label column with target (--target)")
    extractor = Extractor.of(params)
    frame, base = read_manifest(manifest)
    if limit is not None:
        if limit < 2:
            raise ParamsError(f"--limit {limit}: at least 2 cases are needed for an ICC")
        frame = frame.iloc[:limit]
    if len(frame) < 2:
        raise RobustnessDataError(f"the manifest holds {len(frame)} case(s): at least 2 are needed")
    expanded, transforms = _expanded_manifest(frame, kinds, levels, region)
    task = extractor.batch_task(transforms=transforms)
    table = run_batch(task, expanded, jobs=jobs, out_dir=out_dir, progress=progress, base_dir=base, scheduler=scheduler)
    failed = failures(table)
    bad = sorted({table.loc[i, CASE_COLUMN] for i, _ in failed})
    cases = [c for c in frame["ID"] if c not in bad]
    notes = [f"perturbation region: {region} ({'the whole image, as in the paper' if region == 'image' else 'voxels > 0 only'}); levels {levels}"]
    if bad:
        notes.append(f"{len(bad)} case(s) failed at some level and are left out: " + "; ".join(f"{i}: {m}" for i, m in failed[:5]))
    if len(cases) < 2:
        raise RobustnessDataError(f"only {len(cases)} case(s) extracted at every level: at least 2 are needed; first failure: {failed[0][1] if failed else ''}")
    families = feature_families(table.columns, groups)
    per_feature = {k: v for k, v in families.items() if k != "all"} or families  # "all" would repeat every feature
    icc_table, icc_summary, pairwise = _icc_tables(table, cases, per_feature, kinds, levels)
    ratios, ratio_summary = _histogram_tables(table, cases, histogram_groups(table.columns), kinds, levels)
    classification = None
    if target is not None:  # the target is a column of the labels table, or of the manifest (it passes through)
        classification, label_notes, (pos, neg) = _classification(table, cases, families, kinds, levels, labels, target, positive, model, folds, seed, id_column)
        notes.extend(label_notes)
        notes.append(f"classification: {model} trained on unperturbed features in stratified CV, {target} = {pos} vs {neg}")
    combined = _combined(kinds, levels, pairwise, ratio_summary, classification)
    timing = {
        "cases": len(frame),
        "extractions": len(expanded),
        "jobs": jobs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return RobustnessResult(
        levels=levels,
        kinds=kinds,
        region=region,
        features=table,
        icc=icc_table,
        icc_summary=icc_summary,
        pairwise=pairwise,
        histogram_ratios=ratios,
        histogram_summary=ratio_summary,
        classification=classification,
        combined=combined,
        failed=failed,
        timing=timing,
        notes=notes,
    )

