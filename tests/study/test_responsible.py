"""Responsible vectors on synthetic codeword-count tables (mechanics)."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from deepradiomics.errors import ParamsError
from deepradiomics.study import firth_logit, responsible_vectors

from ._synthetic import count_table


@pytest.fixture(scope="module")
def planted():
    # +8 counts on a Poisson(30) background: clear, but not so strong that the MLE separates
    counts, y = count_table(n=60, seed=0, planted={10: +1, 30: -1}, shift=8)
    return counts, y, responsible_vectors(counts, y, labels=("G2", "G3"))


def test_finds_the_planted_codewords_and_their_class(planted):
    _, _, rv = planted
    found = dict(zip(rv.responsible["codeword"], rv.responsible["responsible_for"]))
    assert found == {"Codeword010": "G3", "Codeword030": "G2"}
    assert rv.fit_method == "mle"


def test_preselection_is_recorded(planted):
    counts, y, rv = planted
    table = rv.table.set_index("codeword")
    assert len(table) == 512 and list(rv.table["column"]) == list(counts.columns)
    assert table.loc["Codeword300", "preselection"].startswith("rare (used in 0")
    assert table.loc["Codeword205", "preselection"].startswith("rare (used in 2")
    assert rv.settings["n_passed_usage_filter"] == 40  # the 40 common codewords
    assert rv.settings["max_codewords"] == 3 and table["in_model"].sum() == 3
    # non-model codewords have no LRT; Mann-Whitney is corrected over all 40 that passed the filter
    assert table.loc[~table["in_model"], "lrt_p"].isna().all()
    assert table["mannwhitney_p_adjusted"].notna().sum() == 40


def test_lrt_statistic_equals_twice_the_loglik_difference_by_hand(planted):
    counts, y, rv = planted
    model_cols = rv.table.loc[rv.table["in_model"], "column"].tolist()
    # raw counts here: the LRT does not depend on the z-scoring used inside
    full = sm.Logit(y, sm.add_constant(counts[model_cols].astype(float))).fit(disp=0)
    for col in model_cols:
        rest = [c for c in model_cols if c != col]
        reduced = sm.Logit(y, sm.add_constant(counts[rest].astype(float))).fit(disp=0)
        lr = 2 * (full.llf - reduced.llf)
        row = rv.table.set_index("column").loc[col]
        assert row["lrt_statistic"] == pytest.approx(lr, rel=1e-5)
        assert row["lrt_p"] == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-4)


def test_group_tests_match_scipy(planted):
    counts, y, rv = planted
    row = rv.table.set_index("codeword").loc["Codeword010"]
    a, b = counts.loc[y == 0, "original_vqhist_Codeword010"], counts.loc[y == 1, "original_vqhist_Codeword010"]
    assert row["mannwhitney_p"] == pytest.approx(stats.mannwhitneyu(b, a).pvalue)
    assert row["shapiro_p_positive"] == pytest.approx(stats.shapiro(b).pvalue)
    assert row["mean_positive"] == pytest.approx(b.mean()) and row["mean_positive"] > row["mean_negative"]


def test_correction_changes_adjusted_pvalues_only():
    counts, y = count_table(n=60, seed=0, planted={10: +1, 30: -1}, shift=8)
    holm = responsible_vectors(counts, y, correction="holm").table
    none = responsible_vectors(counts, y, correction="none").table
    pd.testing.assert_series_equal(holm["lrt_p"], none["lrt_p"])
    assert (none["mannwhitney_p_adjusted"].dropna() <= holm["mannwhitney_p_adjusted"].dropna()).all()
    assert (none["mannwhitney_p_adjusted"].dropna() < holm["mannwhitney_p_adjusted"].dropna()).any()


def test_no_signal_finds_no_responsible_codeword():
    counts, y = count_table(n=60, seed=1)
    assert responsible_vectors(counts, y).responsible.empty


def test_separation_falls_back_to_firth():
    counts, y = count_table(n=40, seed=2)
    col = "original_vqhist_Codeword050"
    counts[col] = np.where(y == 1, 40 + np.arange(40) % 7, 0)  # used only by positive cases: separates
    rv = responsible_vectors(counts, y, labels=("neg", "pos"))
    assert rv.fit_method == "firth"
    row = rv.table.set_index("column").loc[col]
    assert np.isfinite(row["lrt_statistic"]) and row["lrt_statistic"] > 0
    assert row["responsible"] and row["responsible_for"] == "pos"


def test_firth_matches_the_half_count_rule_on_a_separated_2x2_table():
    # For a binary predictor Firth's estimate equals the log odds with 0.5 added to each cell.
    x = np.r_[np.zeros(10), np.ones(10)][:, None]
    y = np.r_[np.zeros(10), np.ones(10)]
    beta, _ = firth_logit(x, y)
    assert beta[0] == pytest.approx(np.log(0.5 / 10.5), abs=1e-6)
    assert beta[1] == pytest.approx(2 * np.log(10.5 / 0.5), abs=1e-6)


def test_bad_inputs_are_clear_errors():
    counts, y = count_table(n=20, seed=3)
    bad = counts.astype(float)
    bad.iloc[0, 0] = np.nan
    with pytest.raises(ParamsError, match="Codeword000"):
        responsible_vectors(bad, y)
    with pytest.raises(ParamsError, match="at least 3 cases of each class"):
        responsible_vectors(counts.iloc[:4], np.array([0, 0, 1, 1]))
