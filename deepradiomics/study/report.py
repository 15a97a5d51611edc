"""Report folder of a study: tidy CSVs, PNG figures and one self-contained ``report.html``.

The HTML embeds its figures as base64 data URIs and links nothing external, so it can be mailed or
archived as one file. It opens with a plain-language summary for clinicians, then caveats, then the
tables and the methods.
"""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .classification import MODELS
from .confounds import COVARIATES, confound_notes
from .statistics import BOOTSTRAPPED, METRICS, auc, interval_note

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:70em;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.summary{background:#f5f9ff;border-left:4px solid #3b7dd8;padding:.6em 1em}
.caveats{background:#fff8ec;border-left:4px solid #e0a030;padding:.6em 1em}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}
img{max-width:100%}
"""


def class_name(info: dict, which: str) -> str:
    """Display name of a class: the value itself (``G3``), or ``target = value`` for codes like 0/1."""
    value = str(info[which])
    bare = value[4:] if value.startswith("not ") else value
    if re.fullmatch(r"-?\d+(\.\d+)?|True|False", bare):
        return f"{info['target']} {'!=' if value.startswith('not ') else '='} {bare}"
    return value


def _fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _fmt_p(p) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _auc_words(mean: float, low: float, high: float) -> str:
    """How an AUC and its 95% interval read in the summary: an interval that includes 0.5 is no evidence
    of discrimination, whatever the point estimate; the grade words apply only when it excludes 0.5."""
    if not np.isfinite(mean):
        return "could not be estimated"
    if not (np.isfinite(low) and np.isfinite(high)):
        return "could not be given a confidence interval, so it is no evidence of discrimination on its own"
    if low <= 0.5 <= high:
        return "gave no evidence of discrimination beyond chance (its 95% interval includes 0.5)"
    if high < 0.5:
        return (
            "was below chance (its 95% interval lies under 0.5): the model ranks the groups the wrong way round,"
            " which points to a problem with the model or its validation rather than to a usable signal"
        )
    if mean >= 0.9:
        grade = "excellent"
    elif mean >= 0.8:
        grade = "good"
    elif mean >= 0.7:
        grade = "moderate"
    elif mean >= 0.6:
        grade = "weak"
    else:
        grade = "poor"
    return f"was {grade}, and its 95% interval excludes chance (0.5)"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table_html(frame: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    return frame.to_html(index=False, na_rep="", float_format=lambda v: floatfmt.format(v), border=0)


def _metric_matrix(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows (family, model); columns: each metric as 'mean [low, high]'."""
    rows = []
    for (family, model), part in metrics.groupby(["family", "model"], sort=False):
        row = {"family": family, "model": model, "validation": part["validation"].iloc[0]}
        for _, r in part.iterrows():
            row[r["metric"]] = f"{_fmt(r['mean'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
        rows.append(row)
    return pd.DataFrame(rows)


def _external_matrix(external: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (family, model), part in external.groupby(["family", "model"], sort=False):
        row = {"family": family, "model": model, "n test cases": int(part["n_cases"].iloc[0])}
        for _, r in part.iterrows():
            row[r["metric"]] = f"{_fmt(r['estimate'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
        rows.append(row)
    return pd.DataFrame(rows)


MODEL_WORDS = {
    "logistic": "logistic regression (the VQ deep radiomics paper's classifier)",
    "dlr": "linear support-vector machine with t-test + F-score selection (the DLR protocol)",
    "dlr-loo": "DLR protocol evaluated by leave-one-out as in its paper",
}


def _summary(result) -> str:
    info = result.info
    pos, neg = html.escape(class_name(info, "positive")), html.escape(class_name(info, "negative"))
    parts = [
        f"<p>This study asked whether image features can tell <b>{pos}</b> from <b>{neg}</b> "
        f"(column <code>{html.escape(info['target'])}</code>) in {info['n_cases']} patients "
        f'({info["n_positive"]} {pos}, {info["n_negative"]} {neg}). Several groups ("families") of '
        "features were each given to the same kind of model, and each model was tested only on patients "
        "it had not seen while it was built.</p>",
        "<p>The main score is the <b>AUC</b>: the chance that the model ranks a randomly chosen "
        f"{pos} patient above a randomly chosen {neg} patient. 0.5 is a coin toss, 1.0 is perfect. "
        "Numbers in brackets are 95% confidence intervals: the range the true value plausibly lies in.</p>",
        "<ul>",
    ]
    m = result.metrics
    for model in info["models"]:
        auc_rows = m[(m["model"] == model) & (m["metric"] == "AUC")].sort_values("mean", ascending=False)
        if auc_rows.empty:
            continue
        best = auc_rows.iloc[0]
        sub = m[(m["model"] == model) & (m["family"] == best["family"])].set_index("metric")
        sens, spec = sub.loc["sensitivity", "mean"], sub.loc["specificity", "mean"]
        parts.append(
            f"<li>With the {MODEL_WORDS.get(model, model)}, the best feature family was "
            f"<b>{html.escape(best['family'])}</b> ({info['families'].get(best['family'], '?')} features): "
            f"AUC {_fmt(best['mean'])} [{_fmt(best['ci_low'])}, {_fmt(best['ci_high'])}], which "
            f"{_auc_words(best['mean'], best['ci_low'], best['ci_high'])}. "
            + (
                f"Out of every 10 {pos} patients it flagged about {_fmt(10 * sens, 0)}, and out of every 10 "
                f"{neg} patients it correctly cleared about {_fmt(10 * spec, 0)}. "
                if np.isfinite(sens) and np.isfinite(spec)
                else ""
            )
            + (
                "Other families: "
                + "; ".join(
                    f"{html.escape(r['family'])} {_fmt(r['mean'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
                    for _, r in auc_rows.iloc[1:].iterrows()
                )
                + "."
                if len(auc_rows) > 1
                else ""
            )
            + "</li>"
        )
    parts.append("</ul>")
    comp = result.comparisons
    if len(comp):
        sig = comp[comp["p_adjusted"] < 0.05]
        if sig.empty:
            parts.append(
                "<p>No difference between feature families was statistically significant after correction "
                "for multiple comparisons. This is no evidence that they perform alike: with this many "
                "patients only large differences could reach significance.</p>"
            )
        else:
            items = "; ".join(
                f"{html.escape(r['family_a'])} vs {html.escape(r['family_b'])} ({r['model']}, {html.escape(r['test'])}:"
                f" difference {_fmt(r['difference'])}, adjusted p {_fmt_p(r['p_adjusted'])})"
                for _, r in sig.iterrows()
            )
            parts.append(f"<p>Statistically significant differences between families: {items}.</p>")
    if result.external is not None:
        ext = result.external[result.external["metric"] == "AUC"]
        items = "; ".join(
            f"{html.escape(r['family'])}/{r['model']} AUC {_fmt(r['estimate'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
            for _, r in ext.iterrows()
        )
        parts.append(
            f"<p>On the separate test set ({info.get('n_test', '?')} patients), models built on all the first "
            f"set's patients reached: {items}.</p>"
        )
    rv = result.responsible
    if rv is not None:
        resp = rv.responsible
        if len(resp):
            names = {str(info[w]): class_name(info, w) for w in ("positive", "negative")}
            items = ", ".join(
                f"{html.escape(r.codeword)} ({html.escape(names.get(str(r.responsible_for), str(r.responsible_for)))})"
                for r in resp.itertuples()
            )
            parts.append(
                f"<p>Codewords of the deep (VQ) histogram whose counts differ between the groups "
                f'("responsible vectors", with the group they are more frequent in): {items}.</p>'
            )
        else:
            parts.append("<p>No codeword of the deep (VQ) histogram was found responsible for either group.</p>")
    return "\n".join(parts)


def _caveats(result) -> str:
    info = result.info
    items = [html.escape(c) for c in result.caveats]
    n_small = min(info["n_positive"], info["n_negative"])
    items.append(
        f"Small sample: {info['n_cases']} patients ({info['n_positive']} / {info['n_negative']}). Estimates are "
        "imprecise (see the width of the intervals), and a model chosen as 'best' among several families "
        "is optimistically rated by that choice."
        if n_small < 100
        else f"{info['n_cases']} patients were analysed."
    )
    if result.external is None:
        items.append(
            "Internal validation only: cross-validation estimates how well this modelling procedure works on "
            "patients like these; performance at another hospital, scanner or protocol is unknown until "
            "tested on an external set."
        )
    if "dlr-loo" in info["models"]:
        items.append(
            "dlr-loo: AUCs from pooled leave-one-out scores are biased downwards when the signal is weak "
            "(on pure-noise features they can fall far below 0.5); read them next to the cross-validated dlr."
        )
    items.append(
        "Sensitivity, specificity, PPV and NPV depend on the decision threshold (probability 0.5 for "
        "logistic regression, decision value 0 for the SVM, both with balanced class weights) and PPV/NPV on "
        "the proportion of each group in this cohort, which may differ in practice."
    )
    if result.responsible is not None:
        items.append(
            "Responsible vectors are fitted on the whole cohort to explain, not to validate: they describe "
            "associations in these patients and are not evidence that a codeword predicts the label "
            "elsewhere."
        )
    items.extend(html.escape(n) for n in confound_notes(info.get("confounds") or []))
    items.extend(html.escape(n) for n in _degenerate_intervals(result))
    items.extend(html.escape(n) for n in info.get("notes", []))
    items.append("These results are for research; none of these models is a validated clinical tool.")
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _degenerate_intervals(result) -> list[str]:
    """Caveats for 95% intervals of zero width: a cross-validated metric equal in every fold, or a
    bootstrapped one equal in every resample (e.g. AUC 1 on perfectly separated classes)."""
    rows = [(r, r.mean, r.validation) for r in result.metrics.itertuples()]
    if result.external is not None:
        rows += [(r, r.estimate, "external test set") for r in result.external.itertuples()]
    out = []
    for r, value, where in rows:
        if not (np.isfinite(r.ci_low) and np.isfinite(r.ci_high) and np.isclose(r.ci_low, r.ci_high)):
            continue
        if where in ("leave-one-out", "external test set"):
            if r.metric not in BOOTSTRAPPED:  # Clopper-Pearson intervals never have zero width
                continue
            reason = "every bootstrap resample gave that value (e.g. perfectly separated classes)"
        else:
            reason = "every test fold gave that value"
        out.append(
            f"{r.family}/{r.model} ({where}): the 95% interval of {r.metric} is the single value {_fmt(value)} because"
            f" {reason}; the value is not known exactly, and the interval understates the uncertainty."
        )
    return out


def _confounds_html(records: list[dict]) -> str:
    """The "Confounds" section: per family and covariate, how many features correlate strongly with it."""
    frame = pd.DataFrame(records)
    if frame.empty:
        return "<p>No covariate was available to assess.</p>"
    threshold = float(frame["threshold"].iloc[0])
    shown = pd.DataFrame(
        {
            "family": frame["family"],
            "covariate": frame["covariate"].map(lambda c: COVARIATES.get(str(c), str(c))),
            "features": frame["n_features"],
            "constant": frame["n_constant"],
            f"|rho| >= {threshold:g}": frame["n_strong"],
            "share": frame["fraction"].map(lambda v: f"{v:.0%}" if np.isfinite(v) else "n/a"),
            "most correlated feature": frame["top_feature"],
            "its rho": frame["top_rho"],
            "cases": frame["n_cases"],
        }
    )
    return (
        "<p>Spearman correlation of every feature with the ROI volume and with the number of axial slices of "
        f"each case. A feature with |rho| &gt;= {threshold:g} can carry the label through that covariate rather "
        "than through the tumour: read the results of a family with many such features (caveats above) with "
        "this in mind. Share: of the non-constant features; constant features have no correlation.</p>"
        + _table_html(shown, "{:.2f}")
    )


def _methods(result) -> str:
    info = result.info
    fams = "; ".join(
        f"<b>{html.escape(k)}</b>: {v} features (classes {', '.join(info['family_classes'][k])})"
        for k, v in info["families"].items()
    )
    text = [
        f"<p>Feature families: {fams}.</p>",
        "<p>Every data-driven step (median imputation, removal of constant features, z-scoring, feature "
        "screening or selection, model fitting) was fitted on the training part of each split only "
        "(scikit-learn Pipeline)"
        + (
            ", but the features of " + html.escape(", ".join(info["leakage"])) + " come from a state fitted on patients of this "
            "study (see the caveats): for those families information from the test patients did reach the features.</p>"
            if info.get("leakage")
            else ", so no information from the test patients leaked into the models.</p>"
        ),
    ]
    text.append(
        "<p>Common part of every model (inside the pipeline): median imputation; "
        + html.escape(info.get("taming") or "exactly constant columns dropped, z-scored")
        + ". A column almost constant on the training patients would otherwise turn an ordinary value of a test "
        "patient into an enormous z-score that decides a linear model alone (the project's choice, measured in "
        "<code>benchmarks/near_constant.py</code>).</p>"
    )
    if "logistic" in info["models"]:
        text.append(
            "<p><b>logistic</b> (this project's model, neither paper's): L2-penalised logistic regression (C=1, balanced "
            "class weights) on the k features with the smallest Welch t-test p-value in the training folds, k = one per "
            f"five patients of the smaller class (1 to 10). Repeated stratified {info['folds']}-fold cross-validation, "
            f"{info['repeats']} repeats (seed {info['seed']}); mean and sd over the "
            f"{info['folds'] * info['repeats']} test folds, 95% CI from the Nadeau-Bengio corrected variance. "
            "Metrics undefined in a fold (e.g. PPV with no positive call) are left out of its mean. The VQ paper "
            "fits a logistic regression to the codeword histogram without this screen, penalty or class weights.</p>"
        )
    if info.get("dlr_protocol"):
        which = (
            "the DLR paper's settings (its SVM got L2-normalised Fisher vectors only: z-scoring any other family is this project's choice)"
            if info.get("dlr_protocol_is_paper")
            else "this project's settings (the paper's: <code>--protocol paper</code>)"
        )
        text.append(
            f"<p><b>dlr</b> (Li et al., Sci Rep 2017), {which}: {html.escape(info['dlr_protocol'])}; then a linear SVM "
            "(C=1, balanced class weights); the smallest-p feature if none passes. Evaluated by the same repeated "
            "cross-validation as logistic. <b>dlr-loo</b>: the same model evaluated by leave-one-out as in the paper; "
            f"metrics on the pooled leave-one-out decision values, with 95% CIs: {html.escape(interval_note(info['n_boot']))} "
            "How many features reached the classifier in each fit: <code>selection.csv</code> and the table below.</p>"
        )
        text.append(_selection_html(result))
    text.append(
        "<p>Comparisons: for cross-validated models, the Nadeau-Bengio corrected resampled t-test on the "
        "per-fold AUC differences (same splits for every family) and DeLong's test on the out-of-fold scores "
        "averaged over repeats; for leave-one-out, DeLong's test on the pooled scores. p-values adjusted "
        f"({html.escape(info['correction'])}) over the pairs of families within each model and test.</p>"
    )
    if result.external is not None:
        text.append(
            "<p>External validation: each family's model was fitted on the whole first set and scored once on "
            f"the test set; 95% CIs: {html.escape(interval_note(info['n_boot']))}</p>"
        )
    if result.responsible is not None:
        text.append(_responsible_methods(result.responsible))
    return "\n".join(text)


def selection_table(cv: dict) -> pd.DataFrame:
    """Per (family, model) and fit: the columns dropped as (near-)constant, clipped, passing the t-test and
    reaching the classifier (``selection.csv``)."""
    frames = [res.selection.assign(family=family, model=model) for (family, model), res in cv.items() if len(res.selection)]
    if not frames:
        return pd.DataFrame(columns=["family", "model", "repeat", "fold"])
    table = pd.concat(frames, ignore_index=True)
    return table[["family", "model", *[c for c in table.columns if c not in ("family", "model")]]]


def _selection_html(result) -> str:
    """Median [min-max] over the fits of the features reaching the classifier, per family and model."""
    rows = []
    for (family, model), res in result.cv.items():
        if not len(res.selection):
            continue
        low, high, median = res.selected_range()
        passed = res.selection["n_passed_ttest"].to_numpy(dtype=float)
        passed_text = f"{np.nanmedian(passed):.0f} [{np.nanmin(passed):.0f}-{np.nanmax(passed):.0f}]" if np.isfinite(passed).any() else "-"
        rows.append({"family": family, "model": model, "passing the t-test": passed_text, "reaching the classifier": f"{median:.0f} [{low}-{high}]"})
    if not rows:
        return ""
    return "<p>Features per fit, median [min-max]:</p>" + _table_html(pd.DataFrame(rows))


def _responsible_methods(rv) -> str:
    """The methods paragraph of the responsible vectors: what was done, and where it differs from the VQ paper."""
    from .responsible import PAPER_DIFFERENCES

    s = rv.settings
    if s.get("procedure") == "paper":
        entry = f"every kept codeword with an uncorrected Mann-Whitney (Wilcoxon rank-sum) p &lt; {s['alpha']}"
    else:
        entry = f"the {s['max_codewords']} with the smallest Mann-Whitney p"
    paragraph = (
        "<p>Responsible vectors (Kobayashi et al., Sci Rep 2021), on the whole cohort: codewords used in "
        f"fewer than {s['min_cases']} patients were dropped ({s['n_passed_usage_filter']} of {s['n_codewords']} kept); "
        f"{entry} (skipping any whose counts are a linear function of those already chosen) entered a "
        f"logistic regression (fit: {rv.fit_method}; Firth's penalised likelihood if the maximum-likelihood fit separates); "
        "each codeword's likelihood-ratio test, chi-square 1 df (maximum likelihood: refit without it; Firth: its coefficient "
        "held at 0 with the full design in the penalty, the penalised likelihood-ratio test of Heinze &amp; Schemper 2002, "
        "each fit the highest of several starts); Shapiro-Wilk normality per group and Mann-Whitney U between groups over "
        f"all kept codewords; {html.escape(s['correction'])} correction; responsible when both p &lt; {s['alpha']}, for the "
        "group with the higher mean count.</p>"
    )
    if s.get("procedure") == "paper":
        return paragraph + "<p>This is the paper's procedure as it describes it (<code>--responsible paper</code>).</p>"
    items = "".join(f"<li>{html.escape(d)}</li>" for d in PAPER_DIFFERENCES)
    return paragraph + f"<p>Where this differs from the paper's procedure (<code>--responsible paper</code> follows the paper):</p><ul>{items}</ul>"


def _roc_curves(predictions: pd.DataFrame, positive, model: str) -> dict:
    """``{family: (y, scores, AUC)}`` of one model's columns (``<family>:<model>``) of a predictions table."""
    y = (predictions["label"] == positive).to_numpy().astype(int)
    curves = {}
    for col in predictions.columns[1:]:
        family, m = col.rsplit(":", 1)
        if m == model:
            scores = predictions[col].to_numpy()
            curves[family] = (y, scores, auc(y, scores))
    return curves


def _write_tables_and_figures(result, out: Path) -> tuple[list, list, list]:
    """CSVs, study.json and PNGs of ``result``; returns the (path, caption) figures: cross-validation ROC,
    external ROC, responsible vectors."""
    from .plots import plot_class_histograms, plot_roc

    info = result.info
    result.metrics.to_csv(out / "metrics.csv", index=False)
    result.fold_metrics.to_csv(out / "fold_metrics.csv", index=False)
    result.comparisons.to_csv(out / "comparisons.csv", index=False)
    result.predictions.to_csv(out / "predictions.csv")
    selection_table(result.cv).to_csv(out / "selection.csv", index=False)
    (out / "study.json").write_text(json.dumps(info, indent=2, default=str))
    cv_figures, external_figures, rv_figures = [], [], []
    title = f"({class_name(info, 'positive')} vs {class_name(info, 'negative')})"
    for model in info["models"]:
        path = plot_roc(_roc_curves(result.predictions, info["positive"], model), out / f"roc_{model}.png", f"{model}: out-of-fold ROC {title}")
        how = (
            "the pooled leave-one-out scores."
            if MODELS[model][0] == "loo"
            else "out-of-fold scores averaged over repeats; the AUC in the legend is of these pooled"
            " scores and can differ slightly from the mean of the per-fold AUCs in the table."
        )
        cv_figures.append((path, f"ROC curves of the {model} model from " + how))
    if result.external is not None:
        result.external.to_csv(out / "external.csv", index=False)
        result.external_predictions.to_csv(out / "external_predictions.csv")
        for model in info["models"]:
            curves = _roc_curves(result.external_predictions, info["positive"], model)
            path = plot_roc(curves, out / f"roc_external_{model}.png", f"{model}: external test set ROC")
            external_figures.append((path, f"ROC curves of the {model} model on the external test set."))
    rv = result.responsible
    if rv is not None:
        rv.table.to_csv(out / "responsible_vectors.csv", index=False)
        names = {str(info[w]): class_name(info, w) for w in ("positive", "negative")}
        means = rv.class_means.rename(index=lambda v: names.get(str(v), str(v)))
        marked = rv.responsible.assign(responsible_for=[names.get(str(v), str(v)) for v in rv.responsible["responsible_for"]])
        heading = "Average codeword histogram per class" + ("" if len(marked) else " (no responsible codeword)")
        path = plot_class_histograms(means, marked, out / "responsible_vectors.png", title=heading)
        rv_figures.append((path, "Average codeword histogram per group; dashed lines mark responsible codewords."))
    return cv_figures, external_figures, rv_figures


def _figure_html(figures) -> list[str]:
    return [f"<figure>{_img(path)}<figcaption>{html.escape(caption)}</figcaption></figure>" for path, caption in figures]


def _sections(result, cv_figures, external_figures, rv_figures) -> list[str]:
    """The report's HTML sections after the summary and caveats, in order."""
    info, rv = result.info, result.responsible
    body = ["<h2>Performance (cross-validation)</h2>", "<p>Mean [95% CI] of each metric.</p>", _table_html(_metric_matrix(result.metrics))]
    if (result.metrics["validation"] == "leave-one-out").any():
        body.append(
            "<p>Leave-one-out rows: the estimate on the pooled leave-one-out scores [95% CI]; intervals: "
            f"{html.escape(interval_note(info['n_boot']))} Cross-validated rows: mean over the test folds "
            "[95% CI from the Nadeau-Bengio corrected variance].</p>"
        )
    body += _figure_html(cv_figures)
    body.append("<h2>Comparisons between feature families</h2>")
    body.append(_table_html(result.comparisons) if len(result.comparisons) else "<p>Only one family: nothing to compare.</p>")
    if result.external is not None:
        body.append(f"<h2>External validation</h2><p>Estimate [95% CI]. Intervals: {html.escape(interval_note(info['n_boot']))}</p>")
        body.append(_table_html(_external_matrix(result.external)))
        body += _figure_html(external_figures)
    if rv is not None:
        body.append("<h2>Responsible vectors</h2>")
        shown = rv.table[rv.table["in_model"] | rv.table["responsible"]]
        body.append(
            f"<p>{int(rv.table['responsible'].sum())} responsible codeword(s). Codewords in the model "
            "(all codewords are in <code>responsible_vectors.csv</code>):</p>"
        )
        body.append(_table_html(shown.drop(columns=["column"]), "{:.4g}"))
        body += _figure_html(rv_figures)
    if info.get("confounds") is not None:
        body += ["<h2>Confounds</h2>", _confounds_html(list(info["confounds"]))]
    body += ["<h2>Methods</h2>", _methods(result), "<h2>All metrics (tidy)</h2>", _table_html(result.metrics)]
    return body


def write_report(result, out_dir: str | Path) -> Path:
    """Write the study's CSVs, PNGs and ``report.html`` into ``out_dir``; return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = result.info
    figures = _write_tables_and_figures(result, out)
    body = [
        "<h1>Radiomics study: " + html.escape(f"{class_name(info, 'positive')} vs {class_name(info, 'negative')}") + "</h1>",
        f"<p style='color:#666'>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by deepradiomics "
        f"from {html.escape(str(info.get('features_source')))}.</p>",
        "<h2>Summary</h2>",
        f"<div class='summary'>{_summary(result)}</div>",
        "<h2>Caveats</h2>",
        f"<div class='caveats'>{_caveats(result)}</div>",
        *_sections(result, *figures),
    ]
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>deepradiomics study: {html.escape(info['target'])}</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )
    report = out / "report.html"
    report.write_text(page, encoding="utf-8")
    return report


__all__ = ["write_report", "METRICS"]
