"""End-to-end example on the real LGG cohort: classical, vqhist, fisher and cnn features side by side.

From a clean checkout (after ``make install``), with ``../shared/data/lgg`` beside the repository::

    .venv/bin/python examples/lgg_study.py --jobs 2          # about an hour on 2 CPU cores

What it does, on the 63 TCGA-LGG patients:

1. **Extraction** (``deepradiomics batch``; per-case rows cached under ``runs/lgg_cache`` so an interrupted
   run resumes): ``params/lgg_example.yaml`` (PyRadiomics' seven classes; ``vqhist`` with the shipped
   default model, raw codeword counts *and* frequencies; ``cnn`` with the paper's untrained, seeded
   VGG-19-3D) and ``params/cnn_mapped.yaml`` (``cnn`` with the shipped VQ encoder mapped to 3D), joined
   on the case ID into ``examples/lgg/features.csv``.
2. **Studies** of grade (G3 vs G2) and IDH (mutant vs wild-type): ``run_study`` on that table *and* on the
   images with ``params/fisher.yaml``, so the ``fisher`` class's GMM is refitted inside every training fold
   on the training patients only. Families: classical; vqhist counts; vqhist frequency; fisher; cnn random
   (all taps, then shallow / mid / deep taps apart); cnn mapped; everything together. Two classifiers:
   ``logistic`` (L2, balanced, in-fold t-test screen) and ``dlr`` (the DLR paper's t-test + F-score + linear
   SVM), 5 x 5-fold CV, paired comparisons, confounds, responsible codewords (vqhist frequencies).
3. **Explain**: responsible regions of the codewords the grade study ranks first, on two cases, and over
   the whole cohort (tumour vs the rest of the brain, Kruskal-Wallis + Dunn across patients).

``examples/lgg/RESULTS.md`` collects the tables; every figure there comes from this run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from deepradiomics_plugins.vqhist.explain import explain_codewords, explain_cohort

from deepradiomics import Extractor
from deepradiomics.batch import case_from_row, failures, read_manifest
from deepradiomics.io import write_table
from deepradiomics.naming import feature_columns
from deepradiomics.study import run_study

# paths relative to the repository root (the script runs from there), so that no absolute path of this
# machine lands in the tracked outputs (diagnostics, reports)
REPO = Path(__file__).resolve().parents[1]
DATA = Path("..") / "shared" / "data" / "lgg"
OUT = Path("examples") / "lgg"
CACHE = Path("runs") / "lgg_cache"
PARAMS = Path("params")
CLASSICAL = ["firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]
RANDOM_CNN = r"cnn:Conv\d\d.*"  # VGG-19-3D taps (Conv22..., Conv42..., Conv54...)
MAPPED_CNN = r"cnn:(?:Stem|Block\d|Head).*"  # the mapped VQ encoder's taps
GROUPS = {
    "classical": CLASSICAL,
    "vqhist-counts": [r"vqhist:Codeword\d+"],
    "vqhist-frequency": [r"vqhist:Frequency\d+"],
    "fisher": ["fisher"],
    "cnn-random": [RANDOM_CNN],
    "cnn-random-shallow": [r"cnn:Conv[12]\d.*"],
    "cnn-random-mid": [r"cnn:Conv[34]\d.*"],
    "cnn-random-deep": [r"cnn:Conv5\d.*"],
    "cnn-mapped": [MAPPED_CNN],
    "all": [*CLASSICAL, r"vqhist:Frequency\d+", "fisher", "cnn"],
}
TARGETS = {"grade": "G3", "idh_mutant": "1"}
CAVEATS = [
    "TCGA-LGG volumes are stacks of preprocessed 8-bit axial slices, not raw MR values; voxel spacing is unknown and set to 1 mm.",
    "15 of 63 patients lack one sequence and carry FLAIR in its place (9 lack post-contrast, 6 lack pre-contrast); there is no T2.",
    "All tumours are lower grade: G2 vs G3 and IDH status are studied, LGG vs HGG cannot be.",
    "The VQ network (vqhist, and the mapped cnn) and the DLR network (fisher) were trained for segmentation on 54 of these"
    " 63 patients (9 more for validation), not on the labels; their features are not independent of the cases classified.",
    "The cnn-random network is untrained (seeded weights): no patient informed it.",
    "63 patients, fewer with a known label: intervals are wide, and a difference between families is exploratory.",
]


def markdown(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (without the optional tabulate dependency)."""
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def reading(row) -> str:
    """How an AUC and its 95% interval read: an interval that includes 0.5 is no evidence."""
    if not (np.isfinite(row.ci_low) and np.isfinite(row.ci_high)):
        return "no interval"
    if row.ci_low > 0.5:
        return "evidence above chance"
    if row.ci_high < 0.5:
        return "below chance (a flaw of model or validation, not a usable signal)"
    return "no evidence (CI includes 0.5)"


