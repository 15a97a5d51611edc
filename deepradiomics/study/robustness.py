"""Robustness of every feature class to intensity scale and shift (Kobayashi et al. 2021).

Every case of a manifest is perturbed (:mod:`deepradiomics.perturb`: scale ``(1 + s) x`` and shift
``x + s sd`` of the whole image/input as in the paper, or the foreground-only variants) at levels s = 0,
0.1, ..., 1.0, in one of two **domains** per class:

- ``input`` (the paper's definition: it perturbed "pixel intensities that were standardized through
  Z-score normalization", i.e. the network's input): the class perturbs the values it actually consumes,
  after its own preprocessing (vqhist, fisher: the z-scored, resized slices; cnn: the patches scaled to
  [-127.5, 127.5]); only classes declaring ``FeatureClass.network_input`` can;
- ``image``: the raw image is perturbed when it is read (what a classical study perturbs). A class that
  normalises its input undoes a whole-image scale (a z-scored input changes only by float rounding) and
  sees a whole-image shift as one step whatever s is: that is the raw-image robustness, not the paper's.

``domain="auto"`` (default) gives ``input`` to every class that can perturb its own network input and
``image`` to the others (the classical classes); ``domain="input"`` refuses a params file with a class that
cannot, before any case runs. The classes of each domain are extracted by the batch machinery like any
batch (one batch per domain, each with only that domain's classes): in parallel over ``jobs`` workers or
a Dask cluster, resumable from ``out_dir`` (the cache key holds every transform, domain included), with
failed cases as error rows. Then:

- **every family** (classical and deep alike): per feature, ICC(2,1) (two-way random effects, absolute
  agreement, single measurement; Shrout & Fleiss 1979) and ICC(3,1) (consistency) over the cases
  (targets) x perturbation levels (raters), level 0 included, and per level the ICC(2,1) of (level 0,
  level s). Absolute agreement is the headline: a perturbation that moves a feature by the same amount in
  every case is a real loss of reproducibility, which the consistency form ignores;
- **histogram classes** (classes declaring ``histograms``, e.g. codeword counts): the paper's difference
  ratio ``sum_k |h_k - h0_k| / sum_k h0_k`` (its Eq. 7) per case and level (h0: unperturbed), mean and
  sd over cases (the paper's Fig. 4a,b shows its mean and sd against s);
- **classification** (optional, with labels): for each family, the study's pipeline
  (:func:`deepradiomics.study.classification.make_pipeline`, default ``logistic``) is trained in stratified
  k-fold cross-validation on *unperturbed* features and scores the held-out cases' *perturbed* features;
  the metrics of the pooled out-of-fold scores per level (AUC, accuracy, sensitivity, specificity, PPV,
  NPV, ...) show the degradation. Labels are read and encoded by the study's own label handling.

Every feature column is read from the rows of its class's domain; each table says the domain of each
row (a family mixing classes of both domains, e.g. ``all``, is ``image+input``).
A case whose extraction failed at any level is left out of that family's statistics (and listed).

Examples
--------
>>> result = run_robustness("params/combined.yaml", "cases.csv", jobs=2, out_dir="cache/")  # doctest: +SKIP
>>> result.domains  # doctest: +SKIP
{'firstorder': 'image', ..., 'vqhist': 'input'}
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
from ..naming import ERROR_COLUMN, feature_class_of, is_diagnostic, is_feature
from ..perturb import DEFAULT_LEVELS, DOMAINS, KINDS, REGIONS, parse_levels, perturbation
from .statistics import icc, icc_many  # noqa: F401 (icc re-exported)

logger = logging.getLogger("deepradiomics.study.robustness")

#: column of the expanded manifest holding the original case ID
CASE_COLUMN = "Case"
#: column of the expanded manifest (and of every table) holding the domain of the perturbation
DOMAIN_COLUMN = "domain"
#: what ``domain`` accepts: ``auto`` resolves to ``input`` where a class can perturb its network input
DOMAIN_CHOICES = ("auto", "input", "image")
#: what each domain perturbs (domains.csv, notes)
DOMAIN_MEANING = {
    "input": "the network input the class forms, after its own preprocessing (the VQ paper's definition)",
    "image": "the raw image as read, before any preprocessing of the class (what a classical study perturbs)",
}


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

    ``domain``: the requested domain (``auto``, ``input`` or ``image``); ``domains``: ``{class: domain}``
    as used; ``features``: one row per (case, domain, kind, level), the extracted table (each domain's rows
    hold the columns of that domain's classes); ``icc``: one row per (feature, kind); ``icc_summary``: per
    family and kind, the median ICC(2,1) over features and the fraction >= 0.9; ``pairwise``: per family,
    kind and level, the median ICC(2,1) of (level 0, level s); ``histogram_ratios``: per case, histogram,
    kind and level; ``histogram_summary``: their mean and sd; ``classification``: per family, kind and
    level, the metrics of the perturbed out-of-fold scores; ``combined``: the per-(domain, kind, level)
    summary of all of these. Every table but ``features`` has a ``domain`` column.
    """

    levels: list[float]
    kinds: list[str]
    region: str
    domain: str
    domains: dict[str, str]
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

    def domain_table(self) -> pd.DataFrame:
        """One row per class: its domain and what that domain perturbs (``domains.csv``)."""
        rows = [{"class": name, "domain": domain, "perturbs": DOMAIN_MEANING[domain]} for name, domain in self.domains.items()]
        return pd.DataFrame(rows, columns=["class", "domain", "perturbs"])

    def write(self, out_dir: str | os.PathLike) -> Path:
        """``robustness.csv`` (per domain, kind and level), ``domains.csv`` (each class's domain), ``icc.csv``,
        ``icc_summary.csv``, ``icc_pairwise.csv``, ``histogram_ratios.csv``, ``histogram_summary.csv``,
        ``classification.csv`` (with labels), ``features.csv`` (every extracted row), ``robustness.png``
        (dose-response: difference ratio and median ICC against s per family), ``timing.csv``, ``notes.txt``."""
        from ..io import write_table

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.combined.to_csv(out / "robustness.csv", index=False)
        self.domain_table().to_csv(out / "domains.csv", index=False)
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
    """Dose-response panels: histogram difference ratio vs s (mean ± sd over cases), median pairwise
    ICC(2,1) (level 0 vs level s) vs s per family, per-feature ICC(2,1) distributions, AUC vs s.
    Every curve is labelled with its family, kind and domain."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = 3 + (result.classification is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 3.9), dpi=110)
    ax = axes[0]
    if len(result.histogram_summary):
        for (group, kind, domain), frame in result.histogram_summary.groupby(["histogram", "kind", DOMAIN_COLUMN], sort=False):
            ax.errorbar(frame["level"], frame["ratio_mean"], yerr=frame["ratio_sd"], marker="o", ms=3, capsize=2, label=f"{group} {kind} ({domain})")
        ax.legend(fontsize=6)
    else:
        ax.text(0.5, 0.5, "no histogram class in params", ha="center", transform=ax.transAxes)
    ax.set_xlabel("perturbation level s")
    ax.set_ylabel("sum|h - h0| / sum h0 (mean ± sd)")
    ax.set_title("histogram difference ratio", fontsize=9)
    ax = axes[1]
    for (family, kind, domain), frame in result.pairwise.groupby(["family", "kind", DOMAIN_COLUMN], sort=False):
        ax.plot(frame["level"], frame["icc21_median"], marker="o", ms=3, label=f"{family} {kind} ({domain})")
    if len(result.pairwise):
        ax.legend(fontsize=6)
    ax.axhline(0.9, color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(0.75, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("perturbation level s")
    ax.set_ylabel("median ICC(2,1), level 0 vs level s")
    ax.set_title("agreement with the unperturbed features", fontsize=9)
    ax = axes[2]
    data, names = [], []
    for (family, kind, domain), frame in result.icc.groupby(["family", "kind", DOMAIN_COLUMN], sort=False):
        values = frame["icc21"].dropna().to_numpy()
        data.append(values)
        names.append(f"{family} {kind}\n{domain} (n={values.size})")
    if data:
        ax.boxplot(data)
        ax.set_xticks(range(1, len(names) + 1), names, fontsize=6, rotation=30)
    ax.axhline(0.9, color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(0.75, color="grey", linestyle=":", linewidth=0.8)
    ax.set_ylabel("ICC(2,1) across all levels")
    ax.set_title("per-feature ICC by family", fontsize=9)
    if result.classification is not None:
        ax = axes[3]
        for (family, kind, domain), frame in result.classification.groupby(["family", "kind", DOMAIN_COLUMN], sort=False):
            ax.plot(frame["level"], frame["AUC"], marker="o", ms=3, label=f"{family} {kind} ({domain})")
        ax.set_xlabel("perturbation level s")
        ax.set_ylabel("out-of-fold AUC")
        ax.set_title("classification on perturbed features", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- domains
def class_domains(extractor, domain: str = "auto") -> dict[str, str]:
    """``{class token: "input" | "image"}`` for every class of the extractor's params, in params order.

    ``auto``: ``input`` for the classes that declare ``network_input`` (they perturb their own network
    input), ``image`` for the others; ``input``: every class, ParamsError naming the first that cannot;
    ``image``: every class. Raised before any case runs.
    """
    if domain not in DOMAIN_CHOICES:
        raise ParamsError(f"domain '{domain}' is not one of {', '.join(DOMAIN_CHOICES)} (--domain)")
    params = extractor.params
    plugins = extractor.plugin_classes
    domains = {}
    for name in params.class_order:
        capable = name in plugins and bool(plugins[name].network_input)
        if domain == "input" and not capable:
            why = "PyRadiomics computes it from the image" if name not in plugins else f"class '{plugins[name].name}' does not declare network_input"
            raise ParamsError(
                f"--domain input: featureClass '{name}' of {params.source} cannot perturb its own network input ({why}); "
                f"valid domains: auto (input where a class can, image for the others), input, image"
            )
        domains[name] = "input" if capable and domain != "image" else "image"
    return domains


def _domain_extractor(extractor, names: Sequence[str], domain: str):
    """An extractor of the classes ``names`` only (``extractor`` itself when they are all its classes).

    Classes fitted in memory (not from an artifact) hand their fitted state over to the new instance.
    """
    from ..extractor import Extractor
    from ..params import load_params

    params = extractor.params
    if list(names) == list(params.class_order):
        return extractor
    data = params.to_dict()
    data["featureClass"] = {name: value for name, value in data["featureClass"].items() if name in names}
    sub = Extractor(load_params(data, name=f"{params.source} ({domain}-domain classes)", base_dir=params.base_dir))
    for name, feature_class in sub.plugin_classes.items():
        original = extractor.plugin_classes[name]
        state = original.fitted_state() if original.requires_fit else None
        if state is not None:
            feature_class.set_fitted_state(state)
            for attribute in ("fitted_sha256_", "fitted_on_"):
                if hasattr(original, attribute):
                    setattr(feature_class, attribute, getattr(original, attribute))
    return sub


def _column_domains(columns: Sequence[str], domains: Mapping[str, str]) -> dict[str, str]:
    return {c: domains.get(feature_class_of(c), "image") for c in columns}


def _family_domain(columns: Sequence[str], column_domains: Mapping[str, str]) -> str:
    """The domain of a family's columns: one domain, or ``image+input`` for a family mixing both."""
    present = [d for d in DOMAINS if any(column_domains[c] == d for c in columns)]
    return "+".join(present)


