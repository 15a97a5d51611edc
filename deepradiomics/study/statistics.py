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
- :func:`icc` / :func:`icc_many`: intraclass correlations ICC(1,1), ICC(2,1), ICC(3,1) (Shrout & Fleiss 1979).
- :func:`kruskal_dunn`: Kruskal-Wallis H test and Dunn's pairwise test (Kruskal & Wallis 1952; Dunn 1964).
- :func:`firth_logit` / :func:`penalised_lr_statistics`: Firth-penalised logistic regression and its
  penalised likelihood-ratio tests (Firth 1993; Heinze & Schemper 2002).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from ..errors import ModelError, ParamsError, StudyDataError, did_you_mean

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


# ---------------------------------------------------------------------------------------------- ICC
def icc(ratings) -> dict[str, float]:
    """Intraclass correlations of an (n targets x k raters) matrix from the two-way ANOVA.

    With the mean squares between targets (BMS), between raters (JMS), residual (EMS) and within
    targets (WMS)::

        ICC(1,1) = (BMS - WMS) / (BMS + (k-1) WMS)
        ICC(2,1) = (BMS - EMS) / (BMS + (k-1) EMS + k (JMS - EMS) / n)
        ICC(3,1) = (BMS - EMS) / (BMS + (k-1) EMS)

    Returns ``icc11``, ``icc21``, ``icc31`` and the mean squares; an ICC whose denominator is 0
    (no variance at all) is NaN.

    Examples
    --------
    >>> r = icc([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    >>> round(r["icc21"], 2), round(r["icc31"], 2)  # Shrout & Fleiss (1979), Table 4
    (0.29, 0.71)
    """
    values = np.asarray(ratings, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < 2:
        raise StudyDataError(f"ICC needs an (n targets x k raters) matrix with n, k >= 2; got shape {values.shape}")
    out = icc_many(values[:, :, None])
    return {key: float(value[0]) for key, value in out.items()}


def icc_many(values: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`icc` for F features at once: ``values`` is (n targets, k raters, F)."""
    y = np.asarray(values, dtype=np.float64)
    n, k = y.shape[:2]
    grand = y.mean(axis=(0, 1))
    row_means = y.mean(axis=1)
    col_means = y.mean(axis=0)
    ss_rows = k * ((row_means - grand) ** 2).sum(0)
    ss_cols = n * ((col_means - grand) ** 2).sum(0)
    ss_total = ((y - grand) ** 2).sum(axis=(0, 1))
    ss_err = np.maximum(ss_total - ss_rows - ss_cols, 0.0)
    bms = ss_rows / (n - 1)
    jms = ss_cols / (k - 1)
    ems = ss_err / ((n - 1) * (k - 1))
    wms = (ss_cols + ss_err) / (n * (k - 1))

    def ratio(num, den):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    return {
        "icc11": ratio(bms - wms, bms + (k - 1) * wms),
        "icc21": ratio(bms - ems, bms + (k - 1) * ems + k * (jms - ems) / n),
        "icc31": ratio(bms - ems, bms + (k - 1) * ems),
        "bms": bms,
        "jms": jms,
        "ems": ems,
        "wms": wms,
    }


# ---------------------------------------------------------------------------------------------- rank tests
def kruskal_dunn(groups: Mapping[str, np.ndarray], correction: str = "holm") -> tuple[dict, pd.DataFrame]:
    """Kruskal-Wallis across ``groups`` and Dunn's pairwise test (joint ranking, ``correction``-adjusted p).

    Parameters
    ----------
    groups
        ``{name: values}``; empty groups are left out.
    correction
        Adjustment of Dunn's pairwise p-values (:data:`CORRECTIONS`).

    Returns
    -------
    (kruskal, dunn)
        ``{"statistic", "p_value", "n_groups"}`` of the Kruskal-Wallis H test, and a table of every pair
        (``group_a, group_b, mean_rank_a, mean_rank_b, median_a, median_b, p_adjusted``); NaN and an empty
        table when fewer than two non-empty groups exist or every value is equal.

    References
    ----------
    Kruskal WH, Wallis WA. Use of ranks in one-criterion variance analysis. J Am Stat Assoc 1952;47:583-621.
    Dunn OJ. Multiple comparisons using rank sums. Technometrics 1964;6:241-252 (scikit-posthocs'
    ``posthoc_dunn``, with the tie correction).
    """
    import scikit_posthocs as sp
    from scipy import stats

    groups = {k: np.asarray(v, dtype=np.float64) for k, v in groups.items() if np.asarray(v).size > 0}
    kruskal = {"statistic": float("nan"), "p_value": float("nan"), "n_groups": len(groups)}
    columns = ["group_a", "group_b", "mean_rank_a", "mean_rank_b", "median_a", "median_b", "p_adjusted"]
    pooled = np.concatenate(list(groups.values())) if groups else np.array([])
    if len(groups) < 2 or np.ptp(pooled) == 0:
        return kruskal, pd.DataFrame(columns=columns)
    h, p = stats.kruskal(*groups.values())
    kruskal.update(statistic=float(h), p_value=float(p))
    frame = pd.DataFrame({"value": pooled, "group": np.repeat(list(groups), [g.size for g in groups.values()])})
    frame["rank"] = stats.rankdata(frame["value"])
    mean_rank = frame.groupby("group", sort=False)["rank"].mean()
    adjust = None if correction == "none" else correction
    matrix = sp.posthoc_dunn(frame, val_col="value", group_col="group", p_adjust=adjust)
    names = list(groups)
    rows = [
        [a, b, float(mean_rank[a]), float(mean_rank[b]), float(np.median(groups[a])), float(np.median(groups[b])), float(matrix.loc[a, b])]
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    return kruskal, pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------- Firth
def _penalised_derivatives(Xd: np.ndarray, y: np.ndarray, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Firth-penalised log-likelihood ``l(b) + 0.5 log det I(b)``, its gradient, its Hessian and ``I(b)``.

    With ``w = p (1 - p)``, ``a = w (1 - 2p)``, ``H = X I^-1 X'`` and ``h = w diag(H)`` (the hat values):
    the gradient is the modified score ``X' (y - p + h (0.5 - p))`` (Firth 1993) and the Hessian is
    ``-X'WX + 0.5 X' diag(h (1 - 6w)) X - 0.5 X' diag(a) (H * H) diag(a) X`` (``*`` elementwise), from
    ``d log det I = tr(I^-1 dI)`` and ``d I^-1 = -I^-1 dI I^-1``. The value is ``-inf`` where ``I(b)`` is
    singular.
    """
    eta = Xd @ beta
    p = expit(eta)
    w = p * (1 - p)
    info = Xd.T @ (Xd * w[:, None])
    sign, logdet = np.linalg.slogdet(info)
    if sign <= 0 or not np.isfinite(logdet):
        k = len(beta)
        return -np.inf, np.zeros(k), np.zeros((k, k)), info
    hat_kernel = Xd @ np.linalg.solve(info, Xd.T)
    h = w * np.diag(hat_kernel)
    a = w * (1 - 2 * p)
    value = float(np.sum(y * eta - np.logaddexp(0, eta)) + 0.5 * logdet)
    score = Xd.T @ (y - p + h * (0.5 - p))
    weighted = Xd * a[:, None]
    hessian = -info + 0.5 * (Xd.T @ (Xd * (h * (1 - 6 * w))[:, None]) - weighted.T @ (hat_kernel**2) @ weighted)
    return value, score, hessian, info


def _firth_ascent(
    Xd: np.ndarray, y: np.ndarray, start: np.ndarray, free: np.ndarray, gtol: float, max_iter: int = 200, max_step: float = 5.0
) -> tuple[np.ndarray, float]:
    """Local maximum of the penalised likelihood reached from ``start`` (coefficients outside ``free`` at 0).

    Newton steps with the exact Hessian where it is negative definite (fast near a maximum), else the
    modified-score step ``I^-1 U*`` of Firth's original algorithm, which always points uphill; each step is
    capped at ``max_step`` per coefficient (as ``logistf``'s ``maxstep``) and halved until the penalised
    likelihood increases. Stops when every free component of the gradient is below ``gtol`` or when no
    halving increases the value any more (the floating-point limit).
    """
    beta = np.where(free, start, 0.0).astype(float)
    value, score, hessian, info = _penalised_derivatives(Xd, y, beta)
    if not np.isfinite(value):
        return beta, -np.inf
    for _ in range(max_iter):
        gradient = score[free]
        if np.max(np.abs(gradient), initial=0.0) < gtol:
            break
        try:
            np.linalg.cholesky(-hessian[np.ix_(free, free)])
            direction = np.linalg.solve(-hessian[np.ix_(free, free)], gradient)
        except np.linalg.LinAlgError:  # not negative definite here (the likelihood is not concave)
            direction = np.linalg.lstsq(info[np.ix_(free, free)], gradient, rcond=None)[0]
        largest = np.max(np.abs(direction))
        if largest > max_step:
            direction *= max_step / largest
        for _halving in range(60):
            candidate = beta.copy()
            candidate[free] += direction
            new = _penalised_derivatives(Xd, y, candidate)
            if new[0] > value:
                break
            direction /= 2
        else:
            break
        beta = candidate
        value, score, hessian, info = new
    return beta, float(value)


def _ridge_path(Xd: np.ndarray, y: np.ndarray, free: np.ndarray, penalties=(1.0, 0.1, 0.01)) -> list[np.ndarray]:
    """L2-penalised maximum-likelihood fits (intercept unpenalised), from strong to weak penalty.

    They are starting points for the penalised-likelihood search: each solves a concave problem with one
    maximum, and as the penalty weakens they move towards the directions in which the data (nearly)
    separate, where a second maximum of Firth's non-concave likelihood may sit.
    """
    k = Xd.shape[1]
    penalised = free.copy()
    penalised[0] = False
    beta = np.zeros(k)
    path = []
    for lam in penalties:
        for _ in range(100):
            p = expit(Xd @ beta)
            w = p * (1 - p)
            grad = Xd.T @ (y - p) - lam * penalised * beta
            hess = Xd.T @ (Xd * w[:, None]) + lam * np.diag(penalised.astype(float))
            step = np.zeros(k)
            step[free] = np.linalg.lstsq(hess[np.ix_(free, free)], grad[free], rcond=None)[0]
            beta = beta + step
            if np.max(np.abs(step)) < 1e-10:
                break
        path.append(beta.copy())
    return path


def firth_logit(
    X: np.ndarray,
    y: np.ndarray,
    zero: Sequence[int] = (),
    starts: Sequence[np.ndarray] = (),
    gtol: float = 1e-8,
) -> tuple[np.ndarray, float]:
    """Firth-penalised logistic regression (with intercept): the highest maximum found over several starts.

    The penalised log-likelihood ``l(b) + 0.5 log det I(b)`` (Firth 1993; Heinze & Schemper 2002) is not
    concave and can have several local maxima, so a single Newton run from zero may stop at a lower one.
    It is therefore climbed (:func:`_firth_ascent`) from every start in: zero, three
    L2-penalised maximum-likelihood fits (penalties 1, 0.1, 0.01) and ``starts``; the highest maximum
    reached is returned. No local method can prove that maximum global; this search finds it in the
    two-maxima example of the tests and in the LGG case where a single Newton run from zero did not.

    Parameters
    ----------
    X
        Covariates, one row per case (the intercept is added as coefficient 0).
    y
        0/1 labels.
    zero
        Coefficients held at 0 (positions in the returned vector: 0 = intercept, ``1 + j`` = column ``j`` of
        ``X``). The design, and hence the penalty ``0.5 log det I(b)``, keeps every column: this is the
        constrained model of the penalised likelihood-ratio test (Heinze & Schemper 2002; R's ``logistf``).
    starts
        Extra starting points (full-length coefficient vectors; held coefficients are set to 0).
    gtol
        Gradient tolerance of each local climb.

    Returns
    -------
    (coefficients, penalised log-likelihood)
    """
    y = np.asarray(y, dtype=float)
    Xd = np.column_stack([np.ones(len(y)), np.asarray(X, dtype=float).reshape(len(y), -1)])
    k = Xd.shape[1]
    free = np.ones(k, dtype=bool)
    for index in zero:
        if not 0 <= int(index) < k:
            raise ParamsError(f"firth_logit: coefficient {index} cannot be held at 0; the model has coefficients 0..{k - 1}")
        free[int(index)] = False
    candidates = [np.zeros(k), *_ridge_path(Xd, y, free), *(np.asarray(s, dtype=float) for s in starts)]
    best_beta, best_value = np.zeros(k), -np.inf
    for start in candidates:
        beta, value = _firth_ascent(Xd, y, start, free, gtol)
        if value > best_value:
            best_beta, best_value = beta, value
    return best_beta, float(best_value)


def penalised_lr_statistics(Z: np.ndarray, y: np.ndarray) -> tuple[float, dict[int, float]]:
    """Penalised likelihood-ratio statistic of every column of a Firth logistic model.

    The reduced model of column ``j`` holds its coefficient at 0 with the full design kept in the penalty
    (Heinze & Schemper 2002; the test of R's ``logistf``), so it is a constrained version of the full model
    and ``2 (llf_full - llf_j) >= 0`` at the maxima. Every constrained fit also starts from the full fit
    with ``b_j`` set to 0, and the full fit is redone from any constrained maximum that beats it, so the
    two searches cannot disagree about which maximum is higher. The statistics do not change when a column
    is rescaled or shifted (the penalty changes by the same constant in both models).

    Parameters
    ----------
    Z
        Covariates (n cases x p columns); an intercept is added.
    y
        0/1 labels.

    Returns
    -------
    (llf_full, {j: LR_j})
        The maximised penalised log-likelihood of the full model and, for each column ``j``, the statistic
        (chi-square with 1 degree of freedom under the null hypothesis ``b_j = 0``).

    Raises
    ------
    ModelError
        If a statistic is still negative beyond rounding after the mutual restarts (a bug, not a data
        problem: it is never clipped silently).
    """
    p = Z.shape[1]
    beta_full, llf_full = firth_logit(Z, y)
    for _round in range(3):
        reduced = {}
        for j in range(p):
            warm = beta_full.copy()
            warm[j + 1] = 0.0
            reduced[j] = firth_logit(Z, y, zero=[j + 1], starts=[warm])
        better = [beta for beta, llf in reduced.values() if llf > llf_full]
        if not better:
            break
        beta_full, llf_full = firth_logit(Z, y, starts=better)
    statistics = {}
    for j, (_, llf_j) in reduced.items():
        lr = 2.0 * (llf_full - llf_j)
        # each climb stops within rounding of its maximum: a statistic that close to 0 is 0, below is a bug
        if lr < -1e-6 * max(1.0, abs(llf_full)):
            raise ModelError(
                f"penalised likelihood-ratio statistic of model column {j} is {lr:.3g} < 0: the constrained fit"
                " beat the full fit after three rounds of mutual restarts; this is a bug in deepradiomics'"
                " Firth fit, please report it with the counts table"
            )
        statistics[j] = max(lr, 0.0)
    return float(llf_full), statistics
