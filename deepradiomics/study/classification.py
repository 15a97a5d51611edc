"""Classification of a binary label from one feature family, without information leakage.

Every data-driven step (median imputation, removal of constant and near-constant columns, scaling and
clipping, univariate screening or selection, fitting) is a step of one scikit-learn
:class:`~sklearn.pipeline.Pipeline`, so under cross-validation it sees only the training folds of each
split. Features that are themselves learned from a cohort (fitted classes such as ``fisher``) come from a
per-fold source (:mod:`.foldwise`) that refits them on the same training folds.

The common part (every family, every model; :class:`Taming`)
    median imputation -> drop columns that are constant, or constant but for numerical dust, on the
    training fold (:class:`NearConstantFilter`) -> z-score -> clip at +-``clip`` (:class:`ClippingScaler`).
    Why: a column almost constant on the training patients gets a tiny standard deviation, so an ordinary
    value of an unseen patient becomes an enormous z-score that decides a linear model's output alone.
    :data:`DEFAULT_TAMING` (relative variance floor 1e-9, z-score, clip at 5) is the mildest option that
    bounds every column's influence, chosen from ``benchmarks/near_constant.py --part table --repeats 1`` on
    the 63 LGG patients' fixed table (classical, vqhist, cnn; grade and IDH; logistic and dlr: 36 AUCs):
    against no taming it changes 2 of the 36 AUCs by more than 0.005 (largest change 0.011); clipping at 3
    changes 16 (up to 0.100) and robust scaling 24-30 (up to 0.153), i.e. they alter what columns that are
    not near-constant say. The floor alone changed nothing there: those families hold no dust. Where dust
    exists (Fisher vectors: dimensions near 1e-162 on training patients and ordinary on unseen ones, issue
    16) the encoder's own floors flush it to exact zeros and this floor drops what is left.

Two models:

``logistic`` (this project's model, neither paper's)
    common part -> :class:`UnivariateScreen` (keep the ``k`` features with the smallest Welch t-test p in
    the training fold; ``k="auto"`` = one feature per five cases of the smaller class of the training
    fold, at least 1, at most 10) -> L2 logistic regression (C=1, balanced class weights). Evaluated by
    repeated stratified k-fold CV (default 5 x 5). The VQ paper (Kobayashi et al., Sci Rep 2021) fits a
    logistic regression to the codeword histogram, without this screen, penalty or class weights; the DLR
    paper uses an SVM.
``dlr`` (Li et al., Sci Rep 2017, with the choices of a :class:`DLRProtocol`)
    common part (its scaling per ``protocol.scaling``) -> :class:`TTestFScoreSelector` (t-test p < 0.05,
    then the ``protocol.k`` best by the F-score of Chen & Lin) -> linear SVM (C=1, balanced class weights).
    Evaluated by the same repeated stratified k-fold CV as ``logistic`` (paired comparisons).
``dlr-loo``
    The same pipeline evaluated as in the paper, by leave-one-out; metrics come from the pooled
    leave-one-out decision values, with exact Clopper-Pearson CIs for the proportions (sensitivity,
    specificity, PPV, NPV, accuracy) and stratified bootstrap CIs for AUC and MCC. Caution: pooling scores of n different
    models makes the AUC biased *downwards* when the signal is weak (each left-out case is missing from
    its own class in the training set, so it looks atypical of it): on pure noise we measured pooled LOO
    AUCs far below 0.5 (0.15-0.6 over three data sets of 60 cases x 300 features), while the per-fold
    k-fold AUC averages 0.5. Prefer ``dlr`` for comparisons; use ``dlr-loo`` to reproduce the paper.

What the DLR paper says, and what :data:`PAPER` therefore is
    Methods, "Feature selection and classification": "Student's t-test was applied to all of the extracted
    features ... a p-value < 0.05", then "feature selection based on F-score was used for further
    pre-processing to remove irrelevant and redundant features"; a linear SVM with box constraint C = 1;
    leave-one-out; AUC/ACC/SENS/SPEC/PPV/NPV/MCC and ROC curves. Its abstract says "paired t-tests", which
    cannot apply to two groups of different patients; the methods' Student's test is taken. The main text
    gives no number of features kept by the F-score step (its Supplementary Table 2 lists them; it is not
    available here), and it scales nothing: the SVM gets the Fisher vectors, which are L2-normalised. So
    :data:`PAPER` = ``DLRProtocol(k="all", ttest="student", scaling="auto")``: every feature passing the
    t-test reaches the SVM (the F-score step only orders them), which adds no number of our own, and
    L2-normalised rows (Fisher vectors) reach it unscaled. The paper had no other inputs; any other family
    (classical, vqhist, cnn, a table joining families) is z-scored and clipped as in every other pipeline.
    That is the project's choice, made from a measurement (``benchmarks/svm_scaling.py``): on the LGG
    cases' classical features, whose columns' standard deviations span 11 orders of magnitude, libsvm's
    linear SVM on the unscaled columns did not finish the first IDH training fold in 300 s, against 0.03 s
    z-scored; ``scaling="none"`` (``--svm-scaling none``) still gives every family unscaled.
    Project choices in every protocol: balanced class weights; at least one feature (the smallest p) when
    none passes the t-test; repeated k-fold as the default scheme (``dlr-loo`` for the paper's).
    :data:`DEFAULT_PROTOCOL` = ``DLRProtocol(k="auto", ttest="welch", scaling="zscore")``: the project's
    choices before the options existed (Welch's test does not assume equal variances in classes of very
    different sizes; ``k="auto"`` bounds the inputs of a model fitted on tens of cases); kept as the default
    so earlier results stay reproducible. ``examples/lgg/RESULTS.md`` gives both protocols side by side on
    grade and IDH, with the number of features each fit passed to the SVM.

How many features reached the classifier in each fit is recorded in :attr:`FamilyCV.selection`
(:func:`selection_counts`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import SelectorMixin

from ..errors import ParamsError, did_you_mean
from .statistics import METRICS, binary_metrics, bootstrap_metrics, summarize_resamples

#: model name -> (validation scheme, decision threshold on its score)
MODELS: dict[str, tuple[str, float]] = {
    "logistic": ("kfold", 0.5),
    "dlr": ("kfold", 0.0),
    "dlr-loo": ("loo", 0.0),
}

#: t-test variants of the DLR selection: Student's (pooled variance, the DLR paper's) and Welch's
TTESTS: tuple[str, ...] = ("student", "welch")
#: what the SVM of the DLR pipeline gets: the common part's z-scored (and clipped) columns, the inputs as they
#: are, or ``auto``: as they are when every training row is an L2-normalised vector (Fisher vectors), else z-scored
SCALINGS: tuple[str, ...] = ("zscore", "none", "auto")
#: how far from 1 a training row's L2 norm may be for ``scaling="auto"`` to leave the rows as they are
UNIT_NORM_ATOL = 1e-6
#: how the common part centres and spreads a column before clipping
SCALERS: tuple[str, ...] = ("zscore", "robust")
#: the words ``k`` accepts besides a positive integer
K_WORDS: tuple[str, ...] = ("auto", "all")


# ------------------------------------------------------------------------------------------ options
def _choice(value, choices: tuple[str, ...], option: str) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise ParamsError(f"{option}: {value!r} is not one of {', '.join(choices)}." + did_you_mean(text, choices))
    return text


def check_k(k, option: str = "k") -> int | str:
    """``k`` as the selectors use it: a positive int, ``"auto"`` or ``"all"`` (strings such as ``"10"`` are read).

    Raises
    ------
    ParamsError
        Naming ``option`` and the valid values.
    """
    if isinstance(k, str):
        text = k.strip().lower()
        if text in K_WORDS:
            return text
        if text.isdigit():
            k = int(text)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or int(k) < 1:
        raise ParamsError(
            f"{option}: {k!r} is not valid; use a positive integer, 'auto' (one feature per 5 cases of the smaller class, "
            "1 to 10) or 'all' (every feature passing the t-test)"
        )
    return int(k)


@dataclass(frozen=True)
class DLRProtocol:
    """The choices of the DLR pipeline that its paper leaves open or that this project made differently.

    Parameters
    ----------
    k : int, "auto" or "all"
        Features kept after the F-score ranking of the features passing the t-test: a number, ``"auto"``
        (:func:`auto_k` of the training fold) or ``"all"`` (every feature passing it; the F-score then only
        orders them). The paper gives no number.
    ttest : "student" or "welch"
        Student's pooled-variance t-test (the paper's) or Welch's unequal-variance test.
    scaling : "zscore", "none" or "auto"
        ``"zscore"``: the SVM gets the common part's standardised, clipped columns (:class:`Taming`);
        ``"none"``: it gets the inputs as they are (for Fisher vectors: L2-normalised, as in the paper);
        ``"auto"``: as they are when every training row has unit L2 norm (to :data:`UNIT_NORM_ATOL`: Fisher
        vectors), z-scored otherwise (:class:`UnitNormGate`). Constant and near-constant columns are
        dropped in every case.

    Examples
    --------
    >>> PAPER
    DLRProtocol(k='all', ttest='student', scaling='auto')
    >>> DLRProtocol(k="12", ttest="Welch").k
    12
    """

    k: int | str = "auto"
    ttest: str = "welch"
    scaling: str = "zscore"

    def __post_init__(self) -> None:
        # frozen: normalised values are written through object.__setattr__
        object.__setattr__(self, "k", check_k(self.k, "DLR protocol k"))
        object.__setattr__(self, "ttest", _choice(self.ttest, TTESTS, "DLR protocol ttest"))
        object.__setattr__(self, "scaling", _choice(self.scaling, SCALINGS, "DLR protocol scaling"))

    def describe(self) -> str:
        """One line for reports, e.g. ``"Student t-test p < 0.05, all passing features, unscaled inputs"``."""
        kept = "all passing features" if self.k == "all" else f"F-score top {self.k}"
        inputs = {
            "none": "unscaled inputs",
            "zscore": "z-scored, clipped inputs",
            "auto": "inputs unscaled when L2-normalised per case (Fisher vectors), else z-scored and clipped",
        }[self.scaling]
        return f"{self.ttest.capitalize()} t-test p < 0.05, {kept}, {inputs}"


#: the DLR paper's settings (see the module docstring for what it states and what ``k="all"`` stands for)
PAPER = DLRProtocol(k="all", ttest="student", scaling="auto")
#: the project's default DLR settings (the pipeline before the options existed)
DEFAULT_PROTOCOL = DLRProtocol()
#: named protocols, e.g. for ``--protocol paper``
PROTOCOLS: dict[str, DLRProtocol] = {"default": DEFAULT_PROTOCOL, "paper": PAPER}


def dlr_protocol(base: str | DLRProtocol | None = None, *, k=None, ttest: str | None = None, scaling: str | None = None) -> DLRProtocol:
    """A protocol from a named one (``"default"``, ``"paper"``) or a :class:`DLRProtocol`, with options replaced.

    ``None`` leaves an option as the base has it; e.g. ``dlr_protocol("paper", k=20)``.
    """
    import dataclasses

    if base is None:
        protocol = DEFAULT_PROTOCOL
    elif isinstance(base, DLRProtocol):
        protocol = base
    else:
        protocol = PROTOCOLS[_choice(base, tuple(PROTOCOLS), "DLR protocol")]
    changes = {name: value for name, value in (("k", k), ("ttest", ttest), ("scaling", scaling)) if value is not None}
    return dataclasses.replace(protocol, **changes) if changes else protocol


@dataclass(frozen=True)
class Taming:
    """How the common part of every pipeline keeps near-constant columns from deciding (see the module docstring).

    Parameters
    ----------
    floor : float or None
        Relative variance floor of :class:`NearConstantFilter` (a column is dropped when its training-fold
        standard deviation is at most ``floor`` times its scale); None: only exactly constant columns
        are dropped (scikit-learn's ``VarianceThreshold(0)``).
    scaler : "zscore" or "robust"
        Centre and spread: mean and standard deviation, or median and IQR / 1.349 (standard deviation
        where the IQR is 0).
    clip : float or None
        Scaled values are clipped to [-clip, clip]; None: not clipped.
    """

    floor: float | None = 1e-9
    scaler: str = "zscore"
    clip: float | None = 5.0

    def __post_init__(self) -> None:
        if self.floor is not None and not (0.0 <= float(self.floor) < 1.0):
            raise ParamsError(f"taming floor: {self.floor!r} is not valid; use a number in [0, 1) (e.g. 1e-9) or None")
        object.__setattr__(self, "scaler", _choice(self.scaler, SCALERS, "taming scaler"))
        if self.clip is not None and not (np.isfinite(float(self.clip)) and float(self.clip) > 0):
            raise ParamsError(f"taming clip: {self.clip!r} is not valid; use a positive number of standard deviations (e.g. 5) or None")

    @property
    def is_plain(self) -> bool:
        """True for the pipeline before taming existed: exact constants dropped, z-scored, not clipped."""
        return self.floor is None and self.scaler == "zscore" and self.clip is None


#: the common part before taming existed: only exactly constant columns dropped, z-scores not clipped
NO_TAMING = Taming(floor=None, scaler="zscore", clip=None)
#: the project's default (chosen from benchmarks/near_constant.py; see the module docstring)
DEFAULT_TAMING = Taming()


# ------------------------------------------------------------------------------------- preprocessing
def _column_scale(X: np.ndarray) -> np.ndarray:
    """max |x| per column, never 0 (1 for an all-zero column): divides columns before squaring, so spreads
    of values near 1e-162 do not underflow."""
    peak = np.max(np.abs(X), axis=0) if len(X) else np.zeros(X.shape[1])
    return np.where(peak > 0, peak, 1.0)


def column_sd(X: np.ndarray) -> np.ndarray:
    """Population standard deviation of each column, computed on columns divided by their max |x| (no underflow)."""
    X = np.asarray(X, dtype=float)
    peak = _column_scale(X)
    return (X / peak).std(axis=0) * peak


class NearConstantFilter(SelectorMixin, BaseEstimator):
    """Drop columns that are constant, or constant but for numerical dust, on the training rows.

    Column j is dropped when

    .. math:: \\mathrm{sd}_j \\le \\mathrm{rtol} \\cdot \\max\\left(\\max_i |x_{ij}|,\\ \\operatorname{median}_l \\max_i |x_{il}|\\right)

    (every column is dropped when it is exactly constant). Its own magnitude catches a column such as
    5, 5, 5 + 1e-12; the family's typical magnitude (the median over columns) catches a column of zeros
    and 1e-162 values, whose spread is large relative to itself but not to anything measured. This is
    the project's relative variance floor (a relative tolerance as in ``numpy.isclose``); scikit-learn's
    ``VarianceThreshold`` needs an absolute variance, which depends on each column's unit.

    Parameters
    ----------
    rtol : float
        Default 1e-9: far above float64 rounding (2.2e-16), far below any measured spread.

    Examples
    --------
    >>> X = np.c_[np.r_[np.zeros(9), 1e-162], np.arange(10.0), np.full(10, 3.0)]
    >>> NearConstantFilter().fit(X).get_support().tolist()
    [False, True, False]
    """

    def __init__(self, rtol: float = 1e-9):
        self.rtol = rtol

    def fit(self, X, y=None):
        """Learn which columns are (near-)constant on the training rows ``X``."""
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"NearConstantFilter needs a 2-d array with rows, got shape {X.shape}")
        peak = np.max(np.abs(X), axis=0)
        reference = np.maximum(peak, float(np.median(peak)))
        self.sd_ = column_sd(X)
        constant = np.ptp(X, axis=0) == 0
        self.support_ = ~constant & (self.sd_ > float(self.rtol) * reference)
        if not self.support_.any():
            raise ValueError(f"no column of {X.shape[1]} varies on the {X.shape[0]} training rows (NearConstantFilter, rtol={self.rtol})")
        self.n_features_in_ = X.shape[1]
        return self

    def _get_support_mask(self):
        return self.support_


class ClippingScaler(TransformerMixin, BaseEstimator):
    """Centre and scale each column on the training rows, then clip to [-clip, clip].

    ``center="mean"``: mean and (population) standard deviation, as scikit-learn's ``StandardScaler``;
    ``center="median"``: median and IQR / 1.349 (a normal-consistent spread, Hampel et al. 1986's robust
    scale), the standard deviation where the IQR is 0 (a column equal in over half the rows). Clipping
    (winsorising in units of spread) bounds the say of one column in a linear score, whatever a test
    value does. ``n_clipped_`` counts the columns with a clipped training value.

    Examples
    --------
    >>> X = np.c_[np.r_[np.zeros(19), 1.0], np.arange(20.0)]
    >>> scaler = ClippingScaler(clip=3.0).fit(X)
    >>> float(scaler.transform(np.array([[10.0, 5.0]]))[0, 0])
    3.0
    """

    def __init__(self, center: str = "mean", clip: float | None = 5.0):
        self.center = center
        self.clip = clip

    def fit(self, X, y=None):
        """Learn each column's centre and spread on the training rows ``X``."""
        X = np.asarray(X, dtype=float)
        sd = column_sd(X)
        if self.center == "median":
            q1, median, q3 = np.percentile(X, [25, 50, 75], axis=0)
            spread = (q3 - q1) / 1.349
            self.center_, spread = median, np.where(spread > 0, spread, sd)
        elif self.center == "mean":
            self.center_, spread = X.mean(axis=0), sd
        else:
            raise ValueError(f"center must be 'mean' or 'median', got {self.center!r}")
        self.scale_ = np.where(spread > 0, spread, 1.0)
        self.n_features_in_ = X.shape[1]
        self.n_clipped_ = self.clipped_columns(X)
        return self

    def standardise(self, X) -> np.ndarray:
        """Centred and scaled values, not clipped."""
        return (np.asarray(X, dtype=float) - self.center_) / self.scale_

    def clipped_columns(self, X) -> int:
        """Number of columns of ``X`` with a value that :meth:`transform` clips."""
        if self.clip is None:
            return 0
        return int((np.abs(self.standardise(X)) > float(self.clip)).any(axis=0).sum())

    def transform(self, X):
        """``X`` centred and scaled as learned, clipped at ``clip``."""
        Z = self.standardise(X)
        return Z if self.clip is None else np.clip(Z, -float(self.clip), float(self.clip))


class UnitNormGate(TransformerMixin, BaseEstimator):
    """Leave L2-normalised rows as they are; scale anything else (``scaling="auto"`` of :class:`DLRProtocol`).

    At ``fit``, when every training row's L2 norm is within ``atol`` of 1 (Fisher vectors, which the DLR
    paper's SVM got unscaled) the rows pass through unchanged, now and at ``transform``; otherwise
    ``scaler`` is fitted on them and applied. The decision is the training fold's, taken on the columns
    left after the common part dropped (near-)constant ones (for Fisher vectors those are zeros, which
    do not change a norm). ``scaler_`` is the fitted scaler, None when the rows passed through.

    Examples
    --------
    >>> rows = np.array([[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]])
    >>> UnitNormGate(ClippingScaler()).fit(rows).scaler_ is None
    True
    >>> UnitNormGate(ClippingScaler()).fit(rows * 3).scaler_ is None
    False
    """

    def __init__(self, scaler=None, atol: float = UNIT_NORM_ATOL):
        self.scaler = scaler
        self.atol = atol

    def fit(self, X, y=None):
        """Decide from the training rows ``X`` whether to scale, and fit the scaler if so."""
        from sklearn.base import clone

        X = np.asarray(X, dtype=float)
        norms = np.linalg.norm(X, axis=1)
        unit_norm = bool(len(X)) and bool(np.all(np.abs(norms - 1.0) <= float(self.atol)))
        scaler = ClippingScaler() if self.scaler is None else self.scaler
        self.scaler_ = None if unit_norm else clone(scaler).fit(X)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        """``X`` as it is (unit-norm training rows) or scaled as learned."""
        return np.asarray(X, dtype=float) if self.scaler_ is None else self.scaler_.transform(X)


def auto_k(y, n_features: int, cases_per_feature: int = 5, max_k: int = 10) -> int:
    """Number of features a univariate screen keeps for a training set with labels ``y``.

    One feature per ``cases_per_feature`` cases of the smaller class, at least 1 and at most ``max_k``
    (and never more than ``n_features``): with tens of cases a model with hundreds of inputs would
    only memorise the training set.
    """
    counts = np.bincount(np.asarray(y).astype(int), minlength=2)
    return int(max(1, min(n_features, max_k, counts.min() // cases_per_feature)))


def _resolve_k(k, y, n_features: int) -> int:
    k = check_k(k)
    if k == "auto":
        return auto_k(y, n_features)
    if k == "all":
        return int(n_features)
    return int(min(k, n_features))


def t_pvalues(X: np.ndarray, y: np.ndarray, ttest: str = "welch") -> np.ndarray:
    """Two-sided two-sample t-test p-value of each column between ``y == 1`` and ``y == 0``.

    ``ttest="student"``: pooled variance (Student 1908); ``"welch"``: unequal variances with the
    Welch-Satterthwaite degrees of freedom (Welch 1947); both by ``scipy.stats.ttest_ind``. A column
    constant within both classes gets p = 1.
    """
    from scipy import stats

    equal_var = _choice(ttest, TTESTS, "ttest") == "student"
    X = np.asarray(X, dtype=float)
    y = np.asarray(y).astype(int)
    # columns constant within a class (unused codewords) give NaN or precision warnings: p = 1 below
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, p = stats.ttest_ind(X[y == 1], X[y == 0], axis=0, equal_var=equal_var)
    return np.where(np.isfinite(p), p, 1.0)


class UnivariateScreen(SelectorMixin, BaseEstimator):
    """Keep the ``k`` features with the smallest Welch t-test p-value between the two classes.

    Parameters
    ----------
    k : int, "auto" or "all"
        ``"auto"``: :func:`auto_k` of the training labels, decided at ``fit`` time (so inside CV it is
        sized for the training fold); ``"all"``: no screen.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.c_[np.r_[np.zeros(10), np.ones(10)], np.random.default_rng(0).normal(size=20)]
    >>> UnivariateScreen(k=1).fit(X, np.r_[np.zeros(10), np.ones(10)]).get_support().tolist()
    [True, False]
    """

    def __init__(self, k="auto"):
        self.k = k

    def fit(self, X, y):
        """Keep the ``k`` columns with the smallest t-test p on the training rows."""
        X = np.asarray(X, dtype=float)
        y = np.asarray(y).astype(int)
        self.pvalues_ = t_pvalues(X, y, "welch")
        self.k_ = _resolve_k(self.k, y, X.shape[1])
        order = np.argsort(self.pvalues_, kind="stable")
        self.support_ = np.zeros(X.shape[1], dtype=bool)
        self.support_[order[: self.k_]] = True
        self.n_features_in_ = X.shape[1]
        return self

    def _get_support_mask(self):
        return self.support_


def fisher_score(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """F-score of Chen & Lin (2006) for each column: between-class over within-class spread."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y).astype(int)
    pos, neg = X[y == 1], X[y == 0]
    mean, mpos, mneg = X.mean(0), pos.mean(0), neg.mean(0)
    num = (mpos - mean) ** 2 + (mneg - mean) ** 2
    den = pos.var(0, ddof=1) + neg.var(0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = num / den
    return np.where(np.isfinite(f), f, 0.0)


class TTestFScoreSelector(SelectorMixin, BaseEstimator):
    """DLR selection (Li et al. 2017): t-test p < ``alpha``, then the ``k`` best by F-score (Chen & Lin 2006).

    Parameters
    ----------
    alpha : float
        Significance level of the t-test (the paper's 0.05).
    k : int, "auto" or "all"
        Features kept among those passing the t-test, by decreasing F-score; ``"all"`` keeps every one.
    ttest : "student" or "welch"
        See :func:`t_pvalues`.

    When no feature passes the t-test the single feature with the smallest p is kept, so the classifier
    always has an input (recorded as ``n_passed_ttest_ == 0``).
    """

    def __init__(self, alpha: float = 0.05, k="auto", ttest: str = "welch"):
        self.alpha = alpha
        self.k = k
        self.ttest = ttest

    def fit(self, X, y):
        """Keep the columns passing the t-test on the training rows, then the ``k`` best by F-score."""
        X = np.asarray(X, dtype=float)
        y = np.asarray(y).astype(int)
        self.pvalues_ = p = t_pvalues(X, y, self.ttest)
        passed = np.flatnonzero(p < self.alpha)
        self.n_passed_ttest_ = len(passed)
        if len(passed) == 0:
            passed = np.array([int(np.argmin(p))])
        k = _resolve_k(self.k, y, X.shape[1])
        self.fscores_ = fisher_score(X, y)
        ranked = passed[np.argsort(-self.fscores_[passed], kind="stable")]
        self.support_ = np.zeros(X.shape[1], dtype=bool)
        self.support_[ranked[: max(1, k)]] = True
        self.n_features_in_ = X.shape[1]
        return self

    def _get_support_mask(self):
        return self.support_


# ------------------------------------------------------------------------------------------ pipelines
def _common_steps(taming: Taming, scaling: str = "zscore") -> list:
    """Impute, drop (near-)constant columns, then scale per ``scaling`` (one of :data:`SCALINGS`)."""
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    steps = [
        ("impute", SimpleImputer(strategy="median")),
        ("constant", VarianceThreshold(0.0) if taming.floor is None else NearConstantFilter(rtol=float(taming.floor))),
    ]
    if scaling == "none":
        return steps
    if taming.scaler == "zscore" and taming.clip is None:
        scaler = StandardScaler()  # exactly the pipeline before taming existed
    else:
        center = "median" if taming.scaler == "robust" else "mean"
        scaler = ClippingScaler(center=center, clip=None if taming.clip is None else float(taming.clip))
    steps.append(("scale", UnitNormGate(scaler) if scaling == "auto" else scaler))
    return steps


def make_pipeline(
    model: str,
    seed: int = 0,
    k="auto",
    *,
    protocol: DLRProtocol | None = None,
    taming: Taming | None = None,
):
    """The unfitted scikit-learn pipeline of ``model`` (``"logistic"``, ``"dlr"`` or ``"dlr-loo"``).

    Parameters
    ----------
    model
        See :data:`MODELS`.
    seed
        Kept for a stable signature (both classifiers are deterministic).
    k
        Features kept by ``logistic``'s :class:`UnivariateScreen`; the DLR models take theirs from ``protocol``.
    protocol
        The DLR choices (:class:`DLRProtocol`); default :data:`DEFAULT_PROTOCOL`. Ignored by ``logistic``.
    taming
        The common part's handling of near-constant columns (:class:`Taming`); default :data:`DEFAULT_TAMING`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.svm import SVC

    check_model(model)
    taming = DEFAULT_TAMING if taming is None else taming
    protocol = DEFAULT_PROTOCOL if protocol is None else protocol
    if not isinstance(taming, Taming):
        raise ParamsError(f"taming: {taming!r} is not a Taming; use deepradiomics.study.classification.Taming(...)")
    if not isinstance(protocol, DLRProtocol):
        raise ParamsError(f"protocol: {protocol!r} is not a DLRProtocol; use one of {', '.join(PROTOCOLS)} or DLRProtocol(k, ttest, scaling)")
    if model == "logistic":
        return Pipeline(
            _common_steps(taming)
            + [
                ("screen", UnivariateScreen(k=check_k(k))),
                ("classifier", LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)),
            ]
        )
    return Pipeline(
        _common_steps(taming, protocol.scaling)
        + [
            ("select", TTestFScoreSelector(alpha=0.05, k=protocol.k, ttest=protocol.ttest)),
            ("classifier", SVC(kernel="linear", C=1.0, class_weight="balanced")),
        ]
    )


def check_model(model: str) -> str:
    """``model`` when it is one of :data:`MODELS`, else a ParamsError with a did-you-mean."""
    if model not in MODELS:
        raise ParamsError(f"unknown model {model!r}; use one of {', '.join(MODELS)}." + did_you_mean(model, MODELS))
    return model


def decision_scores(pipeline, X) -> np.ndarray:
    """Score of the positive class: probability for logistic regression, decision value for the SVM."""
    clf = pipeline[-1]
    if hasattr(clf, "predict_proba") and not hasattr(clf, "support_vectors_"):
        return pipeline.predict_proba(X)[:, 1]
    return pipeline.decision_function(X)


#: columns of :attr:`FamilyCV.selection` after ``repeat`` and ``fold``
SELECTION_COLUMNS: tuple[str, ...] = (
    "n_features",
    "n_dropped_constant",
    "n_clipped_train",
    "n_clipped_test",
    "scaled",
    "max_abs_z_test",
    "n_passed_ttest",
    "n_selected",
)


def selection_counts(pipeline, X_test=None) -> dict[str, float]:
    """What a fitted pipeline of :func:`make_pipeline` did to the columns.

    Returns
    -------
    dict
        ``n_features`` (columns given), ``n_dropped_constant`` (constant or near-constant on the training
        rows), ``n_clipped_train`` / ``n_clipped_test`` (columns with a value clipped on the training rows /
        on ``X_test``; 0 without clipping), ``scaled`` (1 when the columns were scaled, 0 when they reached
        the selection as they are: ``scaling="none"``, or ``"auto"`` on L2-normalised rows), ``max_abs_z_test`` (the largest |scaled value| of ``X_test``
        before clipping, over the selected columns; NaN without scaling or ``X_test``),
        ``n_passed_ttest`` (DLR selection; NaN for ``logistic``) and ``n_selected`` (columns reaching the
        classifier).
    """
    steps = pipeline.named_steps
    selector = pipeline[-2]
    support = selector.get_support()
    scaler = steps.get("scale")
    if isinstance(scaler, UnitNormGate):
        scaler = scaler.scaler_  # None: the training rows were L2-normalised and passed through
    out = {
        "n_features": int(steps["impute"].n_features_in_),
        "n_dropped_constant": int((~steps["constant"].get_support()).sum()),
        "n_clipped_train": int(getattr(scaler, "n_clipped_", 0)),
        "n_clipped_test": 0,
        "scaled": int(scaler is not None),
        "max_abs_z_test": float("nan"),
        "n_passed_ttest": float(getattr(selector, "n_passed_ttest_", float("nan"))),
        "n_selected": int(support.sum()),
    }
    if X_test is not None and scaler is not None and len(X_test):
        upstream = pipeline[: list(steps).index("scale")].transform(np.asarray(X_test, dtype=float))
        z = scaler.standardise(upstream) if isinstance(scaler, ClippingScaler) else scaler.transform(upstream)
        out["max_abs_z_test"] = float(np.max(np.abs(z[:, support]))) if support.any() else float("nan")
        if isinstance(scaler, ClippingScaler):
            out["n_clipped_test"] = scaler.clipped_columns(upstream)
    return out


@dataclass
class FamilyCV:
    """Cross-validated predictions of one (family, model).

    Attributes
    ----------
    fold_metrics
        One row per fold (columns ``repeat``, ``fold``, ``n_test`` and every metric); empty for LOO.
    scores
        Out-of-fold scores, shape (repeats, n_cases) (one row for LOO).
    summary
        Index ``METRICS``; columns ``mean``, ``sd``, ``ci_low``, ``ci_high``.
    validation
        Human-readable description of the scheme, e.g. ``"5-fold CV x 5 repeats"``.
    selection
        One row per fitted model (``repeat``, ``fold``, then :data:`SELECTION_COLUMNS`, see
        :func:`selection_counts`); for LOO ``fold`` is the left-out case's row.
    protocol, taming
        The DLR choices (None for ``logistic``) and the common part's taming the models were fitted with.
    """

    family: str
    model: str
    fold_metrics: pd.DataFrame
    scores: np.ndarray
    summary: pd.DataFrame
    validation: str
    threshold: float
    test_fraction: float | None
    selection: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["repeat", "fold", *SELECTION_COLUMNS]))
    protocol: DLRProtocol | None = None
    taming: Taming | None = None

    def selected_range(self) -> tuple[int, int, float]:
        """(min, max, median) number of features reaching the classifier over the fits, for reports."""
        n = self.selection["n_selected"].to_numpy(dtype=float)
        if not len(n):
            return 0, 0, float("nan")
        return int(n.min()), int(n.max()), float(np.median(n))


def check_class_sizes(y, folds: int, what: str = "the labelled cases") -> None:
    """ParamsError unless each class has at least ``max(2, folds)`` cases (stratified CV needs them)."""
    counts = np.bincount(np.asarray(y).astype(int), minlength=2)
    if counts.min() < max(2, folds):
        raise ParamsError(
            f"{what} have {counts[1]} positive and {counts[0]} negative cases; stratified {folds}-fold CV"
            f" needs at least {max(2, folds)} of each class. Use fewer --folds or more cases."
        )


def cross_validate(
    X,
    y: np.ndarray,
    model: str = "logistic",
    family: str = "all",
    folds: int = 5,
    repeats: int = 5,
    seed: int = 0,
    n_boot: int = 2000,
    *,
    protocol: DLRProtocol | None = None,
    taming: Taming | None = None,
) -> FamilyCV:
    """Evaluate one model on one feature family with its validation scheme (see the module docstring).

    ``X`` is a table (DataFrame or array, rows = cases in the order of ``y``) or a per-fold feature source:
    an object whose ``split(train, test)`` returns ``(X_train, X_test)`` for row indices ``train`` and
    ``test`` (see :mod:`.foldwise`: columns of fitted classes refitted on the training rows of each split).
    The splits depend only on ``y``, ``folds``, ``repeats`` and ``seed``, so every family is evaluated
    on the same splits and per-fold results are paired across families. ``protocol`` and ``taming`` are
    passed to :func:`make_pipeline`.
    """
    check_model(model)
    from sklearn.base import clone
    from sklearn.model_selection import LeaveOneOut, RepeatedStratifiedKFold

    y = np.asarray(y).astype(int)
    source = X if hasattr(X, "split") and not isinstance(X, (pd.DataFrame, np.ndarray)) else _TableSource(X)
    n = len(y)
    rows_only = np.zeros((n, 1))  # the splitters read only the number of rows (and y)
    scheme, threshold = MODELS[model]
    template = make_pipeline(model, seed=seed, protocol=protocol, taming=taming)
    used_protocol = None if model == "logistic" else (protocol or DEFAULT_PROTOCOL)
    used_taming = taming or DEFAULT_TAMING
    selection = []

    if scheme == "loo":
        check_class_sizes(y, 2)
        scores = np.empty(n)
        for train, test in LeaveOneOut().split(rows_only):
            X_train, X_test = source.split(train, test)
            fitted = clone(template).fit(X_train, y[train])
            scores[test] = decision_scores(fitted, X_test)
            selection.append({"repeat": 0, "fold": int(test[0]), **selection_counts(fitted, X_test)})
        boot = bootstrap_metrics(y, scores, threshold, n_boot=n_boot, seed=seed)
        summary = boot.rename(columns={"estimate": "mean"})[["mean", "sd", "ci_low", "ci_high"]]
        selected = pd.DataFrame(selection)
        return FamilyCV(family, model, pd.DataFrame(), scores[None, :], summary, "leave-one-out", threshold, None, selected, used_protocol, used_taming)

    check_class_sizes(y, folds)
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    scores = np.full((repeats, n), np.nan)
    rows = []
    for i, (train, test) in enumerate(splitter.split(rows_only, y)):
        repeat, fold = divmod(i, folds)
        X_train, X_test = source.split(train, test)
        fitted = clone(template).fit(X_train, y[train])
        s = decision_scores(fitted, X_test)
        scores[repeat, test] = s
        rows.append({"repeat": repeat, "fold": fold, "n_test": len(test), **binary_metrics(y[test], s, threshold)})
        selection.append({"repeat": repeat, "fold": fold, **selection_counts(fitted, X_test)})
    fold_metrics = pd.DataFrame(rows)
    test_fraction = 1.0 / folds
    summary = (
        pd.DataFrame({m: summarize_resamples(fold_metrics[m], test_fraction) for m in METRICS})
        .T[["mean", "sd", "ci_low", "ci_high"]]
        .astype(float)
    )
    # a t-interval can overshoot the metric's range; report it clipped to [0, 1] ([-1, 1] for MCC)
    lower = np.where(summary.index == "MCC", -1.0, 0.0)
    summary["ci_low"] = np.maximum(summary["ci_low"], lower)
    summary["ci_high"] = np.minimum(summary["ci_high"], 1.0)
    return FamilyCV(
        family,
        model,
        fold_metrics,
        scores,
        summary,
        f"{folds}-fold CV x {repeats} repeats",
        threshold,
        test_fraction,
        pd.DataFrame(selection),
        used_protocol,
        used_taming,
    )


class _TableSource:
    """A table as a per-fold source: the same columns for every split."""

    def __init__(self, X) -> None:
        self.values = np.asarray(X, dtype=float)

    def split(self, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.values[train], self.values[test]


def fit_and_score(
    X_train: pd.DataFrame,
    y_train,
    X_test: pd.DataFrame,
    model: str,
    seed: int = 0,
    *,
    protocol: DLRProtocol | None = None,
    taming: Taming | None = None,
) -> tuple[object, np.ndarray]:
    """Fit ``model`` on the whole training table and score the test table (external validation).

    ``selection_counts(pipeline, X_test)`` of the returned pipeline says what the selection kept.
    """
    pipeline = make_pipeline(model, seed=seed, protocol=protocol, taming=taming)
    pipeline.fit(np.asarray(X_train, float), np.asarray(y_train).astype(int))
    return pipeline, decision_scores(pipeline, np.asarray(X_test, float))
