"""The DLR protocol as options (k, t-test, SVM scaling) and the common part's taming of near-constant columns.

Synthetic arrays: these are mechanics (which columns a step keeps, what reaches the SVM); the science of the
choices is measured on the LGG cases by benchmarks/near_constant.py.
"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepradiomics.errors import ParamsError
from deepradiomics.study.classification import (
    DEFAULT_PROTOCOL,
    DEFAULT_TAMING,
    NO_TAMING,
    PAPER,
    UNIT_NORM_ATOL,
    ClippingScaler,
    DLRProtocol,
    NearConstantFilter,
    Taming,
    TTestFScoreSelector,
    auto_k,
    cross_validate,
    dlr_protocol,
    make_pipeline,
    selection_counts,
    t_pvalues,
)


def unequal_groups(seed: int = 0, n_pos: int = 40, n_neg: int = 12, p: int = 30):
    """Classes of different sizes and spreads (Student and Welch disagree), three shifted columns."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(int)
    X = np.where(y[:, None] == 1, rng.normal(0, 1, (len(y), p)), rng.normal(0, 3, (len(y), p)))
    X[:, :3] += 2.0 * y[:, None]
    return X, y


# --------------------------------------------------------------------------------------------- t-tests
def test_student_and_welch_p_values_are_scipys():
    X, y = unequal_groups()
    student = TTestFScoreSelector(ttest="student").fit(X, y).pvalues_
    welch = TTestFScoreSelector(ttest="welch").fit(X, y).pvalues_
    np.testing.assert_allclose(student, stats.ttest_ind(X[y == 1], X[y == 0], equal_var=True).pvalue, rtol=1e-12)
    np.testing.assert_allclose(welch, stats.ttest_ind(X[y == 1], X[y == 0], equal_var=False).pvalue, rtol=1e-12)
    assert np.abs(np.log(student) - np.log(welch)).max() > 0.5  # the option changes the test


def test_a_column_constant_in_both_classes_gets_p_one():
    X, y = unequal_groups()
    X[:, 5] = 7.0
    assert t_pvalues(X, y, "student")[5] == 1.0 and t_pvalues(X, y, "welch")[5] == 1.0


# ------------------------------------------------------------------------------------------------- k
@pytest.mark.parametrize("k", [1, 2, 3])
def test_k_features_by_f_score_among_those_passing(k):
    X, y = unequal_groups(p=40)
    sel = TTestFScoreSelector(k=k, ttest="student").fit(X, y)
    assert sel.get_support().sum() == k
    passed = np.flatnonzero(sel.pvalues_ < 0.05)
    kept = np.flatnonzero(sel.get_support())
    assert set(kept) <= set(passed)
    assert sel.fscores_[kept].min() >= np.sort(sel.fscores_[passed])[::-1][k - 1]


def test_k_all_keeps_every_feature_passing_and_auto_follows_the_smaller_class():
    X, y = unequal_groups(p=40)
    every = TTestFScoreSelector(k="all", ttest="student").fit(X, y)
    np.testing.assert_array_equal(every.get_support(), every.pvalues_ < 0.05)
    assert every.n_passed_ttest_ == every.get_support().sum() >= 3
    auto = TTestFScoreSelector(k="auto", ttest="student").fit(X, y)
    assert auto.get_support().sum() == auto_k(y, X.shape[1]) == 2  # 12 of the smaller class // 5


def test_k_all_with_nothing_passing_keeps_the_smallest_p():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(20), np.ones(20)].astype(int)
    X = rng.normal(size=(40, 3))
    sel = TTestFScoreSelector(k="all").fit(X, y)
    if sel.n_passed_ttest_ == 0:
        assert sel.get_support().tolist() == (np.arange(3) == np.argmin(sel.pvalues_)).tolist()
    else:
        assert sel.get_support().sum() == sel.n_passed_ttest_


# ------------------------------------------------------------------------------------------- scaling
def test_scaling_none_gives_the_svm_the_inputs_as_they_are():
    X, y = unequal_groups(p=12)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)  # like L2-normalised Fisher vectors
    raw = make_pipeline("dlr", protocol=DLRProtocol(k="all", ttest="student", scaling="none")).fit(X, y)
    assert "scale" not in raw.named_steps
    svm = raw[-1]
    columns = np.flatnonzero(raw["constant"].get_support())[raw["select"].get_support()]
    np.testing.assert_array_equal(svm.support_vectors_, X[svm.support_][:, columns])
    scaled = make_pipeline("dlr", protocol=DLRProtocol(k="all", ttest="student", scaling="zscore"), taming=Taming(clip=None)).fit(X, y)
    z = (X - X.mean(0)) / X.std(0)
    np.testing.assert_allclose(scaled[-1].support_vectors_, z[scaled[-1].support_][:, columns], rtol=1e-12, atol=1e-12)