# ---------------------------------------------------------------------------------------------- pieces
def _expanded_manifest(frame: pd.DataFrame, kinds: Sequence[str], levels: Sequence[float], region: str, domain: str) -> tuple[pd.DataFrame, dict]:
    """One manifest row per (case, perturbation) of ``domain`` and the transforms of each; level 0 once per case."""
    perturbations = [("scale", 0.0)] + [(kind, level) for kind in kinds for level in levels if level != 0]
    rows, transforms = [], {}
    for record in frame.to_dict(orient="records"):
        for kind, level in perturbations:
            transform = perturbation(kind, level, region, domain)
            row_id = f"{record['ID']}|{transform.describe()}"
            rows.append(
                {**record, "ID": row_id, CASE_COLUMN: record["ID"], DOMAIN_COLUMN: domain, "perturbation": kind if level else "none", "level": level}
            )
            transforms[row_id] = (transform,)
    return pd.DataFrame(rows), transforms


def _cube(table: pd.DataFrame, cases: list[str], kind: str, levels: Sequence[float], columns: list[str], column_domains: Mapping[str, str]) -> np.ndarray:
    """(cases, levels, features) values of one kind, each column read from the rows of its domain, level 0
    from that domain's unperturbed rows."""
    out = np.full((len(cases), len(levels), len(columns)), np.nan)
    for domain in dict.fromkeys(column_domains[c] for c in columns):
        positions = [j for j, c in enumerate(columns) if column_domains[c] == domain]
        chosen = [columns[j] for j in positions]
        rows = table[table[DOMAIN_COLUMN] == domain]
        for i, level in enumerate(levels):
            at = rows[rows["level"] == 0] if level == 0 else rows[(rows["perturbation"] == kind) & (rows["level"] == level)]
            out[:, i, positions] = at.set_index(CASE_COLUMN).reindex(cases)[chosen].to_numpy(dtype=np.float64)
    return out


