"""Statistics for studies: binary metrics, confidence intervals and paired model comparisons.

- :func:`binary_metrics`: AUC, accuracy, sensitivity, specificity, PPV, NPV, MCC, F1 of one set of
  predictions.
- :func:`summarize_resamples`: mean, sd and a 95% CI of a metric over repeated k-fold CV, with the
  Nadeau-Bengio variance correction (folds share training cases, so the naive sd/sqrt(J) is too small).
- :func:`corrected_resampled_ttest`: the Nadeau & Bengio (2003) corrected resampled t-test on paired
  per-fold differences.
- :func:`delong_test`: DeLong et al. (1988) test for two correlated AUCs on the same cases, with the fast
  algorithm of Sun & Xu (2014).
- :func:`bootstrap_metrics`: stratified percentile-bootstrap CIs of every metric (external validation,
  leave-one-out).
- :func:`adjust_pvalues`: Holm / Benjamini-Hochberg / none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ParamsError, did_you_mean

#: metric names, in report order
METRICS: tuple[str, ...] = (
    "AUC",
    "accuracy",
    "sensitivity",
    "specificity",
    "PPV",
    "NPV",
    "MCC",
    "F1",
)

CORRECTIONS = ("holm", "fdr_bh", "bonferroni", "none")
_CORRECTION_ALIASES = {"bh": "fdr_bh", "fdr": "fdr_bh", "benjamini-hochberg": "fdr_bh"}


def binary_metrics(y_true, scores, threshold: float) -> dict[str, float]:
    """Metrics of one set of predictions.

    Parameters
    ----------
    y_true
        0/1 labels (1 = positive class).
    scores
        Continuous scores, higher = more likely positive (probability or SVM decision value).
    threshold
        A case is called positive when ``score >= threshold`` (0.5 for probabilities, 0 for SVM).

    Returns
    -------
    dict
        ``METRICS`` -> value. A ratio whose denominator is zero (e.g. PPV when nothing is called positive,
        AUC when one class is absent) is NaN: it is undefined, not zero. MCC follows the usual convention
        of 0 when a row or column of the confusion matrix is empty.
    """
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=float)
    pred = (s >= threshold).astype(int)
    tp = int(np.sum((pred == 1) & (y == 1)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    denom = np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        "AUC": auc(y, s),
        "accuracy": ratio(tp + tn, len(y)),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "PPV": ratio(tp, tp + fp),
        "NPV": ratio(tn, tn + fn),
        "MCC": (tp * tn - fp * fn) / denom if denom > 0 else 0.0,
        "F1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def auc(y_true, scores) -> float:
    """Area under the ROC curve (Mann-Whitney form, ties count 1/2); NaN when a class is absent."""
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=float)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def summarize_resamples(values: Sequence[float], test_fraction: float, level: float = 0.95) -> dict:
    """Mean, sd and CI of a metric over the J folds of repeated k-fold CV.

    The CI is ``mean +- t_{J-1} * sqrt((1/J + n_test/n_train) * var)`` (Nadeau & Bengio 2003), which
    accounts for the overlap of training sets between folds. NaN folds (metric undefined in that fold)
    are left out; ``n`` says how many were used.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    j = len(v)
    if j == 0:
        return {"mean": np.nan, "sd": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0}
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if j > 1 else float("nan")
    if j > 1:
        ratio = test_fraction / (1.0 - test_fraction)
        se = np.sqrt((1.0 / j + ratio) * sd**2)
        half = stats.t.ppf(0.5 + level / 2, j - 1) * se
    else:
        half = float("nan")
    return {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "n": j}


