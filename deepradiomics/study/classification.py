"""Classification of a binary label from one feature family, without information leakage.

Every data-driven step (median imputation, removal of constant columns, scaling, univariate screening or
selection, fitting) is a step of one scikit-learn :class:`~sklearn.pipeline.Pipeline`, so under cross-
validation it sees only the training folds of each split. Features that are themselves learned from a
cohort (fitted classes such as ``fisher``) come from a per-fold source (:mod:`.foldwise`) that refits
them on the same training folds.

Two models:

``logistic`` (the paper's classifier)
    median imputation -> drop constant columns -> z-score -> :class:`UnivariateScreen` (keep the ``k``
    features with the smallest two-sample t-test p in the training fold; ``k="auto"`` = one feature per
    five cases of the smaller class of the training fold, at least 1, at most 10) -> L2 logistic regression
    (C=1, balanced class weights). Evaluated by repeated stratified k-fold CV (default 5 x 5).
``dlr`` (Li et al., Sci Rep 2017)
    median imputation -> drop constant columns -> z-score -> :class:`TTestFScoreSelector` (Welch t-test
    p < 0.05, then the ``k`` best by F-score of Chen & Lin) -> linear SVM (C=1, balanced class weights).
    Evaluated by the same repeated stratified k-fold CV as ``logistic`` (paired comparisons).
    From the paper: t-test screening at p < 0.05, F-score ranking, linear kernel with box constraint
    C = 1, leave-one-out (``dlr-loo``), AUC/ACC/SENS/SPEC/PPV/NPV/MCC and ROC curves. Chosen here (the
    paper does not give them): Welch's unequal-variance t-test, ``k = "auto"`` features kept after the
    F-score ranking, balanced class weights, and repeated k-fold as the default scheme.
``dlr-loo``
    The same pipeline evaluated as in the paper, by leave-one-out; metrics come from the pooled
    leave-one-out decision values, with exact Clopper-Pearson CIs for the proportions (sensitivity,
    specificity, PPV, NPV, accuracy) and stratified bootstrap CIs for AUC and MCC. Caution: pooling scores of n different
    models makes the AUC biased *downwards* when the signal is weak (each left-out case is missing from
    its own class in the training set, so it looks atypical of it): on pure noise we measured pooled LOO
    AUCs far below 0.5 (0.15-0.6 over three data sets of 60 cases x 300 features), while the per-fold
    k-fold AUC averages 0.5. Prefer ``dlr`` for comparisons; use ``dlr-loo`` to reproduce the paper.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin

from ..errors import ParamsError, did_you_mean
from .statistics import METRICS, binary_metrics, bootstrap_metrics, summarize_resamples

#: model name -> (validation scheme, decision threshold on its score)
MODELS: dict[str, tuple[str, float]] = {
    "logistic": ("kfold", 0.5),
    "dlr": ("kfold", 0.0),
    "dlr-loo": ("loo", 0.0),
}


def auto_k(y, n_features: int, cases_per_feature: int = 5, max_k: int = 10) -> int:
    """Number of features a univariate screen keeps for a training set with labels ``y``.

    One feature per ``cases_per_feature`` cases of the smaller class, at least 1 and at most ``max_k``
    (and never more than ``n_features``): with tens of cases a model with hundreds of inputs would
    only memorise the training set.
    """
    counts = np.bincount(np.asarray(y).astype(int), minlength=2)
    return int(max(1, min(n_features, max_k, counts.min() // cases_per_feature)))


def _welch_t_pvalues(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy import stats

    # columns constant within a class (unused codewords) give NaN or precision warnings: p = 1 below
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, p = stats.ttest_ind(X[y == 1], X[y == 0], axis=0, equal_var=False)
    return np.where(np.isfinite(p), p, 1.0)


class UnivariateScreen(SelectorMixin, BaseEstimator):
    """Keep the ``k`` features with the smallest Welch t-test p-value between the two classes.

    Parameters
    ----------
    k : int or "auto"
        ``"auto"``: :func:`auto_k` of the training labels, decided at ``fit`` time (so inside CV it is
        sized for the training fold).

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
        X = np.asarray(X, dtype=float)
        y = np.asarray(y).astype(int)
        self.pvalues_ = _welch_t_pvalues(X, y)
        self.k_ = auto_k(y, X.shape[1]) if self.k == "auto" else int(min(self.k, X.shape[1]))
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
    """DLR selection (Li et al. 2017): Welch t-test p < ``alpha``, then the ``k`` best by F-score.

    When no feature passes the t-test the single feature with the smallest p is kept, so the classifier
    always has an input (recorded as ``n_passed_ttest_ == 0``).
    """

    def __init__(self, alpha: float = 0.05, k="auto"):
        self.alpha = alpha
        self.k = k

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        y = np.asarray(y).astype(int)
        p = _welch_t_pvalues(X, y)
        passed = np.flatnonzero(p < self.alpha)
        self.n_passed_ttest_ = len(passed)
        if len(passed) == 0:
            passed = np.array([int(np.argmin(p))])
        k = auto_k(y, X.shape[1]) if self.k == "auto" else int(self.k)
        self.fscores_ = fisher_score(X, y)
        ranked = passed[np.argsort(-self.fscores_[passed], kind="stable")]
        self.support_ = np.zeros(X.shape[1], dtype=bool)
        self.support_[ranked[: max(1, k)]] = True
        self.n_features_in_ = X.shape[1]
        return self

    def _get_support_mask(self):
        return self.support_