def test_scaling_auto_leaves_l2_normalised_rows_as_they_are_and_scales_anything_else():
    X, y = unequal_groups(p=12)
    X[:, 3] = 0.0  # a column of zeros (an unused GMM component): dropped, which leaves the norms as they are
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)  # like L2-normalised Fisher vectors
    auto = DLRProtocol(k="all", ttest="student", scaling="auto")
    none = DLRProtocol(k="all", ttest="student", scaling="none")
    gated = make_pipeline("dlr", protocol=auto).fit(unit, y)
    assert gated["scale"].scaler_ is None and selection_counts(gated, unit[:5])["scaled"] == 0
    raw = make_pipeline("dlr", protocol=none).fit(unit, y)
    np.testing.assert_array_equal(gated.decision_function(unit), raw.decision_function(unit))
    # rows of another family (here 1000x the unit rows, and columns of very different units): z-scored
    # and clipped exactly as scaling="zscore" does
    wide = unit * 1000.0 * np.geomspace(1e-3, 1e7, unit.shape[1])
    gated = make_pipeline("dlr", protocol=auto).fit(wide, y)
    zscored = make_pipeline("dlr", protocol=DLRProtocol(k="all", ttest="student", scaling="zscore")).fit(wide, y)
    assert gated["scale"].scaler_ is not None and selection_counts(gated, wide[:5])["scaled"] == 1
    np.testing.assert_array_equal(gated.decision_function(wide), zscored.decision_function(wide))
    assert selection_counts(gated, wide[:5])["max_abs_z_test"] == selection_counts(zscored, wide[:5])["max_abs_z_test"]
    # one row off the unit sphere by more than the tolerance is enough to scale the fold
    off = unit.copy()
    off[0] *= 1.0 + 10 * UNIT_NORM_ATOL
    assert make_pipeline("dlr", protocol=auto).fit(off, y)["scale"].scaler_ is not None


def test_the_paper_protocol_and_the_default():
    assert (PAPER.k, PAPER.ttest, PAPER.scaling) == ("all", "student", "auto")
    assert (DEFAULT_PROTOCOL.k, DEFAULT_PROTOCOL.ttest, DEFAULT_PROTOCOL.scaling) == ("auto", "welch", "zscore")
    assert dlr_protocol("paper", k="20") == DLRProtocol(k=20, ttest="student", scaling="auto")
    assert dlr_protocol(None, ttest="student") == DLRProtocol(ttest="student")
    select = make_pipeline("dlr-loo", protocol=PAPER)["select"]
    assert (select.k, select.ttest) == ("all", "student")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DLRProtocol(k=0), "DLR protocol k: 0 is not valid; use a positive integer, 'auto'"),
        (lambda: DLRProtocol(k="most"), "DLR protocol k: 'most' is not valid"),
        (lambda: DLRProtocol(k=True), "DLR protocol k: True is not valid"),
        (lambda: DLRProtocol(ttest="paired"), "DLR protocol ttest: 'paired' is not one of student, welch"),
        (lambda: DLRProtocol(scaling="zscor"), "DLR protocol scaling: 'zscor' is not one of zscore, none, auto. Did you mean 'zscore'"),
        (lambda: dlr_protocol("papr"), "DLR protocol: 'papr' is not one of default, paper. Did you mean 'paper'"),
        (lambda: Taming(clip=-1), "taming clip: -1 is not valid"),
        (lambda: Taming(floor=2.0), "taming floor: 2.0 is not valid"),
        (lambda: Taming(scaler="minmax"), "taming scaler: 'minmax' is not one of zscore, robust"),
        (lambda: make_pipeline("dlr", protocol="paper"), "protocol: 'paper' is not a DLRProtocol"),
    ],
)
def test_bad_options_are_one_line_errors_naming_the_option(make, match):
    with pytest.raises(ParamsError, match=match) as caught:
        make()
    assert "\n" not in str(caught.value)


