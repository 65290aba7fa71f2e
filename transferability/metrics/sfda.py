"""SFDA: self-challenging Fisher discriminant analysis."""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.special import log_softmax, softmax

from ._validation import class_sums, require_finite
from .statistics import statistics_of

__all__ = ["sfda"]


def _largest_eigenvalue_estimate(A: np.ndarray, rounds: int = 3) -> float:
    """Three rounds of power iteration from the row sums, as the authors estimate
    sigma_max(S_W) (``iterative_A`` in TencentARC/SFDA); not converged, and that is the
    value their shrinkage uses."""
    x = A.sum(axis=1)
    for _ in range(rounds):
        t = A @ x
        v = t / np.linalg.norm(t)
        t = A @ v
        x = t / np.linalg.norm(t)
    return float(x @ A @ v)


def _shrunk(S: np.ndarray, shrinkage: float) -> np.ndarray:
    """(1 - s) S + s (tr S / D) I."""
    out = (1.0 - shrinkage) * S
    out[np.diag_indices_from(out)] += shrinkage * np.trace(S) / S.shape[0]
    return out


def _posteriors(backend, Xc, within: np.ndarray, means: np.ndarray, log_prior: np.ndarray):
    """Bayes posteriors of Gaussian classes with shared covariance ``within``.

    The authors project on every generalised eigenvector of (S_B, S_W') and score with
    coef = M E E^T; since E^T S_W' E = I, E E^T = S_W'^-1, so this is the linear
    discriminant with S_W' and the eigenvectors need not be formed.
    """
    chol = scipy.linalg.cho_factor(within, lower=True)
    coef = scipy.linalg.cho_solve(chol, means.T)  # D x C
    logits = backend.matmul(Xc, coef) - 0.5 * np.sum(means.T * coef, axis=0) + log_prior
    return np.exp(log_softmax(logits, axis=1))


def sfda(features, labels=None) -> float:
    """SFDA (Shao, Zhao, Ge, Zhang, Yang, Wang, Shan & Luo, "Not All Models Are Equal:
    Predicting Model Transferability in a Self-challenging Fisher Space", ECCV 2022,
    arXiv 2207.03036). Higher is better; 0 < SFDA < 1.

    Follows TencentARC/SFDA ``metrics.py`` ``SFDA_Score``:

    1. Regularised Fisher discriminant. S_W = sum_c prior_c cov_c (biased covariances);
       shrinkage lam = max(exp(-5 sigma), 1e-10) with sigma the three-round power-iteration
       estimate of S_W's largest eigenvalue (in feature units); S_W' = (1 - lam) S_W +
       lam (tr S_W / D) I. The classifier keeps all D discriminant directions, which makes
       it the linear discriminant with covariance S_W' and the empirical priors.
    2. p(y | x) are its posteriors, softened once more by a softmax over the probabilities
       (as released: exp(p) / sum exp(p)).
    3. ConfMix: each sample x of class c becomes p x + (1 - p) o_c, with p its softened
       probability of class c and o_c the mean of the other classes' means.
    4. The discriminant is fitted again on the mixed features with the same lam, and SFDA is
       the mean posterior of the true class.

    Everything is invariant to a translation of the features and is computed on the shared
    centred statistics; the one scale-dependent quantity, lam, uses feature units.

    Args:
        features: ``N x D`` features, or a :class:`~.statistics.FeatureStatistics`.
        labels: length-N labels of any type (at least 2 classes).
    """
    stats = statistics_of(features, labels)
    stats.require_classes(2)
    backend, y, n = stats.backend, stats.y, stats.n
    counts = stats.counts.astype(np.float64)
    log_prior = np.log(counts / n)
    means = stats.class_means
    # S_W = (scatter - sum_c n_c mu_c mu_c^T) / N, from the shared Gram.
    within = (stats.gram - (means.T * counts) @ means) / n
    within = 0.5 * (within + within.T)
    if not np.trace(within) > 0.0:  # every class is one point: the posteriors are priors
        return require_finite(float(np.mean(counts[y] / n)), "SFDA")
    sigma = _largest_eigenvalue_estimate(within) * stats.scale ** 2
    shrinkage = max(float(np.exp(-5.0 * sigma)), 1e-10)
    prob = _posteriors(backend, stats.centred, _shrunk(within, shrinkage), means, log_prior)
    soft = softmax(prob, axis=1)
    p = soft[np.arange(n), y][:, None]
    others = (means.sum(axis=0) - means) / (stats.n_classes - 1)
    mixed = p * backend.take(stats.centred) + (1.0 - p) * others[y]
    mixed_means = class_sums(mixed, y, stats.n_classes) / counts[:, None]
    mixed_within = backend.gram(backend.put(mixed - mixed_means[y])) / n
    mixed_within = _shrunk(0.5 * (mixed_within + mixed_within.T), shrinkage)
    prob = _posteriors(backend, backend.put(mixed), mixed_within, mixed_means, log_prior)
    return require_finite(float(np.mean(prob[np.arange(n), y])), "SFDA")