def corrected_resampled_ttest(diffs: Sequence[float], test_fraction: float) -> tuple[float, float]:
    """Nadeau-Bengio corrected resampled t-test of paired per-fold differences.

    Parameters
    ----------
    diffs
        Per-fold differences of a metric between two models evaluated on the same folds.
    test_fraction
        ``n_test / (n_train + n_test)`` of one fold (``1/k`` for k-fold CV).

    Returns
    -------
    (t, p)
        Two-sided; ``t = mean / sqrt((1/J + n_test/n_train) * var)`` with J-1 degrees of freedom.
        ``(nan, nan)`` when fewer than two finite differences exist; ``(0, 1)`` when all are equal.
    """
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    j = len(d)
    if j < 2:
        return float("nan"), float("nan")
    var = d.var(ddof=1)
    if var == 0:
        return (0.0, 1.0) if d.mean() == 0 else (float(np.sign(d.mean()) * np.inf), 0.0)
    ratio = test_fraction / (1.0 - test_fraction)
    t = d.mean() / np.sqrt((1.0 / j + ratio) * var)
    p = 2 * stats.t.sf(abs(t), j - 1)
    return float(t), float(p)


def _midrank(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average")


def delong_test(y_true, scores_a, scores_b) -> dict[str, float]:
    """DeLong test of two correlated ROC AUCs computed on the same cases.

    Returns
    -------
    dict
        ``auc_a``, ``auc_b``, ``difference`` (a - b), ``se``, ``z``, ``p`` (two-sided).
    """
    y = np.asarray(y_true).astype(int)
    preds = np.vstack([np.asarray(scores_a, float), np.asarray(scores_b, float)])
    pos, neg = preds[:, y == 1], preds[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ParamsError(f"DeLong needs at least two cases of each class (got {m} positive, {n} negative)")
    tx = np.vstack([_midrank(r) for r in pos])
    ty = np.vstack([_midrank(r) for r in neg])
    tz = np.vstack([_midrank(r) for r in preds[:, np.r_[np.flatnonzero(y == 1), np.flatnonzero(y == 0)]]])
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.cov(v01) / m + np.cov(v10) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    if var <= 0:
        z, p = (0.0, 1.0) if diff == 0 else (float(np.sign(diff) * np.inf), 0.0)
    else:
        z = diff / np.sqrt(var)
        p = float(2 * stats.norm.sf(abs(z)))
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": diff,
        "se": float(np.sqrt(max(var, 0.0))),
        "z": float(z),
        "p": float(p),
    }


def bootstrap_metrics(
    y_true,
    scores,
    threshold: float,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Point estimate and stratified percentile-bootstrap CI of every metric.

    Resampling is done within each class so that every replicate keeps both classes (AUC defined).

    Returns
    -------
    DataFrame
        Index ``METRICS``; columns ``estimate``, ``sd`` (bootstrap sd), ``ci_low``, ``ci_high``.
    """
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=float)
    point = binary_metrics(y, s, threshold)
    rng = np.random.default_rng(seed)
    idx_pos, idx_neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    reps = np.empty((n_boot, len(METRICS)))
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(idx_pos, len(idx_pos)), rng.choice(idx_neg, len(idx_neg))])
        m = binary_metrics(y[idx], s[idx], threshold)
        reps[b] = [m[k] for k in METRICS]
    alpha = (1 - level) / 2
    out = {}
    for i, name in enumerate(METRICS):
        col = reps[:, i][np.isfinite(reps[:, i])]
        if len(col) == 0:
            out[name] = (point[name], np.nan, np.nan, np.nan)
        else:
            out[name] = (
                point[name],
                float(col.std(ddof=1)),
                float(np.quantile(col, alpha)),
                float(np.quantile(col, 1 - alpha)),
            )
    return pd.DataFrame.from_dict(out, orient="index", columns=["estimate", "sd", "ci_low", "ci_high"])


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> np.ndarray:
    """Multiple-testing correction; NaN p-values stay NaN and do not count as tests.

    ``method``: ``holm`` (family-wise error), ``fdr_bh`` (Benjamini-Hochberg false discovery rate),
    ``bonferroni`` or ``none``.
    """
    method = _CORRECTION_ALIASES.get(str(method).lower(), method)
    if method not in CORRECTIONS:
        raise ParamsError(
            f"unknown multiple-testing correction {method!r}; use one of {', '.join(CORRECTIONS)}."
            + did_you_mean(str(method), CORRECTIONS)
        )
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if method == "none" or not ok.any():
        out[ok] = p[ok]
        return out
    from statsmodels.stats.multitest import multipletests

    out[ok] = multipletests(p[ok], method=method)[1]
    return out