def extract(jobs: int, log: list[str]) -> Path:
    """Both fixed-feature batches, joined on the case ID, as ``examples/lgg/features.csv``."""
    tables = []
    for name in ("lgg_example", "cnn_mapped"):
        started = time.perf_counter()
        extractor = Extractor.from_yaml(PARAMS / f"{name}.yaml")
        table = extractor.execute_batch(DATA / "cases.csv", jobs=jobs, out_dir=CACHE / name, progress=True)
        failed = failures(table)
        log.append(f"- `params/{name}.yaml`: {len(table) - len(failed)} of {len(table)} cases in {time.perf_counter() - started:.0f} s (rows cached in runs/lgg_cache/{name}); failed: {', '.join(failed) or 'none'}")
        tables.append(table)
    fixed, mapped = tables
    # the mapped cnn adds its feature columns; its diagnostics would repeat the first table's names
    features = fixed.join(mapped[feature_columns([str(c) for c in mapped.columns])], how="left")
    path = OUT / "features.csv"
    write_table(features, path)
    return path


def study_section(result, target: str) -> list[str]:
    info = result.info
    lines = [f"## {target}: {info['n_positive']} {info['positive']} vs {info['n_negative']} {info['negative']} ({info['n_cases']} patients with a label)", ""]
    lines += [f"Notes: {'; '.join(info['notes'])}" if info["notes"] else "Notes: none", ""]
    auc = result.metrics[result.metrics["metric"] == "AUC"].copy()
    auc["features"] = auc["family"].map(info["families"])
    auc["reading"] = [reading(r) for r in auc.itertuples()]
    shown = auc[["family", "model", "features", "mean", "ci_low", "ci_high", "reading"]].round(3)
    lines += [f"AUC, mean over {info['repeats']} x {info['folds']}-fold CV with its 95% interval (Nadeau-Bengio corrected t-interval over the {info['repeats'] * info['folds']} fold AUCs):", "", markdown(shown), ""]
    if auc["reading"].str.startswith("below chance").any():
        lines += [
            "An AUC whose interval lies under 0.5 is not a signal read backwards: with no usable signal, a model"
            " selected and fitted inside small training folds can rank held-out cases systematically wrong."
            " Such a family is no evidence of discrimination either.",
            "",
        ]
    comparisons = result.comparisons
    if len(comparisons):
        tested = comparisons[comparisons["test"] == comparisons["test"].iloc[0]]
        significant = tested[tested["p_adjusted"] < 0.05]
        lines += [
            f"Paired comparisons ({tested['test'].iloc[0]}, {info['correction']}-adjusted over the pairs of each model): "
            f"{len(significant)} of {len(tested)} pairs differ at adjusted p < 0.05"
            + (":" if len(significant) else "."),
            "",
        ]
        if len(significant):
            lines += [markdown(significant[["model", "family_a", "family_b", "value_a", "value_b", "p_adjusted"]].round(4)), ""]
    confounds = pd.DataFrame(info.get("confounds") or [])
    if len(confounds):
        strong = confounds[["family", "covariate", "n_features", "n_strong", "fraction", "top_feature", "top_rho"]].copy()
        lines += ["Confounds (features with |Spearman rho| >= 0.5 with the covariate, over the patients studied):", "", markdown(strong.round(3)), ""]
    if result.responsible is not None:
        chosen = result.responsible.responsible
        listed = ", ".join(map(str, chosen["codeword"])) if len(chosen) else "none after correction"
        lines += [f"Responsible codewords ({info.get('responsible_histogram')}): {listed}", ""]
    return lines