def _icc_tables(table, cases, families, kinds, levels, column_domains):
    icc_rows, summary_rows, pair_rows = [], [], []
    for family, columns in families.items():
        domain = _family_domain(columns, column_domains)
        for kind in kinds:
            cube = _cube(table, cases, kind, levels, columns, column_domains)
            finite = np.isfinite(cube).all(axis=(0, 1))
            result = icc_many(np.where(np.isfinite(cube), cube, 0.0))
            for j, name in enumerate(columns):
                note = "non-finite values" if not finite[j] else ("no variance across cases and levels" if not np.isfinite(result["icc21"][j]) else "")
                icc_rows.append(
                    {
                        "feature": name,
                        "family": family,
                        DOMAIN_COLUMN: column_domains[name],
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
                    DOMAIN_COLUMN: domain,
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
                        DOMAIN_COLUMN: domain,
                        "kind": kind,
                        "level": level,
                        "icc21_median": float(np.median(pair)) if pair.size else np.nan,
                        "fraction_icc21_ge_0.9": float(np.mean(pair >= 0.9)) if pair.size else np.nan,
                    }
                )
    return pd.DataFrame(icc_rows), pd.DataFrame(summary_rows), pd.DataFrame(pair_rows)


def _histogram_tables(table, cases, groups, kinds, levels, column_domains):
    rows = []
    for group, columns in groups.items():
        domain = _family_domain(columns, column_domains)
        for kind in kinds:
            cube = _cube(table, cases, kind, levels, columns, column_domains)
            ratios = histogram_ratio(cube, cube[:, :1, :])  # (cases, levels)
            for c, case in enumerate(cases):
                for i, level in enumerate(levels):
                    rows.append({"ID": case, "histogram": group, DOMAIN_COLUMN: domain, "kind": kind, "level": level, "ratio": float(ratios[c, i])})
    ratios = pd.DataFrame(rows, columns=["ID", "histogram", DOMAIN_COLUMN, "kind", "level", "ratio"])
    summary = (
        ratios.groupby(["histogram", DOMAIN_COLUMN, "kind", "level"], sort=False)["ratio"]
        .agg(ratio_mean="mean", ratio_sd="std", ratio_max="max", n_cases="count")
        .reset_index()
    )
    return ratios, summary


