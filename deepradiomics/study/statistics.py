"""Statistics for studies: binary metrics, confidence intervals and paired model comparisons.

- :func:`binary_metrics`: AUC, accuracy, sensitivity, specificity, PPV, NPV, MCC, F1 of one set of
  predictions.
- :func:`summarize_resamples`: mean, sd and a 95% CI of a metric over repeated k-fold CV, with the
  Nadeau-Bengio variance correction (folds share training cases, so the naive sd/sqrt(J) is too small).
- :func:`corrected_resampled_ttest`: the Nadeau & Bengio (2003) corrected resampled t-test on paired
  per-fold differences.
- :func:`delong_test`: DeLong et al. (1988) test for two correlated AUCs on the same cases, with the fast
  algorithm of Sun & Xu (2014).
- :func:`bootstrap_metrics`: CIs of every metric of one set of predictions (external validation,
  leave-one-out): exact Clopper-Pearson intervals from the counts for the proportions (sensitivity,
  specificity, PPV, NPV, accuracy), stratified percentile bootstrap for AUC, MCC and F1;
  :func:`interval_note` says so in words for reports.
- :func:`proportion_ci`: Clopper-Pearson or Wilson interval of a binomial proportion.
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

#: metrics that are binomial proportions (successes / trials): their CI comes from the counts
PROPORTIONS: tuple[str, ...] = ("accuracy", "sensitivity", "specificity", "PPV", "NPV")
#: metrics whose CI comes from the stratified percentile bootstrap
BOOTSTRAPPED: tuple[str, ...] = ("AUC", "MCC", "F1")
PROPORTION_METHODS = ("clopper-pearson", "wilson")

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
    counts = confusion_counts(y, s, threshold)
    tp, tn, fp, fn = counts["tp"], counts["tn"], counts["fp"], counts["fn"]

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    denom = np.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    out = {"AUC": auc(y, s)}
    out.update({name: ratio(k, n) for name, (k, n) in proportion_counts(counts).items()})
    out["MCC"] = (tp * tn - fp * fn) / denom if denom > 0 else 0.0
    out["F1"] = ratio(2 * tp, 2 * tp + fp + fn)
    return {name: out[name] for name in METRICS}


def confusion_counts(y_true, scores, threshold: float) -> dict[str, int]:
    """``tp``, ``tn``, ``fp``, ``fn`` of the calls ``score >= threshold`` against 0/1 labels."""
    y = np.asarray(y_true).astype(int)
    pred = np.asarray(scores, dtype=float) >= threshold
    return {
        "tp": int(np.sum(pred & (y == 1))),
        "tn": int(np.sum(~pred & (y == 0))),
        "fp": int(np.sum(pred & (y == 0))),
        "fn": int(np.sum(~pred & (y == 1))),
    }


def proportion_counts(counts: dict[str, int]) -> dict[str, tuple[int, int]]:
    """``PROPORTIONS`` -> (successes, trials) from confusion counts (e.g. sensitivity = TP / (TP + FN))."""
    tp, tn, fp, fn = counts["tp"], counts["tn"], counts["fp"], counts["fn"]
    return {
        "accuracy": (tp + tn, tp + tn + fp + fn),
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "PPV": (tp, tp + fp),
        "NPV": (tn, tn + fn),
    }


def proportion_ci(successes: int, trials: int, level: float = 0.95, method: str = "clopper-pearson") -> tuple[float, float]:
    """Two-sided confidence interval of a binomial proportion ``successes / trials``.

    Parameters
    ----------
    successes, trials
        Counts; ``trials == 0`` gives ``(nan, nan)``.
    level
        Confidence level.
    method
        ``"clopper-pearson"`` (default): the exact interval that inverts two one-sided binomial tests,
        ``[Beta(a/2; k, n-k+1), Beta(1-a/2; k+1, n-k)]`` with 0 / 1 at ``k = 0`` / ``k = n``. It is used for
        the study metrics because its coverage is at least ``level`` for every true proportion and every
        ``n``, including near 0 and 1, where counts such as 3/3 or 9/9 sit and where Wilson's coverage dips
        below the nominal level (Brown, Cai & DasGupta 2001); the price is a wider, conservative interval.
        ``"wilson"``: the score interval (Wilson 1927), coverage close to ``level`` on average, narrower.
        Both agree with Newcombe (1998), Table I (methods 5 and 3) and statsmodels' ``proportion_confint``
        (``"beta"`` and ``"wilson"``).

    Examples
    --------
    >>> [round(v, 4) for v in proportion_ci(81, 263)]
    [0.2527, 0.3676]
    >>> [round(v, 4) for v in proportion_ci(3, 3)]
    [0.2924, 1.0]
    """
    if method not in PROPORTION_METHODS:
        raise ParamsError(
            f"unknown proportion interval {method!r}; use one of {', '.join(PROPORTION_METHODS)}."
            + did_you_mean(str(method), PROPORTION_METHODS)
        )
    k, n = int(successes), int(trials)
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise ParamsError(f"a proportion needs 0 <= successes <= trials (got {k} of {n})")
    alpha = 1.0 - level
    if method == "clopper-pearson":
        low = float(stats.beta.ppf(alpha / 2, k, n - k + 1)) if k > 0 else 0.0
        high = float(stats.beta.ppf(1 - alpha / 2, k + 1, n - k)) if k < n else 1.0
        return low, high
    z = float(stats.norm.ppf(1 - alpha / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at k = 0 or k = n one limit is exactly 0 or 1; the formula gives it up to rounding
    return (0.0 if k == 0 else float(centre - half)), (1.0 if k == n else float(centre + half))


def interval_note(n_boot: int, level: float = 0.95) -> str:
    """One sentence for reports: which interval :func:`bootstrap_metrics` gives each metric."""
    pct = f"{level:.0%}"
    return (
        f"{', '.join(PROPORTIONS[1:])} and {PROPORTIONS[0]}: exact Clopper-Pearson {pct} interval from the counts"
        " (at least the nominal coverage even for counts such as 3/3; for PPV and NPV given the number of"
        f" positive and negative calls); {', '.join(BOOTSTRAPPED[:-1])} and {BOOTSTRAPPED[-1]}: stratified"
        f" percentile bootstrap {pct} interval ({n_boot} replicates, resampled within each class)."
    )


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
    """Point estimate and CI of every metric of one set of predictions.

    - Proportions (``PROPORTIONS``: sensitivity, specificity, PPV, NPV, accuracy): exact Clopper-Pearson
      interval from the counts (:func:`proportion_ci`). A percentile bootstrap collapses for such counts:
      3/3 correct negatives give specificity 1 in every replicate, hence a "CI" of [1, 1]. PPV and NPV
      intervals are conditional on the number of positive and negative calls.
    - ``AUC``, ``MCC``, ``F1``: stratified percentile bootstrap, resampling within each class so that every
      replicate keeps both classes (AUC defined).

    Returns
    -------
    DataFrame
        Index ``METRICS``; columns ``estimate``, ``sd`` (bootstrap sd for AUC, MCC and F1; NaN for the
        proportions, whose interval does not come from the bootstrap), ``ci_low``, ``ci_high``, ``interval``
        (``"clopper-pearson"`` or ``"bootstrap"``), ``successes`` and ``trials`` (the counts of a
        proportion; NaN otherwise).
    """
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=float)
    point = binary_metrics(y, s, threshold)
    rng = np.random.default_rng(seed)
    idx_pos, idx_neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    reps = np.empty((n_boot, len(BOOTSTRAPPED)))
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(idx_pos, len(idx_pos)), rng.choice(idx_neg, len(idx_neg))])
        m = binary_metrics(y[idx], s[idx], threshold)
        reps[b] = [m[k] for k in BOOTSTRAPPED]
    alpha = (1 - level) / 2
    out = {}
    for i, name in enumerate(BOOTSTRAPPED):
        col = reps[:, i][np.isfinite(reps[:, i])]
        if len(col) == 0:
            out[name] = (point[name], np.nan, np.nan, np.nan, "bootstrap", np.nan, np.nan)
        else:
            out[name] = (
                point[name],
                float(col.std(ddof=1)) if len(col) > 1 else np.nan,
                float(np.quantile(col, alpha)),
                float(np.quantile(col, 1 - alpha)),
                "bootstrap",
                np.nan,
                np.nan,
            )
    for name, (k, n) in proportion_counts(confusion_counts(y, s, threshold)).items():
        low, high = proportion_ci(k, n, level)
        out[name] = (point[name], np.nan, low, high, "clopper-pearson", k, n)
    columns = ["estimate", "sd", "ci_low", "ci_high", "interval", "successes", "trials"]
    return pd.DataFrame.from_dict(out, orient="index", columns=columns).loc[list(METRICS)]


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
