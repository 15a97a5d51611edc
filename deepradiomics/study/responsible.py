"""Responsible vectors (Kobayashi et al., Sci Rep 2021): the codewords whose counts carry the label.

Procedure, on the whole cohort (this is explanation, not validation: nothing here estimates accuracy):

1. **Usage filter** (ignores the label, so it costs no multiple-testing budget): drop codewords used
   (count > 0) in fewer than ``min_cases`` cases (default: 10% of the cases, at least 3). A codebook of 512
   with tens of cases has many codewords that are never or almost never used.
2. **Preselection**: among the codewords that pass, keep the ``max_codewords`` with the smallest
   univariate Mann-Whitney U p-value (default: one codeword per ten cases of the smaller class, at least
   1, at most 10), so that the multivariable model stays estimable (events per variable); a codeword whose
   counts are a linear function of those already kept is skipped (its coefficient is not identifiable).
3. **Logistic regression** of the label on the kept counts (z-scored; the likelihood-ratio statistics do
   not depend on that scaling) by maximum likelihood with statsmodels. If the fit does not converge or
   the classes are (quasi-)completely separated (a fitted probability within 1e-6 of 0 or 1), it is
   refitted with Firth's penalised likelihood (Heinze & Schemper 2002) and the tests below use the
   penalised log-likelihoods (``fit_method == "firth"`` in the output). That likelihood is not concave
   and can have several local maxima: every Firth fit is the highest of several climbs
   (:func:`firth_logit`).
4. **Per-effect likelihood-ratio test** for each codeword in the model, ``LR = 2 (llf_full -
   llf_reduced)``, chi-square with 1 degree of freedom. Maximum likelihood: the reduced model is refitted
   without the codeword. Firth: the standard penalised likelihood-ratio test (Heinze & Schemper 2002, as
   in R's ``logistf``): the codeword's coefficient is held at 0 while the design, and so the penalty, keeps
   every column (:func:`penalised_lr_statistics`); dropping the column instead would compare two
   likelihoods with different penalties. A negative statistic cannot arise from nested fits at their
   maxima; if one does beyond rounding it is raised as a bug, never clipped to 0.
5. **Group comparison** of every codeword that passed the usage filter: Shapiro-Wilk normality within
   each class (reported) and the two-sided Mann-Whitney U test between classes (used, as counts are rarely
   normal). Its p-values are corrected over *all* codewords that passed the filter, which also accounts
   for the preselection in step 2.

A codeword is **responsible** when its corrected LRT p and its corrected Mann-Whitney p are both below
``alpha``; it is responsible for the class with the higher mean count.

This is the project's procedure. The VQ paper (Methods, "Identification of responsible vectors") takes the
codewords with significant coefficients by the effect likelihood-ratio test (p < 0.05) in a logistic
model of the counts, then a Wilcoxon test of their frequency between grades (after Shapiro-Wilk rejected
normality), p < 0.05, with no correction mentioned. ``procedure="paper"`` follows that description
(:data:`PAPER_DIFFERENCES` lists where it differs from the default); the paper does not say how codewords
entered the model, so there every codeword with an uncorrected univariate p < alpha enters it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .. import naming
from ..errors import ModelError, ParamsError
from .statistics import adjust_pvalues, firth_logit, penalised_lr_statistics  # noqa: F401 (re-exported)


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


#: the procedures of :func:`responsible_vectors`: this project's (default) and the VQ paper's as described
PROCEDURES = ("project", "paper")

#: where ``procedure="paper"`` differs from the default, as the report lists it
PAPER_DIFFERENCES = (
    "preselection: every codeword passing the usage filter with an uncorrected univariate p < alpha enters the model "
    "(default: the max_codewords smallest p, for events per variable)",
    "no multiple-testing correction of the likelihood-ratio or group tests (default: the chosen correction)",
    "group test: the Wilcoxon rank-sum test (= Mann-Whitney U). The paper names the signed-rank test, which needs "
    "paired samples; the two classes are independent patients, so the rank-sum form is the Wilcoxon test that applies",
)


def responsible_vectors(
    counts: pd.DataFrame,
    y,
    labels: tuple[str, str] = ("negative", "positive"),
    min_cases: int | None = None,
    max_codewords: int | None = None,
    correction: str = "holm",
    alpha: float = 0.05,
    procedure: str = "project",
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
    procedure
        ``"project"`` (default, above) or ``"paper"``: the VQ paper's procedure as it describes it
        (:data:`PAPER_DIFFERENCES`: uncorrected p < alpha preselection, no correction, the rank-sum test).

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
    if procedure not in PROCEDURES:
        raise ParamsError(f"responsible-vector procedure '{procedure}' is not one of {', '.join(PROCEDURES)}")
    if procedure == "paper":
        correction = "none"
    X, y = _checked_counts(counts, y)
    n = len(y)
    n_pos, n_neg = int(y.sum()), int(n - y.sum())
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
    neg, pos = X[y == 0], X[y == 1]
    tests = _group_tests(neg, pos, passed, correction)
    in_model, collinear = _preselect(X, passed, tests["mw_p"], max_codewords if procedure == "project" else None, alpha)
    method, llf_full, lrt_stat, lrt_p = _likelihood_ratio_tests(X[in_model].to_numpy(), y, in_model)
    tests["lrt_stat"], tests["lrt_p"] = lrt_stat, lrt_p
    tests["lrt_adj"] = dict(zip(in_model, adjust_pvalues([lrt_p[c] for c in in_model], correction)))
    status = {}
    for col in X.columns:
        if col not in passed:
            status[col] = f"rare (used in {int(used[col])} < {min_cases} cases)"
        elif col in in_model:
            status[col] = "in model"
        elif col in collinear:
            status[col] = "not in model: its counts are a linear function of those of the codewords already in it"
        elif procedure == "paper":
            status[col] = f"not in model: univariate p >= {alpha}"
        else:
            status[col] = f"not in top {max_codewords} by Mann-Whitney p"
    rows = [_row(col, X, neg, pos, used, status[col], in_model, method, tests, alpha, labels) for col in X.columns]
    class_means = pd.DataFrame({labels[0]: neg.mean(axis=0), labels[1]: pos.mean(axis=0)}).T
    settings = {
        "procedure": procedure,
        "min_cases": min_cases,
        "max_codewords": max_codewords if procedure == "project" else None,
        "correction": correction,
        "alpha": alpha,
        "labels": labels,
        "n_codewords": X.shape[1],
        "n_passed_usage_filter": len(passed),
        "n_cases": n,
    }
    return ResponsibleVectors(pd.DataFrame(rows), class_means, method, float(llf_full), settings)


def _checked_counts(counts: pd.DataFrame, y) -> tuple[pd.DataFrame, np.ndarray]:
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
    return X, y


def _group_tests(neg: pd.DataFrame, pos: pd.DataFrame, passed: list, correction: str) -> dict:
    """Mann-Whitney U (= Wilcoxon rank-sum) and Shapiro-Wilk of every codeword that passed the usage filter."""
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
    return {"mw_u": mw_u, "mw_p": mw_p, "sw_neg": sw_neg, "sw_pos": sw_pos, "mw_adj": mw_adj}


def _preselect(X: pd.DataFrame, passed: list, mw_p: dict, max_codewords: int | None, alpha: float) -> tuple[list, list]:
    """Codewords entering the model, by univariate p: the ``max_codewords`` smallest, or (None) every one below ``alpha``.

    A codeword whose counts are a linear function of those already kept (e.g. two codewords used by the same
    cases in the same numbers, or a constant) is skipped: its coefficient would not be identifiable and its
    likelihood-ratio test meaningless.
    """
    n = len(X)
    ranked = sorted(passed, key=lambda c: (mw_p[c], passed.index(c)))
    if max_codewords is None:
        ranked = [c for c in ranked if mw_p[c] < alpha]
    in_model, collinear = [], []
    for col in ranked:
        if max_codewords is not None and len(in_model) == max_codewords:
            break
        design = np.column_stack([np.ones(n), X[[*in_model, col]].to_numpy()])
        (in_model if np.linalg.matrix_rank(design) == design.shape[1] else collinear).append(col)
    return in_model, collinear


def _likelihood_ratio_tests(Z: np.ndarray, y: np.ndarray, in_model: list) -> tuple[str, float, dict, dict]:
    """(fit method, log-likelihood of the full model, LR statistic and p per codeword) of the logistic model."""
    if not in_model:
        return "mle", _intercept_llf(y), {}, {}
    Z = (Z - Z.mean(0)) / np.where(Z.std(0) > 0, Z.std(0), 1.0)
    llf_full, ok = _logit_mle(Z, y)
    method = "mle" if ok else "firth"
    lrt_stat, lrt_p = {}, {}
    if method == "firth":
        llf_full, firth_stats = penalised_lr_statistics(Z, y)
        for j, col in enumerate(in_model):
            lrt_stat[col] = firth_stats[j]
    else:
        for j, col in enumerate(in_model):
            reduced = np.delete(Z, j, axis=1)
            llf_reduced = _logit_mle(reduced, y)[0] if reduced.shape[1] else _intercept_llf(y)
            lrt_stat[col] = _checked_lr(llf_full, llf_reduced, col)
    for col, stat in lrt_stat.items():
        lrt_p[col] = float(stats.chi2.sf(stat, 1)) if np.isfinite(stat) else float("nan")
    return method, llf_full, lrt_stat, lrt_p


def _row(col, X, neg, pos, used, status: str, in_model: list, method: str, tests: dict, alpha: float, labels) -> dict:
    try:
        codeword = naming.FeatureName.parse(str(col)).feature
    except ValueError:
        codeword = str(col)
    mean_neg, mean_pos = float(neg[col].mean()), float(pos[col].mean())
    responsible = bool(col in in_model and tests["lrt_adj"][col] < alpha and tests["mw_adj"][col] < alpha and mean_neg != mean_pos)
    return {
        "column": col,
        "codeword": codeword,
        "n_cases_used": int(used[col]),
        "mean_negative": mean_neg,
        "mean_positive": mean_pos,
        "preselection": status,
        "in_model": col in in_model,
        "fit_method": method if col in in_model else "",
        "lrt_statistic": tests["lrt_stat"].get(col, np.nan),
        "lrt_p": tests["lrt_p"].get(col, np.nan),
        "lrt_p_adjusted": tests["lrt_adj"].get(col, np.nan),
        "shapiro_p_negative": tests["sw_neg"].get(col, np.nan),
        "shapiro_p_positive": tests["sw_pos"].get(col, np.nan),
        "mannwhitney_u": tests["mw_u"].get(col, np.nan),
        "mannwhitney_p": tests["mw_p"].get(col, np.nan),
        "mannwhitney_p_adjusted": tests["mw_adj"].get(col, np.nan),
        "responsible": responsible,
        "responsible_for": (labels[1] if mean_pos > mean_neg else labels[0]) if responsible else "",
    }


def _intercept_llf(y: np.ndarray) -> float:
    """Maximum log-likelihood of the intercept-only logistic model."""
    p = y.mean()
    return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _checked_lr(llf_full: float, llf_reduced: float, column: str) -> float:
    """``2 (llf_full - llf_reduced)`` of nested maximum-likelihood fits; NaN when a fit failed."""
    lr = 2.0 * (llf_full - llf_reduced)
    if not np.isfinite(lr):
        return float("nan")
    # the reduced model is nested in the full one: only the optimiser's tolerance can make this negative
    if lr < -1e-6 * max(1.0, abs(llf_full)):
        raise ModelError(
            f"likelihood-ratio statistic of {column} is {lr:.3g} < 0: the reduced maximum-likelihood fit beat"
            " the full one; this is a bug in deepradiomics, please report it with the counts table"
        )
    return max(lr, 0.0)