def _classification(table, cases, families, kinds, levels, labels, target, positive, model, folds, seed, id_column, column_domains):
    """Out-of-fold metrics per family, kind and level of a model trained on unperturbed features."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from .classification import MODELS, check_model, decision_scores, make_pipeline
    from .data import prepare_data
    from .statistics import METRICS, binary_metrics

    check_model(model)
    first = next(iter(dict.fromkeys(column_domains.values())), "image")  # any domain's level-0 rows carry the labels
    base = table[(table["level"] == 0) & (table[DOMAIN_COLUMN] == first)].set_index(CASE_COLUMN).reindex(cases)
    base = base[[c for c in base.columns if not (is_feature(c) and not is_diagnostic(c))]]  # labels only: features come from _cube
    data = prepare_data(base, labels, target, positive, id_column, require_features=False)
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
        domain = _family_domain(columns, column_domains)
        unperturbed = _cube(table, ids, "scale", [0.0], columns, column_domains)[:, 0, :]
        scores = {(kind, level): np.full(len(y), np.nan) for kind in kinds for level in levels}
        for train, test in splitter.split(unperturbed, y):
            fitted = clone(make_pipeline(model, seed=seed)).fit(unperturbed[train], y[train])
            for kind in kinds:
                cube = _cube(table, [ids[i] for i in test], kind, levels, columns, column_domains)
                for i, level in enumerate(levels):
                    scores[(kind, level)][test] = decision_scores(fitted, cube[:, i, :])
        for kind in kinds:
            for level in levels:
                metrics = binary_metrics(y, scores[(kind, level)], threshold)
                rows.append(
                    {"family": family, DOMAIN_COLUMN: domain, "kind": kind, "level": level, **{m: metrics[m] for m in METRICS}, "n_cases": len(y), "folds": splitter.n_splits}
                )
    frame = pd.DataFrame(rows)
    frame["AUC_change"] = frame["AUC"] - frame.groupby(["family", "kind"])["AUC"].transform("first")
    return frame, data.notes, (data.positive, data.negative)


def _wide(frame: pd.DataFrame, name_column: str, values: list[str], template: str) -> pd.DataFrame:
    """``frame`` pivoted to one row per (domain, kind, level), one column per (name, value)."""
    wide = frame.pivot_table(index=[DOMAIN_COLUMN, "kind", "level"], columns=name_column, values=values)
    wide.columns = [template.format(name=name, metric=metric) for metric, name in wide.columns]
    return wide.reset_index()


def _combined(kinds, levels, pairwise, histogram_summary, classification):
    """Per (domain, kind, level): difference ratios, median pairwise ICC(2,1) and AUCs of every family of that domain."""
    domains = list(dict.fromkeys([*pairwise.get(DOMAIN_COLUMN, []), *histogram_summary.get(DOMAIN_COLUMN, [])]))
    if classification is not None:
        domains = list(dict.fromkeys([*domains, *classification[DOMAIN_COLUMN]]))
    combined = pd.DataFrame([{DOMAIN_COLUMN: domain, "kind": kind, "level": level} for domain in domains for kind in kinds for level in levels])
    keys = [DOMAIN_COLUMN, "kind", "level"]
    if len(histogram_summary):
        combined = combined.merge(_wide(histogram_summary, "histogram", ["ratio_mean", "ratio_sd"], "{name}_{metric}"), on=keys, how="left")
    if len(pairwise):
        combined = combined.merge(_wide(pairwise, "family", ["icc21_median"], "{name}_{metric}"), on=keys, how="left")
    if classification is not None:
        combined = combined.merge(_wide(classification, "family", ["AUC", "AUC_change", "accuracy"], "{name}_{metric}"), on=keys, how="left")
    return combined


def _joined(tables: list[pd.DataFrame], class_order: Sequence[str]) -> pd.DataFrame:
    """The domains' tables as one: their rows stacked; manifest and diagnostic columns first, then the
    features in params order (a row holds the features of its domain's classes, NaN elsewhere)."""
    if len(tables) == 1:
        return tables[0]
    table = pd.concat(tables, axis=0, sort=False)
    table[ERROR_COLUMN] = table[ERROR_COLUMN].fillna("") if ERROR_COLUMN in table.columns else ""
    features = [c for c in table.columns if is_feature(c) and not is_diagnostic(c)]
    rank = {name: i for i, name in enumerate(class_order)}
    features.sort(key=lambda c: rank.get(feature_class_of(c), len(rank)))  # stable: each class keeps its order
    others = [c for c in table.columns if c not in set(features)]
    return table[others + features]


def _domain_notes(domains: Mapping[str, str], region: str, levels: Sequence[float]) -> list[str]:
    notes = []
    for domain in DOMAINS:
        names = [name for name, d in domains.items() if d == domain]
        if names:
            notes.append(f"domain {domain} for {', '.join(names)}: {DOMAIN_MEANING[domain]}")
    where = "the whole image or input, as in the paper ('the entire pixel value')" if region == "image" else "the foreground (voxels > 0) only"
    notes.append(f"perturbation region: {region} ({where}); levels {list(levels)}")
    return notes


# ---------------------------------------------------------------------------------------------- main
def run_robustness(
    params,
    manifest,
    *,
    kinds: Sequence[str] = KINDS,
    levels: Sequence[float] | str = DEFAULT_LEVELS,
    region: str = "image",
    domain: str = "auto",
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
        ``scale``/``shift``; levels s (0 always included); ``image`` (the whole image or input, the paper's)
        or ``foreground`` (voxels > 0 only). See :mod:`deepradiomics.perturb`.
    domain
        ``auto`` (default: ``input`` for the classes that perturb their own network input, ``image`` for the
        others), ``input`` (the paper's definition; ParamsError for a class that cannot) or ``image`` (the raw
        image for every class). See the module docstring.
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
    domains = class_domains(extractor, domain)  # refuses an impossible domain before any case runs
    frame, base = read_manifest(manifest)
    if limit is not None:
        if limit < 2:
            raise ParamsError(f"--limit {limit}: at least 2 cases are needed for an ICC")
        frame = frame.iloc[:limit]
    if len(frame) < 2:
        raise RobustnessDataError(f"the manifest holds {len(frame)} case(s): at least 2 are needed")
    tables, failed, extractions = [], [], 0
    for used in [d for d in DOMAINS if d in domains.values()]:
        names = [name for name, d in domains.items() if d == used]
        expanded, transforms = _expanded_manifest(frame, kinds, levels, region, used)
        task = _domain_extractor(extractor, names, used).batch_task(transforms=transforms)
        table = run_batch(task, expanded, jobs=jobs, out_dir=out_dir, progress=progress, base_dir=base, scheduler=scheduler)
        failed.extend(failures(table))
        tables.append(table)
        extractions += len(expanded)
    table = _joined(tables, extractor.params.class_order)
    bad = sorted({table.loc[i, CASE_COLUMN] for i, _ in failed})
    cases = [c for c in frame["ID"] if c not in bad]
    notes = _domain_notes(domains, region, levels)
    if bad:
        notes.append(f"{len(bad)} case(s) failed at some level and are left out: " + "; ".join(f"{i}: {m}" for i, m in failed[:5]))
    if len(cases) < 2:
        raise RobustnessDataError(f"only {len(cases)} case(s) extracted at every level: at least 2 are needed; first failure: {failed[0][1] if failed else ''}")
    families = feature_families(table.columns, groups)
    column_domains = _column_domains([c for columns in families.values() for c in columns], domains)
    per_feature = {k: v for k, v in families.items() if k != "all"} or families  # "all" would repeat every feature
    icc_table, icc_summary, pairwise = _icc_tables(table, cases, per_feature, kinds, levels, column_domains)
    hist_groups = histogram_groups(table.columns)
    ratios, ratio_summary = _histogram_tables(table, cases, hist_groups, kinds, levels, _column_domains([c for v in hist_groups.values() for c in v], domains))
    classification = None
    if target is not None:  # the target is a column of the labels table, or of the manifest (it passes through)
        classification, label_notes, (pos, neg) = _classification(
            table, cases, families, kinds, levels, labels, target, positive, model, folds, seed, id_column, column_domains
        )
        notes.extend(label_notes)
        notes.append(f"classification: {model} trained on unperturbed features in stratified CV, {target} = {pos} vs {neg}")
    combined = _combined(kinds, levels, pairwise, ratio_summary, classification)
    timing = {
        "cases": len(frame),
        "extractions": extractions,
        "jobs": jobs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return RobustnessResult(
        levels=levels,
        kinds=kinds,
        region=region,
        domain=domain,
        domains=domains,
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