def make_pipeline(model: str, seed: int = 0, k="auto"):
    """The unfitted scikit-learn pipeline of ``model`` (``"logistic"``, ``"dlr"`` or ``"dlr-loo"``)."""
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    check_model(model)
    common = [
        ("impute", SimpleImputer(strategy="median")),
        ("constant", VarianceThreshold(0.0)),
        ("scale", StandardScaler()),
    ]
    if model == "logistic":
        return Pipeline(
            common
            + [
                ("screen", UnivariateScreen(k=k)),
                (
                    "classifier",
                    LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000),
                ),
            ]
        )
    return Pipeline(
        common
        + [
            ("select", TTestFScoreSelector(alpha=0.05, k=k)),
            ("classifier", SVC(kernel="linear", C=1.0, class_weight="balanced")),
        ]
    )


def check_model(model: str) -> str:
    if model not in MODELS:
        raise ParamsError(f"unknown model {model!r}; use one of {', '.join(MODELS)}." + did_you_mean(model, MODELS))
    return model


def decision_scores(pipeline, X) -> np.ndarray:
    """Score of the positive class: probability for logistic regression, decision value for the SVM."""
    clf = pipeline[-1]
    if hasattr(clf, "predict_proba") and not hasattr(clf, "support_vectors_"):
        return pipeline.predict_proba(X)[:, 1]
    return pipeline.decision_function(X)


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
    """

    family: str
    model: str
    fold_metrics: pd.DataFrame
    scores: np.ndarray
    summary: pd.DataFrame
    validation: str
    threshold: float
    test_fraction: float | None


def check_class_sizes(y, folds: int, what: str = "the labelled cases") -> None:
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
) -> FamilyCV:
    """Evaluate one model on one feature family with its validation scheme (see the module docstring).

    ``X`` is a table (DataFrame or array, rows = cases in the order of ``y``) or a per-fold feature source:
    an object whose ``split(train, test)`` returns ``(X_train, X_test)`` for row indices ``train`` and
    ``test`` (see :mod:`.foldwise`: columns of fitted classes refitted on the training rows of each split).
    The splits depend only on ``y``, ``folds``, ``repeats`` and ``seed``, so every family is evaluated
    on the same splits and per-fold results are paired across families.
    """
    check_model(model)
    from sklearn.base import clone
    from sklearn.model_selection import LeaveOneOut, RepeatedStratifiedKFold

    y = np.asarray(y).astype(int)
    source = X if hasattr(X, "split") and not isinstance(X, (pd.DataFrame, np.ndarray)) else _TableSource(X)
    n = len(y)
    rows_only = np.zeros((n, 1))  # the splitters read only the number of rows (and y)
    scheme, threshold = MODELS[model]
    template = make_pipeline(model, seed=seed)

    if scheme == "loo":
        check_class_sizes(y, 2)
        scores = np.empty(n)
        for train, test in LeaveOneOut().split(rows_only):
            X_train, X_test = source.split(train, test)
            fitted = clone(template).fit(X_train, y[train])
            scores[test] = decision_scores(fitted, X_test)
        boot = bootstrap_metrics(y, scores, threshold, n_boot=n_boot, seed=seed)
        summary = boot.rename(columns={"estimate": "mean"})[["mean", "sd", "ci_low", "ci_high"]]
        return FamilyCV(family, model, pd.DataFrame(), scores[None, :], summary, "leave-one-out", threshold, None)

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
    )


class _TableSource:
    """A table as a per-fold source: the same columns for every split."""

    def __init__(self, X) -> None:
        self.values = np.asarray(X, dtype=float)

    def split(self, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.values[train], self.values[test]


def fit_and_score(X_train: pd.DataFrame, y_train, X_test: pd.DataFrame, model: str, seed: int = 0) -> tuple[object, np.ndarray]:
    """Fit ``model`` on the whole training table and score the test table (external validation)."""
    pipeline = make_pipeline(model, seed=seed).fit(np.asarray(X_train, float), np.asarray(y_train).astype(int))
    return pipeline, decision_scores(pipeline, np.asarray(X_test, float))
