"""Responsible vectors (Kobayashi et al., Sci Rep 2021): the codewords whose counts carry the label.

Procedure, on the whole cohort (this is explanation, not validation: nothing here estimates accuracy):

1. **Usage filter** (ignores the label, so it costs no multiple-testing budget): drop codewords used
   (count > 0) in fewer than ``min_cases`` cases (default: 10% of the cases, at least 3). A codebook of 512
   with tens of cases has many codewords that are never or almost never used.
2. **Preselection**: among the codewords that pass, keep the ``max_codewords`` with the smallest
   univariate Mann-Whitney U p-value (default: one codeword per ten cases of the smaller class, at least
   1, at most 10), so that the multivariable model stays estimable (events per variable).
3. **Logistic regression** of the label on the kept counts (z-scored; the likelihood-ratio statistics do
   not depend on that scaling) by maximum likelihood with statsmodels. If the fit does not converge or
   the classes are (quasi-)completely separated (a fitted probability within 1e-6 of 0 or 1), it is
   refitted with Firth's penalised likelihood (Heinze & Schemper 2002) and the tests below use the
   penalised log-likelihoods (``fit_method == "firth"`` in the output).
4. **Per-effect likelihood-ratio test** for each codeword in the model: refit without it;
   ``LR = 2 (llf_full - llf_reduced)``, chi-square with 1 degree of freedom.
5. **Group comparison** of every codeword that passed the usage filter: Shapiro-Wilk normality within
   each class (reported) and the two-sided Mann-Whitney U test between classes (used, as counts are rarely
   normal). Its p-values are corrected over *all* codewords that passed the filter, which also accounts
   for the preselection in step 2.

A codeword is **responsible** when its corrected LRT p and its corrected Mann-Whitney p are both below
``alpha``; it is responsible for the class with the higher mean count.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .. import naming
from ..errors import ParamsError
from .statistics import adjust_pvalues


@dataclass
class ResponsibleVectors:
    """Result of :func:`responsible_vectors`.

    Attributes
    ----------
    table
        One row per codeword column (``column``, ``codeword``, ``n_cases_used``, ``mean_<neg>``,
        ``mean_<pos>`` as ``mean_negative``/``mean_positive``, ``preselection``, ``in_model``,
        ``lrt_statistic``, ``lrt_p``, ``lrt_p_adjusted``, ``shapiro_p_negative``, ``shapiro_p_positive``,
        ``mannwhitney_u``, ``mannwhitney_p``, ``mannwhitney_p_adjusted``, ``responsible``,
        ``responsible_for``), ordered as the input columns.
    class_means
        Mean count per class (rows: negative label, positive label; columns: codeword columns).
    fit_method
        ``"mle"`` or ``"firth"``.
    llf_full
        (Penalised) log-likelihood of the full model.
    settings
        The parameters actually used (min_cases, max_codewords, correction, alpha, labels).
    """

    table: pd.DataFrame
    class_means: pd.DataFrame
    fit_method: str
    llf_full: float
    settings: dict = field(default_factory=dict)

    @property
    def responsible(self) -> pd.DataFrame:
        """Only the responsible codewords."""
        return self.table[self.table["responsible"]]


def _logit_mle(X: np.ndarray, y: np.ndarray):
    """statsmodels Logit fit; returns (llf, ok)."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            res = sm.Logit(y, sm.add_constant(X, has_constant="add")).fit(disp=0, maxiter=200)
        except Exception:  # noqa: BLE001 - PerfectSeparation(Error|Warning), singular matrix
            return float("nan"), False
        p = res.predict()
    converged = bool(res.mle_retvals.get("converged", False))
    separated = bool(np.any(p < 1e-6) or np.any(p > 1 - 1e-6))
    ok = converged and not separated and np.isfinite(res.llf)
    return float(res.llf), ok


