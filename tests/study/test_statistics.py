import numpy as np
import pytest
from scipy import stats

from deepradiomics.errors import ParamsError
from deepradiomics.study.statistics import (
    adjust_pvalues,
    auc,
    binary_metrics,
    bootstrap_metrics,
    corrected_resampled_ttest,
    delong_test,
    summarize_resamples,
)


def test_binary_metrics_from_a_known_confusion_matrix():
    # TP=2, FN=1, TN=3, FP=1
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.3, 0.4])
    m = binary_metrics(y, s, threshold=0.5)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["PPV"] == pytest.approx(2 / 3)
    assert m["NPV"] == pytest.approx(3 / 4)
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["F1"] == pytest.approx(2 / 3)
    assert m["MCC"] == pytest.approx((2 * 3 - 1 * 1) / np.sqrt(3 * 3 * 4 * 4))
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    assert m["AUC"] == pytest.approx(roc_auc_score(y, s))
    assert m["MCC"] == pytest.approx(matthews_corrcoef(y, s >= 0.5))


def test_undefined_ratios_are_nan_not_zero():
    y = np.array([1, 0, 1, 0])
    m = binary_metrics(y, np.zeros(4), threshold=0.5)  # nothing called positive
    assert np.isnan(m["PPV"])
    assert m["sensitivity"] == 0 and m["specificity"] == 1
    assert np.isnan(auc(np.ones(3), [0.1, 0.2, 0.3]))


def test_auc_counts_ties_as_half():
    assert auc([0, 1], [0.5, 0.5]) == 0.5
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_corrected_resampled_ttest_matches_the_formula():
    rng = np.random.default_rng(0)
    d = rng.normal(0.03, 0.05, size=25)
    t, p = corrected_resampled_ttest(d, test_fraction=0.2)
    t_hand = d.mean() / np.sqrt((1 / 25 + 0.2 / 0.8) * d.var(ddof=1))
    assert t == pytest.approx(t_hand)
    assert p == pytest.approx(2 * stats.t.sf(abs(t_hand), 24))
    # the correction makes it more conservative than the naive paired t-test
    assert p > stats.ttest_1samp(d, 0).pvalue
    assert corrected_resampled_ttest(np.zeros(10), 0.2) == (0.0, 1.0)


def test_summarize_resamples_uses_the_corrected_variance():
    v = np.array([0.6, 0.7, 0.8, 0.65, np.nan])
    out = summarize_resamples(v, test_fraction=0.2)
    finite = v[np.isfinite(v)]
    half = stats.t.ppf(0.975, 3) * np.sqrt((1 / 4 + 0.25) * finite.var(ddof=1))
    assert out["n"] == 4
    assert out["mean"] == pytest.approx(finite.mean())
    assert out["ci_low"] == pytest.approx(finite.mean() - half)
    assert out["ci_high"] == pytest.approx(finite.mean() + half)


def _delong_variance_by_definition(y, a, b):
    """O(m n) structural components of DeLong et al. 1988, written independently of the fast version."""

    def psi(x, z):
        return (x > z) + 0.5 * (x == z)

    comps = []
    for s in (a, b):
        pos, neg = s[y == 1], s[y == 0]
        p = psi(pos[:, None], neg[None, :])
        comps.append((p.mean(1), p.mean(0)))
    v10 = np.vstack([c[0] for c in comps])
    v01 = np.vstack([c[1] for c in comps])
    s = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    return s[0, 0] + s[1, 1] - 2 * s[0, 1]


def test_delong_agrees_with_the_definition_and_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 80)
    a = y + rng.normal(0, 1.0, 80)
    b = np.round(y * 0.5 + rng.normal(0, 1.0, 80), 1)  # ties on purpose
    res = delong_test(y, a, b)
    assert res["auc_a"] == pytest.approx(roc_auc_score(y, a))
    assert res["auc_b"] == pytest.approx(roc_auc_score(y, b))
    var = _delong_variance_by_definition(y, a, b)
    assert res["se"] == pytest.approx(np.sqrt(var))
    assert res["p"] == pytest.approx(2 * stats.norm.sf(abs(res["difference"]) / np.sqrt(var)))
    same = delong_test(y, a, a)
    assert same["difference"] == 0 and same["p"] == 1.0


def test_bootstrap_metrics_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 60)
    s = y + rng.normal(0, 1, 60)
    first = bootstrap_metrics(y, s, threshold=0.5, n_boot=300, seed=3)
    again = bootstrap_metrics(y, s, threshold=0.5, n_boot=300, seed=3)
    assert first.equals(again)
    assert (first["ci_low"] <= first["estimate"]).all() and (first["estimate"] <= first["ci_high"]).all()
    assert first.loc["AUC", "estimate"] == pytest.approx(auc(y, s))


def test_adjust_pvalues():
    p = [0.01, 0.04, np.nan, 0.03]
    holm = adjust_pvalues(p, "holm")
    assert np.isnan(holm[2])
    np.testing.assert_allclose(holm[[0, 3, 1]], [0.03, 0.06, 0.06])
    bh = adjust_pvalues(p, "bh")  # alias of fdr_bh
    np.testing.assert_allclose(bh[[0, 3, 1]], [0.03, 0.04, 0.04])
    with pytest.raises(ParamsError, match="Did you mean 'holm'"):
        adjust_pvalues(p, "hlom")