# -------------------------------------------------------------------------------- near-constant columns
def test_the_floor_drops_dust_and_rounding_constants_and_keeps_ordinary_columns():
    rng = np.random.default_rng(0)
    dust = np.r_[np.zeros(18), 1e-162, 3e-162]  # constant but for numerical dust
    dust_150 = np.r_[np.zeros(18), 1e-150, 3e-150]  # its squares do not underflow: VarianceThreshold(0) keeps it
    rounding = 5.0 + np.r_[np.zeros(19), 1e-12]  # constant but for a rounding error
    rare = np.r_[np.zeros(19), 3.0]  # one case differs: a real (if rare) value, kept
    ordinary = rng.normal(size=20)
    small_units = rng.normal(size=20) * 1e-4  # a small unit is no reason to drop a column
    X = np.c_[dust, dust_150, rounding, rare, ordinary, small_units, np.full(20, 2.0)]
    kept = NearConstantFilter().fit(X).get_support()
    assert kept.tolist() == [False, False, False, True, True, True, False]
    # the pipeline before taming (exact constants only, whose variance of 1e-162 values underflows to 0)
    # kept the 1e-150 dust and the rounding error
    plain = make_pipeline("logistic", taming=NO_TAMING).fit(X, np.r_[np.zeros(10), np.ones(10)])
    assert plain["constant"].get_support().tolist() == [False, True, True, True, True, True, False]


def test_dust_decides_without_taming_and_not_with_it():
    """A column of zeros and 1e-150 on the training rows, ordinary on the test rows: z-scores of 1e147 untamed."""
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(15), np.ones(15)].astype(int)
    X = rng.normal(size=(30, 5))
    X[:, 0] = 0.0
    X[y == 1, 0] = 1e-150 * rng.uniform(1, 2, 15)  # separates the classes perfectly, by dust
    test = rng.normal(size=(4, 5))
    test[:, 0] = 0.012
    plain = make_pipeline("dlr", taming=NO_TAMING).fit(X, y)
    counts = selection_counts(plain, test)
    assert plain["select"].get_support()[0] and counts["max_abs_z_test"] > 1e140
    tamed = make_pipeline("dlr", taming=DEFAULT_TAMING).fit(X, y)
    counts = selection_counts(tamed, test)
    assert counts["n_dropped_constant"] == 1 and counts["max_abs_z_test"] < 10


def test_clipping_bounds_a_rare_column_and_robust_scaling_uses_median_and_iqr():
    X = np.c_[np.r_[np.zeros(19), 1.0], np.arange(20.0)]
    z = ClippingScaler(clip=3.0).fit(X)
    assert z.n_clipped_ == 1  # the lone 1 is 4.4 sd above the mean of the training rows
    assert z.transform(np.array([[40.0, 5.0]]))[0, 0] == 3.0 and z.clipped_columns(np.array([[40.0, 5.0]])) == 1
    robust = ClippingScaler(center="median", clip=None).fit(X)
    np.testing.assert_allclose(robust.center_, [0.0, 9.5])
    np.testing.assert_allclose(robust.scale_, [X[:, 0].std(), (14.25 - 4.75) / 1.349])  # IQR 0: the sd instead


def test_cross_validation_records_what_the_selection_kept_per_fold():
    X, y = unequal_groups(seed=2, n_pos=30, n_neg=15, p=60)
    X[:, 10] = 0.0
    X[::4, 10] = 1e-200  # dust: dropped in every fold
    frame = pd.DataFrame(X, columns=[f"original_firstorder_F{i:02d}" for i in range(X.shape[1])])
    res = cross_validate(frame, y, "dlr", folds=3, repeats=2, seed=0, protocol=DLRProtocol(k=4, ttest="student"))
    assert len(res.selection) == 6 and res.selection["n_selected"].tolist() == [4] * 6
    assert (res.selection["n_dropped_constant"] == 1).all() and (res.selection["n_features"] == 60).all()
    assert res.protocol == DLRProtocol(k=4, ttest="student") and res.taming == DEFAULT_TAMING
    paper = cross_validate(frame, y, "dlr", folds=3, repeats=2, seed=0, protocol=PAPER)
    np.testing.assert_array_equal(paper.selection["n_selected"], np.maximum(paper.selection["n_passed_ttest"], 1))
    assert paper.selection["n_selected"].min() >= 3 and paper.selected_range()[1] > 4
    logistic = cross_validate(frame, y, "logistic", folds=3, repeats=2, seed=0)
    assert logistic.protocol is None and logistic.selection["n_passed_ttest"].isna().all()