def firth_logit(X: np.ndarray, y: np.ndarray, max_iter: int = 200, tol: float = 1e-10) -> tuple[np.ndarray, float]:
    """Firth-penalised logistic regression (with intercept); returns (coefficients, penalised llf).

    Penalised log-likelihood ``l(b) + 0.5 log det I(b)`` maximised by Newton-Raphson with the modified
    score ``X' (y - p + h (0.5 - p))`` (Firth 1993; Heinze & Schemper 2002) and step halving.
    """
    Xd = np.column_stack([np.ones(len(y)), X])
    beta = np.zeros(Xd.shape[1])

    def penalised_llf(b):
        eta = Xd @ b
        p = 1 / (1 + np.exp(-eta))
        w = p * (1 - p)
        sign, logdet = np.linalg.slogdet(Xd.T @ (Xd * w[:, None]))
        ll = np.sum(y * eta - np.logaddexp(0, eta))
        return ll + 0.5 * logdet if sign > 0 else -np.inf

    current = penalised_llf(beta)
    for _ in range(max_iter):
        eta = Xd @ beta
        p = 1 / (1 + np.exp(-eta))
        w = p * (1 - p)
        info = Xd.T @ (Xd * w[:, None])
        info_inv = np.linalg.pinv(info)
        h = np.einsum("ij,jk,ik->i", Xd * np.sqrt(w)[:, None], info_inv, Xd * np.sqrt(w)[:, None])
        score = Xd.T @ (y - p + h * (0.5 - p))
        step = info_inv @ score
        for _half in range(30):
            candidate = penalised_llf(beta + step)
            if candidate >= current - 1e-12:
                break
            step = step / 2
        beta = beta + step
        current = candidate
        if np.max(np.abs(step)) < tol:
            break
    return beta, float(current)


def _fit_llf(X: np.ndarray, y: np.ndarray, method: str) -> float:
    if method == "mle":
        return _logit_mle(X, y)[0]
    return firth_logit(X, y)[1]


