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
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from .. import naming
from ..errors import ModelError, ParamsError
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

    # Preselection for the multivariable model, skipping a codeword whose counts are a linear function of
    # those already kept (e.g. two codewords used by the same cases in the same numbers, or a constant):
    # its coefficient would not be identifiable and its likelihood-ratio test would be meaningless.
    ranked = sorted(passed, key=lambda c: (mw_p[c], passed.index(c)))
    in_model, collinear = [], []
    for col in ranked:
        if len(in_model) == max_codewords:
            break
        design = np.column_stack([np.ones(n), X[[*in_model, col]].to_numpy()])
        (in_model if np.linalg.matrix_rank(design) == design.shape[1] else collinear).append(col)
    Z = X[in_model].to_numpy()
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
        elif col in collinear:
            status = "not in model: its counts are a linear function of those of the codewords already in it"
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
