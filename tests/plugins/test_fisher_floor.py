"""The Fisher-vector floors (plugins/fisher/encoding.py): numerical dust becomes exact zeros, nothing else moves.

Synthetic descriptors for the mechanics; one real case's descriptors (the shipped DLR network) for the science.
"""

from __future__ import annotations

import numpy as np
import pytest
from deepradiomics_plugins.fisher import encoding

EPS = float(np.finfo(np.float64).eps)


def gmm_with_a_far_component(d: int = 4):
    """Three components near the data and one 15 sd away in every dimension: its posteriors are about 1e-200."""
    weights = np.array([0.3, 0.3, 0.3, 0.1])
    means = np.vstack([np.zeros(d), np.full(d, 0.5), np.full(d, -0.5), np.full(d, 15.0)])
    return weights, means, np.ones((4, d))


def test_a_component_no_descriptor_touches_gives_exact_zeros():
    X = np.random.default_rng(0).normal(size=(400, 4))
    weights, means, variances = gmm_with_a_far_component()
    gamma = encoding.posteriors(X, weights, means, variances)
    assert 0 < gamma[:, 3].max() < 1e-100  # dust, not zero: the test below can fail
    plain = encoding.fisher_vector(X, weights, means, variances, posterior_floor=0.0, gradient_floor=0.0)
    floored = encoding.fisher_vector(X, weights, means, variances)
    far = np.r_[np.arange(12, 16), 16 + np.arange(12, 16)]  # Mu03d0..3, Sigma03d0..3
    assert np.all(plain[far] != 0) and np.abs(plain[far]).max() < 1e-40
    assert np.all(floored[far] == 0.0)
    near = np.setdiff1d(np.arange(32), far)
    np.testing.assert_allclose(floored[near], plain[near], rtol=1e-12, atol=1e-15)
    assert np.linalg.norm(floored) == pytest.approx(1.0, abs=1e-12)


def test_the_posterior_floor_only_flushes_values_below_it():
    X = np.random.default_rng(1).normal(size=(300, 4)) * 3
    weights, means, variances = gmm_with_a_far_component()
    plain = encoding.posteriors(X, weights, means, variances)
    floored = encoding.posteriors(X, weights, means, variances, floor=1e-6)
    below = plain < 1e-6
    assert below.any() and (~below).any()
    assert np.all(floored[below] == 0.0)
    np.testing.assert_array_equal(floored[~below], plain[~below])  # bit for bit: no renormalisation


def test_the_gradient_floor_only_flushes_entries_below_it():
    rng = np.random.default_rng(2)
    weights, means, variances = encoding.fit_gmm(rng.gamma(1.5, 1.0, size=(1000, 6)), 5, seed=0)
    X = rng.gamma(1.5, 1.0, size=(200, 6))
    g_mu, g_sigma = encoding.fisher_gradients(X, weights, means, variances, posterior_floor=0.0, gradient_floor=0.0)
    phi = np.concatenate([g_mu.ravel(), g_sigma.ravel()])
    floor = float(np.sort(np.abs(phi))[5] / np.abs(phi).max()) * 1.000001  # just above the 6th smallest entry
    f_mu, f_sigma = encoding.fisher_gradients(X, weights, means, variances, posterior_floor=0.0, gradient_floor=floor)
    floored = np.concatenate([f_mu.ravel(), f_sigma.ravel()])
    below = np.abs(phi) < floor * np.abs(phi).max()
    assert below.sum() == 6
    assert np.all(floored[below] == 0.0)
    np.testing.assert_array_equal(floored[~below], phi[~below])


@pytest.mark.parametrize("floors", [{}, {"posterior_floor": 0.0, "gradient_floor": 0.0}], ids=["floors", "no-floors"])
def test_with_and_without_floors_the_encoding_is_skimages(floors):
    """The floors change nothing measurable on ordinary data: scikit-image's Fisher vector to 1e-10 either way."""
    from skimage.feature import fisher_vector as skimage_fisher_vector
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(4)
    train = rng.gamma(1.5, 1.0, size=(3000, 6)) * (rng.random((3000, 6)) > 0.3)
    weights, means, variances = encoding.fit_gmm(train, 5, seed=0)
    X = rng.gamma(1.5, 1.0, size=(500, 6)) * (rng.random((500, 6)) > 0.3)
    gmm = GaussianMixture(n_components=5, covariance_type="diag")
    gmm.weights_, gmm.means_, gmm.covariances_ = weights, means, variances
    gmm.precisions_cholesky_ = 1.0 / np.sqrt(variances)
    raw = skimage_fisher_vector(X, gmm)  # [G_w (K); G_mu (KD); -G_sigma (KD)]
    reference = encoding.improve(np.concatenate([raw[5:35], -raw[35:]]))
    assert np.abs(encoding.fisher_vector(X, weights, means, variances, **floors) - reference).max() < 1e-10


def test_floors_are_checked():
    weights, means, variances = gmm_with_a_far_component()
    with pytest.raises(ValueError, match="posterior_floor must be in"):
        encoding.fisher_vector(np.zeros((3, 4)), weights, means, variances, posterior_floor=1.5)
    with pytest.raises(ValueError, match="gradient_floor must be in"):
        encoding.fisher_gradients(np.zeros((3, 4)), weights, means, variances, gradient_floor=-1)


@pytest.mark.usefixtures("one_torch_thread")
def test_real_descriptors_are_informative_or_exactly_zero(lgg_manifest):
    """Descriptors of three real LGG cases (shipped DLR network, 2 scales), a GMM of 16 components fitted on two:
    the third case's Fisher vector has dust without the floors and none with them, and moves by under 1e-8."""
    from deepradiomics_plugins.fisher import FisherVector

    from deepradiomics.case import Case
    from tests.conftest import require_data

    fisher = FisherVector({"scales": 2, "min_scale": 1.0, "max_scale": 2.0, "components": 16, "gmm_patients": 2, "on_small_roi": "warn"})
    arrays = []
    for case_id in ("TCGA_CS_4942_19970222", "TCGA_HT_7860_19960513", "TCGA_CS_6188_20010812"):
        folder = require_data("lgg", case_id)
        case = Case({"Image": folder / "flair.nii.gz", "t1ce": folder / "t1ce.nii.gz"}, folder / "mask.nii.gz", case_id=case_id)
        arrays.append(fisher.describe(case)["descriptors"])
    weights, means, variances = encoding.fit_gmm(np.concatenate(arrays[:2]), 16, seed=0)
    plain = encoding.fisher_vector(arrays[2], weights, means, variances, posterior_floor=0.0, gradient_floor=0.0)
    floored = encoding.fisher_vector(arrays[2], weights, means, variances)
    peak = np.abs(floored).max()
    assert np.any((plain != 0) & (np.abs(plain) < 1e-12 * peak))  # dust without the floors
    nonzero = np.abs(floored[floored != 0])
    assert nonzero.min() >= np.sqrt(EPS) * peak * (1 - 1e-9)  # every value informative, or exactly 0
    assert (floored == 0).sum() > (plain == 0).sum()
    assert np.abs(floored - plain).max() < 1e-8


def test_fit_gmm_reports_convergence():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (200, 3)), rng.normal(6, 1, (200, 3))]
    report: dict = {}
    encoding.fit_gmm(X, 2, seed=0, report=report)
    assert report["converged"] is True and 1 <= report["iterations"] < 100
    stopped: dict = {}
    encoding.fit_gmm(X, 8, seed=0, max_iter=1, report=stopped)
    assert stopped == {"converged": False, "iterations": 1}