def responsible_vectors(
    counts: pd.DataFrame,
    y,
    labels: tuple[str, str] = ("negative", "positive"),
    min_cases: int | None = None,
    max_codewords: int | None = None,
    correction: str = "holm",
    alpha: float = 0.05,
) -> ResponsibleVectors:
    """Find responsible codewords of a binary label (see the module docstring for the procedure).

    Parameters
    ----------
    counts
        Codeword counts, one column per codeword (e.g. the ``*_vqhist_*`` columns), one row per case.
    y
        0/1 labels aligned with ``counts`` (1 = positive class).
    labels
        Display names of class 0 and class 1 (used in ``responsible_for``).
    min_cases, max_codewords
        Usage filter and preselection sizes; ``None`` uses the documented defaults.
    correction
        ``holm``, ``fdr_bh``, ``bonferroni`` or ``none``, applied to the LRT p-values (over the codewords in
        the model) and to the Mann-Whitney p-values (over all codewords that passed the usage filter).
    alpha
        Significance level after correction.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    >>> counts = pd.DataFrame(rng.poisson(20, (60, 8)), columns=[f"original_vqhist_Codeword{i:03d}" for i in range(8)])
    >>> counts.iloc[:, 3] += 15 * y
    >>> rv = responsible_vectors(counts, y, labels=("G2", "G3"))
    >>> rv.responsible[["codeword", "responsible_for"]].values.tolist()
    [['Codeword003', 'G3']]
    """
    y = np.asarray(y).astype(int)
    X = counts.apply(pd.to_numeric, errors="coerce").astype(float)
    if X.isna().any().any():
        bad = X.columns[X.isna().any()].tolist()
        raise ParamsError(
            f"codeword count columns {bad[:5]} have missing or non-numeric values; responsible vectors"
            " need complete counts (drop the failed cases or re-run the extraction)"
        )
    if len(X) != len(y):
        raise ParamsError(f"counts have {len(X)} rows but the labels have {len(y)}")
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if min(n_pos, n_neg) < 3:
        raise ParamsError(f"responsible vectors need at least 3 cases of each class (got {n_pos} positive, {n_neg} negative)")
    n = len(y)
    if min_cases is None:
        min_cases = max(3, int(np.ceil(0.10 * n)))
    if max_codewords is None:
        max_codewords = int(max(1, min(10, min(n_pos, n_neg) // 10)))

    used = (X > 0).sum(axis=0)
    passed = used.index[used >= min_cases].tolist()
    if not passed:
        raise ParamsError(
            f"no codeword is used in at least {min_cases} cases (the most used one appears in {int(used.max())}); lower min_cases"
        )

    # Group comparisons on every codeword that passed the usage filter.
    neg, pos = X[y == 0], X[y == 1]
    mw_u, mw_p, sw_neg, sw_pos = {}, {}, {}, {}
    for col in passed:
        a, b = neg[col].to_numpy(), pos[col].to_numpy()
        if np.ptp(np.r_[a, b]) == 0:
            mw_u[col], mw_p[col] = np.nan, 1.0
        else:
            res = stats.mannwhitneyu(b, a, alternative="two-sided")
            mw_u[col], mw_p[col] = float(res.statistic), float(res.pvalue)
        sw_neg[col] = float(stats.shapiro(a).pvalue) if np.ptp(a) > 0 else np.nan
        sw_pos[col] = float(stats.shapiro(b).pvalue) if np.ptp(b) > 0 else np.nan
    mw_adj = dict(zip(passed, adjust_pvalues([mw_p[c] for c in passed], correction)))

    # Preselection for the multivariable model.
    ranked = sorted(passed, key=lambda c: (mw_p[c], passed.index(c)))
    in_model = ranked[:max_codewords]
    Z = X[in_model].to_numpy()
    Z = (Z - Z.mean(0)) / np.where(Z.std(0) > 0, Z.std(0), 1.0)

    llf_full, ok = _logit_mle(Z, y)
    method = "mle" if ok else "firth"
    if method == "firth":
        llf_full = firth_logit(Z, y)[1]
    lrt_stat, lrt_p = {}, {}
    for j, col in enumerate(in_model):
        reduced = np.delete(Z, j, axis=1)
        llf_reduced = _fit_llf(reduced, y, method) if reduced.shape[1] else _intercept_llf(y, method)
        stat = 2.0 * (llf_full - llf_reduced)
        stat = max(stat, 0.0) if np.isfinite(stat) else float("nan")
        lrt_stat[col], lrt_p[col] = stat, float(stats.chi2.sf(stat, 1))
    lrt_adj = dict(zip(in_model, adjust_pvalues([lrt_p[c] for c in in_model], correction)))

    class_means = pd.DataFrame({labels[0]: neg.mean(axis=0), labels[1]: pos.mean(axis=0)}).T
    rows = []
    for col in X.columns:
        try:
            codeword = naming.FeatureName.parse(str(col)).feature
        except ValueError:
            codeword = str(col)
        mean_neg, mean_pos = float(neg[col].mean()), float(pos[col].mean())
        if col not in passed:
            status = f"rare (used in {int(used[col])} < {min_cases} cases)"
        elif col in in_model:
            status = "in model"
        else:
            status = f"not in top {max_codewords} by Mann-Whitney p"
        responsible = bool(col in in_model and lrt_adj[col] < alpha and mw_adj[col] < alpha and mean_neg != mean_pos)
        rows.append(
            {
                "column": col,
                "codeword": codeword,
                "n_cases_used": int(used[col]),
                "mean_negative": mean_neg,
                "mean_positive": mean_pos,
                "preselection": status,
                "in_model": col in in_model,
                "fit_method": method if col in in_model else "",
                "lrt_statistic": lrt_stat.get(col, np.nan),
                "lrt_p": lrt_p.get(col, np.nan),
                "lrt_p_adjusted": lrt_adj.get(col, np.nan),
                "shapiro_p_negative": sw_neg.get(col, np.nan),
                "shapiro_p_positive": sw_pos.get(col, np.nan),
                "mannwhitney_u": mw_u.get(col, np.nan),
                "mannwhitney_p": mw_p.get(col, np.nan),
                "mannwhitney_p_adjusted": mw_adj.get(col, np.nan),
                "responsible": responsible,
                "responsible_for": (labels[1] if mean_pos > mean_neg else labels[0]) if responsible else "",
            }
        )
    settings = {
        "min_cases": min_cases,
        "max_codewords": max_codewords,
        "correction": correction,
        "alpha": alpha,
        "labels": labels,
        "n_codewords": X.shape[1],
        "n_passed_usage_filter": len(passed),
        "n_cases": n,
    }
    return ResponsibleVectors(pd.DataFrame(rows), class_means, method, float(llf_full), settings)


def _intercept_llf(y: np.ndarray, method: str) -> float:
    if method == "firth":
        return firth_logit(np.empty((len(y), 0)), y)[1]
    p = y.mean()
    return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))