def protocol_section(default, paper, target: str) -> list[str]:
    """The dlr model under the project's defaults and under the DLR paper's settings, side by side."""
    def table(result, name):
        auc = result.metrics[(result.metrics["metric"] == "AUC") & (result.metrics["model"] == "dlr")].set_index("family")
        rows = []
        for family, row in auc.iterrows():
            selection = result.cv[(family, "dlr")].selection
            kept = selection["n_selected"].astype(float)
            rows.append({"family": family, f"AUC {name}": f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]",
                         f"features {name}": f"{kept.median():.0f} [{kept.min():.0f}-{kept.max():.0f}]"})
        return pd.DataFrame(rows).set_index("family")

    both = table(default, "default").join(table(paper, "paper")).reset_index()
    splits = len(next(iter(default.cv.values())).selection)  # one row per fit: folds x repeats
    return [
        f"### {target}: dlr with the project's defaults and with the DLR paper's settings",
        "",
        f"Default: {default.info['dlr_protocol']}. Paper (`--protocol paper`): {paper.info['dlr_protocol']}. Same {splits} splits;"
        " 'features' = features reaching the SVM per fit, median [min-max]. An interval including 0.5 is no evidence.",
        "",
        markdown(both),
        "",
    ]


def explain_section(grade, jobs: int) -> list[str]:
    """Per-case and cohort explanations of the codewords ranked first by the grade study."""
    table = grade.responsible.table if grade.responsible is not None else None
    if table is None:
        return ["No vqhist columns to explain.", ""]
    chosen = grade.responsible.responsible
    if len(chosen):
        names, why = list(chosen["codeword"])[:3], "responsible for grade after correction"
    else:
        ranked = table.dropna(subset=["mannwhitney_p"]).sort_values("mannwhitney_p")
        names, why = list(ranked["codeword"].head(3)), "none survives correction: the three smallest uncorrected Mann-Whitney p for grade (exploratory)"
    codewords = [int(str(n).removeprefix("Frequency").removeprefix("Codeword")) for n in names]
    params = PARAMS / "lgg_example.yaml"
    lines = [f"## Explain: codewords {codewords} ({why})", ""]
    shutil.rmtree(OUT / "explain", ignore_errors=True)  # overlays of codewords chosen by an earlier run would stay
    frame, base = read_manifest(DATA / "cases.csv")
    for record in frame.head(2).to_dict(orient="records"):
        case = case_from_row(record, base)
        explanation = explain_codewords(case, params, codewords)
        folder = explanation.write(OUT / "explain" / case.case_id)
        lines += [f"Case {case.case_id} (descriptive, one patient):", "", markdown(explanation.summary.round(3)), "", f"Outputs: {folder}", ""]
    cohort = explain_cohort(DATA / "cases.csv", params, codewords, label_names={1: "tumour"}, include_outside=True, jobs=jobs)
    folder = cohort.write(OUT / "explain" / "cohort")
    lines += [
        f"Cohort ({cohort.per_patient['ID'].nunique()} patients, "
        f"{len(cohort.failed)} failed): summed response per region, Kruskal-Wallis H = {cohort.kruskal['statistic']:.3g}, "
        f"p = {cohort.kruskal['p_value']:.3g}",
        "",
        markdown(cohort.summary.round(3)),
        "",
        "The paper's statistic is the sum of the response over a region, which grows with the region's size: here"
        " 'outside' (the foreground outside the tumour mask) is far larger than the tumour, so the test compares"
        " totals, not the response per voxel (`deepradiomics explain --statistic mean` gives that).",
        "",
        f"Outputs: {folder}",
        "",
    ]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    os.chdir(REPO)
    if not (DATA / "cases.csv").is_file():
        sys.exit(f"LGG data not found at {DATA}: the shared data folder must sit beside the repository")
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lines = ["# LGG example: classical, vqhist, fisher and cnn features", ""]
    lines += [f"Command: `python examples/lgg_study.py --jobs {args.jobs} --repeats {args.repeats}` ({os.cpu_count()} CPU cores, no GPU).", ""]
    lines += ["## What each extractor was trained on", ""]
    lines += [
        "- classical: PyRadiomics 3.0.1, no training.",
        "- vqhist: the shipped `vq-lgg-cpu` VQ segmentation network, trained for tumour segmentation on 54 of these 63 patients (9 for validation); the labels studied here were never used.",
        "- fisher: the shipped `dlr-lgg-cpu` DLR segmentation network (same 54 + 9 patients); the Fisher-vector GMM is fitted inside each training fold on training patients only.",
        "- cnn-random: the paper's VGG-19-3D with seeded Glorot-uniform weights, untrained.",
        "- cnn-mapped: the `vq-lgg-cpu` encoder mapped to 3D (so trained on the same 54 + 9 patients).",
        "",
        "## Extraction",
        "",
    ]
    features = extract(args.jobs, lines)
    lines.append("")

    results = {}
    for target, positive in TARGETS.items():
        # the options both studies of a target share: the same features, labels, families and splits
        common = dict(
            labels=DATA / "cases.csv",
            target=target,
            positive=positive,
            groups=GROUPS,
            repeats=args.repeats,
            caveats=CAVEATS,
            manifest=DATA / "cases.csv",
            params=PARAMS / "fisher.yaml",
            jobs=args.jobs,
            cache_dir=CACHE / "fisher",
            progress=True,
        )
        result = run_study(features, **common)
        result.write(OUT / target)
        results[target] = result
        lines += study_section(result, target)
        fold = result.info.get("foldwise", {})
        if fold:
            lines += [
                f"fisher fold-wise refitting: {fold.get('fits')} GMM fits ({fold.get('fits_not_converged', 0)} did not converge in 100 EM"
                f" iterations), {fold.get('fit_seconds', 0):.0f} s fitting, {fold.get('encode_seconds', 0):.0f} s encoding.",
                "",
            ]
        # the DLR paper's settings on the same splits: Student's t-test, every passing feature, the Fisher vectors
        # unscaled (scaling auto: the other families, which the paper did not have, z-scored)
        paper = run_study(features, models=["dlr"], protocol="paper", responsible="none", **common)
        paper.write(OUT / target / "dlr-paper")
        lines += protocol_section(result, paper, target)
        (OUT / "RESULTS.md").write_text("\n".join([*lines, "(run in progress)", ""]))

    lines += explain_section(results["grade"], args.jobs)
    lines += [
        "## Classifiers",
        "",
        "`logistic`: L2-penalised logistic regression with balanced class weights after an in-fold Welch t-test screen"
        " (this project's model; the VQ paper fits an unpenalised logistic regression to the codeword histogram);"
        " `dlr`: the DLR paper's pipeline (t-test screen, F-score ranking, linear SVM, C = 1) with the project's"
        " defaults (Welch's test, k = one feature per five patients of the smaller class, z-scored inputs), and"
        " with the paper's settings above (Student's test, every feature passing it, Fisher vectors unscaled; the"
        " other families, which the paper did not have, z-scored: unscaled, libsvm did not finish one IDH fold of"
        " the classical family in 300 s, benchmarks/svm_scaling.py). Every model's common part drops near-constant columns and clips z-scores"
        " at 5 inside each training fold. Every step is fitted inside each training fold. An AUC whose 95% interval"
        " includes 0.5 is no evidence of discrimination.",
        "",
        f"Total time: {time.perf_counter() - started:.0f} s.",
        "",
    ]
    (OUT / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
