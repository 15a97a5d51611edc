import html

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepradiomics.errors import ParamsError
from deepradiomics.study.report import _auc_words
from deepradiomics.study.statistics import (
    METRICS,
    PROPORTIONS,
    adjust_pvalues,
    auc,
    binary_metrics,
    bootstrap_metrics,
    corrected_resampled_ttest,
    delong_test,
    interval_note,
    proportion_ci,
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


# Newcombe (1998), "Two-sided confidence intervals for the single proportion: comparison of seven methods",
# Stat Med 17:857-872, Table I: 95% limits of four examples by method 5 (Clopper-Pearson) and method 3 (Wilson)
NEWCOMBE_TABLE_1 = {
    (81, 263): {"clopper-pearson": (0.2527, 0.3676), "wilson": (0.2553, 0.3662)},
    (15, 148): {"clopper-pearson": (0.0578, 0.1617), "wilson": (0.0624, 0.1605)},
    (0, 20): {"clopper-pearson": (0.0, 0.1684), "wilson": (0.0, 0.1611)},
    (1, 29): {"clopper-pearson": (0.0009, 0.1776), "wilson": (0.0061, 0.1718)},
}


@pytest.mark.parametrize("method", ["clopper-pearson", "wilson"])
def test_proportion_ci_matches_newcombe_table_1(method):
    for (k, n), limits in NEWCOMBE_TABLE_1.items():
        np.testing.assert_allclose(proportion_ci(k, n, method=method), limits[method], atol=5e-5)


@pytest.mark.parametrize(("method", "statsmodels_name"), [("clopper-pearson", "beta"), ("wilson", "wilson")])
def test_proportion_ci_agrees_with_statsmodels(method, statsmodels_name):
    from statsmodels.stats.proportion import proportion_confint

    for n in (1, 2, 3, 5, 9, 20, 57):
        for k in range(n + 1):
            for level in (0.95, 0.9):
                ours = proportion_ci(k, n, level, method)
                np.testing.assert_allclose(ours, proportion_confint(k, n, alpha=1 - level, method=statsmodels_name), atol=1e-10)
                assert ours[0] <= k / n <= ours[1]
    assert np.isnan(proportion_ci(0, 0)).all()
    with pytest.raises(ParamsError, match="Did you mean 'wilson'"):
        proportion_ci(1, 2, method="wilsom")


def test_bootstrap_metrics_proportions_do_not_collapse_on_small_counts():
    # an external set of 9 positives and 3 negatives, all called right: 3/3 specificity, 9/9 PPV
    y = np.r_[np.ones(9), np.zeros(3)].astype(int)
    s = np.r_[np.linspace(0.6, 0.9, 9), [0.1, 0.2, 0.3]]
    table = bootstrap_metrics(y, s, threshold=0.5, n_boot=200, seed=0)
    assert list(table.index) == list(METRICS)
    spec, ppv = table.loc["specificity"], table.loc["PPV"]
    assert (spec["successes"], spec["trials"]) == (3, 3) and (ppv["successes"], ppv["trials"]) == (9, 9)
    # exact Clopper-Pearson limits: (alpha/2)^(1/n) for n/n
    assert spec["ci_low"] == pytest.approx(0.025 ** (1 / 3)) and spec["ci_high"] == 1.0
    assert ppv["ci_low"] == pytest.approx(0.025 ** (1 / 9)) and ppv["ci_high"] == 1.0
    assert set(table.loc[list(PROPORTIONS), "interval"]) == {"clopper-pearson"}
    assert table.loc[list(PROPORTIONS), "sd"].isna().all()
    # AUC, MCC, F1 keep the bootstrap (here every resample is perfect, so their interval is a point)
    assert set(table.loc[["AUC", "MCC", "F1"], "interval"]) == {"bootstrap"}
    assert table.loc["AUC", "ci_low"] == table.loc["AUC", "ci_high"] == 1.0


def test_bootstrap_metrics_proportion_intervals_use_the_confusion_counts():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 40)
    s = y + rng.normal(0, 1, 40)
    table = bootstrap_metrics(y, s, threshold=0.5, n_boot=100, seed=1)
    pred = s >= 0.5
    counts = {
        "sensitivity": ((pred & (y == 1)).sum(), (y == 1).sum()),
        "specificity": ((~pred & (y == 0)).sum(), (y == 0).sum()),
        "PPV": ((pred & (y == 1)).sum(), pred.sum()),
        "NPV": ((~pred & (y == 0)).sum(), (~pred).sum()),
        "accuracy": ((pred == (y == 1)).sum(), len(y)),
    }
    for name, (k, n) in counts.items():
        row = table.loc[name]
        assert (row["successes"], row["trials"]) == (k, n)
        assert row["estimate"] == pytest.approx(k / n)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(proportion_ci(k, n))


