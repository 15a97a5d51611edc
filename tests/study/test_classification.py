"""Cross-validation mechanics on synthetic tables: no leakage, planted signal found, paired splits."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepradiomics.errors import ParamsError
from deepradiomics.study import (
    TTestFScoreSelector,
    UnivariateScreen,
    cross_validate,
    fisher_score,
    make_pipeline,
)
from deepradiomics.study.classification import auto_k

from ._synthetic import noise_table

NOISE_SEEDS = range(8)


def _mean_auc(model, X, y, seed, **kw):
    return cross_validate(X, y, model, folds=5, repeats=2, seed=seed, **kw).summary.loc["AUC", "mean"]


@pytest.mark.parametrize("model", ["logistic", "dlr"])
def test_pure_noise_gives_chance_auc(model):
    """300 noise columns, 60 cases: with every step inside the folds the AUC averages 0.5."""
    aucs = [_mean_auc(model, *noise_table(60, 300, seed), seed) for seed in NOISE_SEEDS]
    assert abs(np.mean(aucs) - 0.5) < 0.1, aucs


def test_the_noise_test_detects_leakage():
    """Control: screening the same noise on *all* cases before CV (the classic leak) inflates the AUC,
    so the chance-level test above would fail for a pipeline that leaks."""
    aucs = []
    for seed in NOISE_SEEDS:
        X, y = noise_table(60, 300, seed)
        p = stats.ttest_ind(X[y == 1], X[y == 0]).pvalue
        leaked = X[X.columns[np.argsort(p)[:5]]]
        aucs.append(_mean_auc("logistic", leaked, y, seed))
    assert np.mean(aucs) > 0.65, aucs


@pytest.mark.parametrize("model", ["logistic", "dlr", "dlr-loo"])
def test_planted_signal_gives_high_auc(model):
    X, y = noise_table(60, 300, seed=11)
    rng = np.random.default_rng(5)
    for i in range(4):  # four informative columns hidden among 300 noise columns
        X[f"original_firstorder_Signal{i}"] = y * 1.5 + rng.normal(size=len(y))
    res = cross_validate(X, y, model, folds=5, repeats=2, seed=0, n_boot=200)
    assert res.summary.loc["AUC", "mean"] > 0.8
    assert res.summary.loc["AUC", "ci_low"] > 0.6


def test_splits_are_paired_across_families_and_seeded():
    X, y = noise_table(40, 20, seed=3)
    a = cross_validate(X.iloc[:, :10], y, "logistic", folds=4, repeats=3, seed=7)
    b = cross_validate(X.iloc[:, 10:], y, "logistic", folds=4, repeats=3, seed=7)
    # identical test folds: same number of non-missing scores per repeat and same n_test per fold
    assert a.fold_metrics[["repeat", "fold", "n_test"]].equals(b.fold_metrics[["repeat", "fold", "n_test"]])
    assert not np.isnan(a.scores).any() and a.scores.shape == (3, 40)
    again = cross_validate(X.iloc[:, :10], y, "logistic", folds=4, repeats=3, seed=7)
    np.testing.assert_array_equal(a.scores, again.scores)
    assert len(a.fold_metrics) == 12


def test_missing_values_and_constant_columns_are_handled_inside_the_pipeline():
    X, y = noise_table(40, 10, seed=4)
    X.iloc[::7, 0] = np.nan
    X["original_firstorder_Constant"] = 1.0
    res = cross_validate(X, y, "logistic", folds=4, repeats=1, seed=0)
    assert np.isfinite(res.summary.loc["AUC", "mean"])


def test_univariate_screen_sizes_k_from_the_training_fold():
    assert auto_k(np.r_[np.zeros(24), np.ones(24)], 300) == 4
    assert auto_k(np.r_[np.zeros(3), np.ones(40)], 300) == 1
    assert auto_k(np.r_[np.zeros(500), np.ones(500)], 300) == 10
    X, y = noise_table(50, 30, seed=5)
    X.iloc[:, 7] += 3 * y
    screen = UnivariateScreen().fit(X.to_numpy(), y)
    assert screen.k_ == 5 and screen.get_support()[7]


def test_dlr_selector_ttest_then_fscore():
    rng = np.random.default_rng(6)
    y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    X = rng.normal(size=(60, 6))
    X[:, 2] += 2.5 * y  # strong
    X[:, 4] += 1.0 * y  # weaker
    sel = TTestFScoreSelector(k=1).fit(X, y)
    assert sel.get_support().tolist() == [False, False, True, False, False, False]
    assert fisher_score(X, y)[2] > fisher_score(X, y)[4]
    none_pass = TTestFScoreSelector(k=3).fit(rng.normal(size=(60, 4)), y)
    assert none_pass.get_support().sum() >= 1


def test_unknown_model_and_too_few_cases_are_clear_errors():
    with pytest.raises(ParamsError, match="Did you mean 'logistic'"):
        make_pipeline("logistc")
    X = pd.DataFrame(np.zeros((6, 2)), columns=["original_firstorder_A", "original_firstorder_B"])
    with pytest.raises(ParamsError, match="needs at least 5 of each class"):
        cross_validate(X, np.array([0, 0, 0, 1, 1, 1]), "logistic", folds=5)
