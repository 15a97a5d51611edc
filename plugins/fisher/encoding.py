"""Improved Fisher vector encoding over a diagonal Gaussian mixture (Perronnin, Sanchez & Mensink, ECCV 2010).

A case is a set of N local descriptors :math:`x_1 \\ldots x_N \\in \\mathbb{R}^D` (the last-conv-layer
responses of the DLR network inside the ROI). A K-component GMM with diagonal covariances, fitted on the
descriptors of a training cohort (scikit-learn's ``GaussianMixture(covariance_type="diag")``), has weights
:math:`w_k`, means :math:`\\mu_k` and variances :math:`\\sigma_k^2` (per dimension). With the soft
assignments

.. math::
    \\gamma_i(k) = \\frac{w_k\\, \\mathcal{N}(x_i; \\mu_k, \\sigma_k^2)}{\\sum_{j=1}^{K} w_j\\, \\mathcal{N}(x_i; \\mu_j, \\sigma_j^2)}

the normalised gradients of the average log-likelihood with respect to the means and the standard
deviations are, per component k and dimension d,

.. math::
    \\mathcal{G}^{\\mu}_{k,d} = \\frac{1}{N \\sqrt{w_k}} \\sum_{i=1}^{N} \\gamma_i(k)\\, \\frac{x_{i,d} - \\mu_{k,d}}{\\sigma_{k,d}}
    \\qquad
    \\mathcal{G}^{\\sigma}_{k,d} = \\frac{1}{N \\sqrt{2 w_k}} \\sum_{i=1}^{N} \\gamma_i(k)
        \\left[ \\frac{(x_{i,d} - \\mu_{k,d})^2}{\\sigma_{k,d}^2} - 1 \\right]

and the improved Fisher vector is their concatenation :math:`\\Phi = [\\mathcal{G}^{\\mu}; \\mathcal{G}^{\\sigma}]`
(2KD values, each block component-major: index :math:`kD + d`) after the signed square root and L2
normalisation:

.. math:: z = \\operatorname{sign}(\\Phi) \\sqrt{|\\Phi|}, \\qquad \\mathrm{FV} = z / \\lVert z \\rVert_2

(the weight gradients are left out, as in Li et al. 2017's 2KD = 16,384 values for K = 64, D = 128).

Relation to ``skimage.feature.fisher_vector(descriptors, gmm)``: its vector is
:math:`[\\mathcal{G}^{w}; \\mathcal{G}^{\\mu}; -\\mathcal{G}^{\\sigma}]` (K weight gradients first, and the
variance block with the opposite sign); dropping the first K values and negating the last KD gives
:math:`\\Phi` (checked to 1e-10 in the tests, with the floors below and without them).

Floors (the project's choice, not the paper's nor Perronnin et al.'s): so that every dimension is either
informative or exactly 0, two kinds of numerical dust are flushed to exactly 0.

- Posteriors :math:`\\gamma_i(k) <` :data:`POSTERIOR_FLOOR` = 2.2e-16 (float64's machine epsilon) are set to 0
  before the statistics :math:`S^0, S^1, S^2` (the others are left as they are, not renormalised). In
  D = 128 dimensions the log-likelihoods of a descriptor under different components differ by hundreds
  of nats, so posteriors spread continuously down to 1e-323, with no gap to place a floor in: on the 62
  TCGA-LGG cases with a grade (GMM of 64 components on 30 of them, 79.4 M descriptor-component pairs)
  76.7 % are exactly 0, 20.4 % lie between 0 and 2.2e-16, 0.9 % between 2.2e-16 and 1e-8, 2.1 % above.
  A posterior under machine epsilon is invisible in its own normalisation (1 + 2.2e-16 == 1 in float64)
  and comes from a Gaussian's tail far beyond the descriptors it was fitted on.
- Gradient entries :math:`|\\Phi_j| <` :data:`GRADIENT_FLOOR` :math:`\\cdot \\max_l |\\Phi_l|` (the same epsilon,
  relative to the case's largest entry) are set to 0 before the signed square root and the L2
  normalisation: that is where their size is measured against the vector's (after the square root a
  1e-300 entry would be 1e-150, and after the normalisation no longer comparable across cases). They
  come from components that a case touches only through such tails, or from dimensions where a
  component's mean is itself dust (146 of the 8,192 means of that GMM are non-zero but under 1e-30, the
  smallest 1.4e-45: float32 subnormals for filters that almost never fire). After this floor every
  non-zero value of a Fisher vector is at least sqrt(2.2e-16) = 1.5e-8 times its largest.

Measured by ``python benchmarks/near_constant.py --part floor`` on those 62 cases: together the floors
changed no Fisher-vector value by more than 4.1e-9 (a typical value is 1/sqrt(2KD) = 0.0078). Without
them 429 dimensions were non-zero but under 1e-12 on the 30 GMM patients and, standardised on those 30,
238 dimensions gave another patient a |z| over 1e6 (the largest 1.2e157); with them no dimension is
under 1e-12 there (they are exactly 0, so a study drops them as constant) and 5 dimensions still give a
|z| over 1e6 (the largest 9.4e6): columns nearly constant on the training patients remain, which
:mod:`deepradiomics.study.classification` tames in every pipeline. ``posterior_floor=0, gradient_floor=0``
gives the plain encoding.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> weights, means, variances = fit_gmm(rng.normal(size=(500, 4)), components=3, seed=0)
>>> fv = fisher_vector(rng.normal(size=(50, 4)), weights, means, variances)
>>> fv.shape, round(float(np.linalg.norm(fv)), 12)
((24,), 1.0)
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

logger = logging.getLogger("deepradiomics_plugins.fisher")

#: descriptors processed at once by the encoder: the N x K posteriors and N x D blocks stay in cache-sized
#: pieces (8,192 was 20 % faster than 65,536 on 264,000 descriptors, K = 64, D = 128)
CHUNK = 8192
#: posteriors below this are flushed to 0 before the statistics (float64 machine epsilon; see the module docstring)
POSTERIOR_FLOOR = float(np.finfo(np.float64).eps)
#: gradient entries below this times the case's largest |entry| are flushed to 0 before the square root
GRADIENT_FLOOR = float(np.finfo(np.float64).eps)


def check_gmm(weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 copies of a diagonal GMM's arrays, checked: (K,), (K, D), (K, D), weights > 0, variances > 0.

    Raises
    ------
    ValueError
        When the shapes disagree or a weight or variance is not positive and finite.
    """
    weights = np.asarray(weights, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    variances = np.asarray(variances, dtype=np.float64)
    if weights.ndim != 1 or means.ndim != 2 or variances.shape != means.shape or len(weights) != len(means):
        raise ValueError(f"GMM arrays have shapes weights {weights.shape}, means {means.shape}, variances {variances.shape}: expected (K,), (K, D), (K, D)")
    if not (np.all(np.isfinite(weights)) and np.all(weights > 0)):
        raise ValueError("GMM weights must be positive and finite")
    if not (np.all(np.isfinite(variances)) and np.all(variances > 0)):
        raise ValueError("GMM variances must be positive and finite")
    if not np.all(np.isfinite(means)):
        raise ValueError("GMM means must be finite")
    return weights, means, variances


def fit_gmm(
    descriptors: np.ndarray,
    components: int,
    seed: int = 0,
    max_iter: int = 100,
    reg_covar: float = 1e-6,
    report: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a diagonal GMM with scikit-learn; return (weights (K,), means (K, D), variances (K, D)) as float64.

    ``GaussianMixture(n_components=components, covariance_type="diag", random_state=seed, max_iter=max_iter,
    reg_covar=reg_covar)`` with its k-means initialisation, on the descriptors in float32 (their storage
    precision; the encoding is computed in float64). ``reg_covar`` (scikit-learn's default) is added
    to every variance, which keeps dimensions that are constant within a component (e.g. a filter that
    never fires after its ReLU) from giving a zero variance. ``report`` (a dict) receives ``converged``
    (whether EM converged within ``max_iter``) and ``iterations``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    # float32 like the descriptors: scikit-learn keeps the dtype, and its EM runs about twice as fast
    X = np.asarray(descriptors, dtype=np.float32)
    if X.ndim != 2 or len(X) < components:
        raise ValueError(f"cannot fit {components} Gaussian components on {len(X)} descriptors: give more descriptors or fewer components")
    gmm = GaussianMixture(
        n_components=int(components),
        covariance_type="diag",
        random_state=int(seed),
        max_iter=int(max_iter),
        reg_covar=float(reg_covar),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        gmm.fit(X)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        # the EM state after max_iter is still a valid GMM; say so rather than stop
        logger.warning("the GMM (%d components, %d descriptors) did not converge in %d EM iterations", components, len(X), max_iter)
    if report is not None:
        report.update(converged=bool(gmm.converged_), iterations=int(gmm.n_iter_))
    return check_gmm(gmm.weights_, gmm.means_, gmm.covariances_)


def log_joint(X: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """(N, K) :math:`\\log w_k + \\log \\mathcal{N}(x_i; \\mu_k, \\sigma_k^2)` of float64 descriptors ``X``.

    The quadratic form is expanded into matrix products, :math:`\\sum_d (x_d^2 - 2 x_d \\mu_d + \\mu_d^2)/\\sigma_d^2`,
    so the N x K x D work runs as GEMMs.
    """
    precision = 1.0 / variances
    quadratic = (X * X) @ precision.T - 2.0 * X @ (means * precision).T + np.sum(means * means * precision, axis=1)
    log_norm = -0.5 * (means.shape[1] * np.log(2.0 * np.pi) + np.sum(np.log(variances), axis=1))
    return np.log(weights) + log_norm - 0.5 * quadratic


def posteriors(X: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """(N, K) soft assignments :math:`\\gamma_i(k)` (rows sum to 1), by a log-sum-exp over components.

    Values below ``floor`` are set to exactly 0 afterwards (the others are left as they are, so a row sums
    to 1 minus less than K times ``floor``).
    """
    joint = log_joint(np.asarray(X, dtype=np.float64), weights, means, variances)
    joint -= joint.max(axis=1, keepdims=True)
    np.exp(joint, out=joint)
    joint /= joint.sum(axis=1, keepdims=True)
    if floor > 0:
        joint[joint < floor] = 0.0
    return joint


def _check_floor(value: float, name: str) -> float:
    value = float(value)
    if not (0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def fisher_gradients(
    descriptors: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
    chunk: int = CHUNK,
    posterior_floor: float = POSTERIOR_FLOOR,
    gradient_floor: float = GRADIENT_FLOOR,
) -> tuple[np.ndarray, np.ndarray]:
    """The normalised gradients (G_mu, G_sigma), each (K, D), of ``descriptors`` (N, D) (see the module docstring).

    Accumulates the zeroth, first and second order statistics :math:`S^0_k = \\sum_i \\gamma_i(k)`,
    :math:`S^1_k = \\sum_i \\gamma_i(k) x_i`, :math:`S^2_k = \\sum_i \\gamma_i(k) x_i^2` over chunks of
    ``chunk`` descriptors, then uses :math:`\\sum_i \\gamma_i(k)(x_i - \\mu_k)^2 = S^2_k - 2\\mu_k S^1_k + \\mu_k^2 S^0_k`.
    Posteriors below ``posterior_floor`` are flushed to 0 first; entries of either block below
    ``gradient_floor`` times the largest |entry| of both blocks are flushed to 0 last (module docstring).
    """
    posterior_floor = _check_floor(posterior_floor, "posterior_floor")
    gradient_floor = _check_floor(gradient_floor, "gradient_floor")
    weights, means, variances = check_gmm(weights, means, variances)
    X = np.asarray(descriptors)
    if X.ndim != 2 or X.shape[1] != means.shape[1]:
        raise ValueError(f"descriptors have shape {X.shape}: expected (N, {means.shape[1]}), the GMM's dimension")
    n = len(X)
    if n == 0:
        raise ValueError("no descriptor to encode")
    k, d = means.shape
    s0 = np.zeros(k)
    s1 = np.zeros((k, d))
    s2 = np.zeros((k, d))
    for start in range(0, n, int(chunk)):
        block = np.asarray(X[start : start + int(chunk)], dtype=np.float64)
        gamma = posteriors(block, weights, means, variances, floor=posterior_floor)
        s0 += gamma.sum(axis=0)
        s1 += gamma.T @ block
        s2 += gamma.T @ (block * block)
    sigma = np.sqrt(variances)
    root_w = np.sqrt(weights)[:, None]
    g_mu = (s1 - s0[:, None] * means) / (n * root_w * sigma)
    centred_square = s2 - 2.0 * means * s1 + s0[:, None] * means * means
    g_sigma = (centred_square / variances - s0[:, None]) / (n * np.sqrt(2.0) * root_w)
    if gradient_floor > 0:
        limit = gradient_floor * max(float(np.abs(g_mu).max()), float(np.abs(g_sigma).max()))
        g_mu[np.abs(g_mu) < limit] = 0.0
        g_sigma[np.abs(g_sigma) < limit] = 0.0
    return g_mu, g_sigma


def improve(phi: np.ndarray) -> np.ndarray:
    """Signed square root then L2 normalisation (the "improved" Fisher vector); an all-zero vector stays zero."""
    z = np.sign(phi) * np.sqrt(np.abs(phi))
    norm = float(np.linalg.norm(z))
    return z / norm if norm > 0 else z


def fisher_vector(
    descriptors: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
    chunk: int = CHUNK,
    posterior_floor: float = POSTERIOR_FLOOR,
    gradient_floor: float = GRADIENT_FLOOR,
) -> np.ndarray:
    """The improved Fisher vector (2KD,) of ``descriptors`` (N, D): ``improve([G_mu.ravel(), G_sigma.ravel()])``.

    With the floors of the module docstring (``posterior_floor=0, gradient_floor=0``: without them).
    """
    g_mu, g_sigma = fisher_gradients(descriptors, weights, means, variances, chunk, posterior_floor, gradient_floor)
    return improve(np.concatenate([g_mu.ravel(), g_sigma.ravel()]))


def subsample(descriptors: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    """At most ``limit`` rows of ``descriptors`` drawn without replacement by ``rng`` (all rows, in order, when fewer)."""
    if limit is None or len(descriptors) <= int(limit):
        return descriptors
    rows = np.sort(rng.choice(len(descriptors), size=int(limit), replace=False))
    return descriptors[rows]