def test_interval_note_names_every_metric():
    note = interval_note(500)
    for name in METRICS:
        assert name in note
    assert "Clopper-Pearson" in note and "500 replicates" in note


# ------------------------------------------------------------------------------ report wording
def test_auc_words_never_grade_an_interval_that_includes_chance():
    assert "no evidence" in _auc_words(0.72, 0.48, 0.95) and "moderate" not in _auc_words(0.72, 0.48, 0.95)
    assert "no evidence" in _auc_words(0.72, np.nan, np.nan)
    assert "below chance" in _auc_words(0.3, 0.2, 0.45)
    assert _auc_words(0.72, 0.6, 0.84).startswith("was moderate")
    assert _auc_words(0.95, 0.9, 1.0).startswith("was excellent")


def test_report_says_which_interval_each_external_and_loo_metric_uses(tmp_path):
    from deepradiomics.study import run_study

    from ._synthetic import noise_table

    X, y = noise_table(n=40, p=6, seed=5)
    X.iloc[:, 0] += 1.5 * y  # some signal
    test, y_test = noise_table(n=16, p=6, seed=6)
    test.iloc[:, 0] += 1.5 * y_test
    test.index = [f"test{i:03d}" for i in range(16)]
    labels = pd.DataFrame({"ID": [*X.index, *test.index], "label": [*y, *y_test]})
    result = run_study(X, labels=labels, target="label", models=["logistic", "dlr-loo"], folds=2, repeats=1, n_boot=50, test=test)
    page = result.write(tmp_path / "report").read_text()
    note = html.escape(interval_note(50))
    external = page[page.index("<h2>External validation") :]
    assert note in external[: external.index("<table")]
    performance = page[page.index("<h2>Performance") : page.index("<h2>Comparisons")]
    assert "Leave-one-out rows" in performance and note in performance
    methods = page[page.index("<h2>Methods") :]
    assert methods.count(note) == 2  # dlr-loo and external validation
    assert "bootstrap 95% CI]" not in page


def test_zero_width_intervals_get_a_caveat():
    from types import SimpleNamespace

    from deepradiomics.study.report import _degenerate_intervals

    y = np.r_[np.ones(9), np.zeros(3)].astype(int)
    s = np.r_[np.linspace(0.6, 0.9, 9), [0.1, 0.2, 0.3]]  # perfectly separated test set
    external = bootstrap_metrics(y, s, 0.5, n_boot=50).reset_index(names="metric").assign(family="deep", model="logistic")
    metrics = pd.DataFrame(
        [
            {
                "family": "deep",
                "model": "logistic",
                "metric": "specificity",
                "mean": 0.7,
                "ci_low": 0.7,
                "ci_high": 0.7,
                "validation": "2-fold CV x 1 repeats",
            },
            {
                "family": "deep",
                "model": "logistic",
                "metric": "AUC",
                "mean": 0.8,
                "ci_low": 0.6,
                "ci_high": 1.0,
                "validation": "2-fold CV x 1 repeats",
            },
        ]
    )
    notes = _degenerate_intervals(SimpleNamespace(metrics=metrics, external=external))
    assert len(notes) == 4  # CV specificity; external AUC, MCC, F1 (the exact proportion intervals never collapse)
    assert notes[0].startswith("deep/logistic (2-fold CV x 1 repeats): the 95% interval of specificity is the single value 0.70")
    assert any(n.startswith("deep/logistic (external test set): the 95% interval of AUC") for n in notes)
