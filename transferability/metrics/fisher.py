"""SFDA: self-challenging Fisher discriminant analysis."""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.special import log_softmax

from ._validation import centre_columns, check_features_labels, class_counts, class_sums
from ._validation import pca_project, pow2_scale
from ._validation import require_finite

__all__ = ["sfda"]


def _log_posteriors(Z: np.ndarray, M: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    """Log class posteriors of a Gaussian model with identity covariance and means ``M``."""
    logits = Z @ M.T - 0.5 * np.sum(M * M, axis=1) + log_prior
    return log_softmax(logits, axis=1)


def sfda(features, labels, a: float = 1.0, challenge: float = 0.3) -> float:
    """SFDA (Shao, Zhao, Ge, Zhang, Yang, Wang, Shan & Luo, "Not All Models Are Equal:
    Predicting Model Transferability in a Self-challenging Fisher Space", ECCV 2022,
    arXiv 2207.03036). Higher is better; 0 <= SFDA <= 1.

    Variant (written from the paper's description, not from the authors' code):

    1. Regularised FDA. With the within-class scatter S_W and the between-class scatter S_B
       of the raw features (both normalised by N), the within-class scatter is regularised
       as in the paper, S_W' = (1 - lam) S_W + lam I with lam = exp(-a * sigma_max(S_B))
       (``a`` = 1), plus a tiny ridge of 1e-9 * tr(S_T) / D for numerical definiteness.
       The Fisher projection U holds the top min(C - 1, rank) generalised eigenvectors of
       S_B u = rho S_W' u, normalised so that U^T S_W' U = I.
    2. In the Fisher space, classes are Gaussians with identity covariance, means U^T mu_c
       and the empirical priors; p(y | x) is their Bayes posterior (a softmax).
    3. Self-challenging step (the paper's ConfMix idea: make the examples a model finds
       easy harder, so that models differ on hard examples). Each projected sample is moved
       towards the mean of its most confusable other class (highest posterior among the
       wrong classes) by the fraction ``challenge * p(y_i | x_i)`` of the way; confident
       samples are challenged most. The exact mixing rule of the paper may differ.
    4. SFDA = mean over samples of the posterior of the true class on the challenged
       samples.

    When D > N the features are first rotated onto the span of the centred data (an
    orthogonal change of basis that leaves every non-zero Fisher direction unchanged).
    Features whose rows are all identical give S_B = 0, no discriminant direction, and the
    posteriors equal the priors.

    Args:
        features: ``N x D`` features (float32 or float64; computed in float64).
        labels: length-N labels of any type (at least 2 classes).
        a: regularisation strength of the paper's lam = exp(-a sigma_max(S_B)).
        challenge: self-challenging mixing fraction in [0, 1).
    """
    if not 0.0 <= challenge < 1.0:
        raise ValueError(f"challenge must be in [0, 1), got {challenge!r}")
    a = float(a)
    if not a >= 0.0 or not np.isfinite(a):
        raise ValueError(f"a must be a finite number >= 0, got {a!r}")
    X, y, n_classes = check_features_labels(features, labels)
    n, d = X.shape
    counts = class_counts(y, n_classes).astype(np.float64)
    log_prior = np.log(counts / n)
    # Work on Xs = (X - mean) / s with s an exact power of two (no overflow at extreme
    # scales). With S_W, S_B the scatters of Xs, the paper's regularised problem on the
    # raw features, S_B u = rho ((1 - lam) S_W + lam / s^2 I) u after dividing both sides
    # by s^2, has the same eigenvalues and projected coordinates Xs u.
    Xc = centre_columns(X)
    scale = pow2_scale(Xc)
    Xc /= scale
    if not Xc.any():
        Xc = np.zeros((n, 1))  # all rows identical: no direction, posteriors = priors
    elif d > n:
        Xc = pca_project(Xc)  # orthonormal coordinates in the span of the centred data
    d = Xc.shape[1]
    means = class_sums(Xc, y, n_classes) / counts[:, None]
    within = Xc - means[y]
    s_w = within.T @ within / n
    weighted = means * np.sqrt(counts / n)[:, None]
    s_b = weighted.T @ weighted
    s_b = 0.5 * (s_b + s_b.T)
    sigma_max = max(float(np.linalg.eigvalsh(s_b)[-1]), 0.0)  # in units of scale^2
    exponent = a * sigma_max * scale * scale if a > 0.0 and sigma_max > 0.0 else 0.0
    lam = float(np.exp(-exponent))  # the paper's lam = exp(-a sigma_max(S_B)), raw units
    ridge = 1e-9 * max(float(np.trace(s_w + s_b)) / d, np.finfo(np.float64).tiny)
    # lam / scale^2 in log space (either factor alone may overflow or underflow).
    identity_weight = float(np.exp(min(-exponent - 2.0 * np.log(scale), 700.0))) + ridge
    s_w_reg = (1.0 - lam) * s_w + identity_weight * np.eye(d)
    s_w_reg = 0.5 * (s_w_reg + s_w_reg.T)
    n_dirs = max(1, min(n_classes - 1, d))
    _, U = scipy.linalg.eigh(s_b, s_w_reg, subset_by_index=[d - n_dirs, d - 1])
    Z = Xc @ U
    M = means @ U
    log_p = _log_posteriors(Z, M, log_prior)
    rows = np.arange(n)
    p_true = np.exp(log_p[rows, y])
    # The rival is chosen in log space: far-away classes all underflow to probability 0.
    log_p[rows, y] = -np.inf
    rival = np.argmax(log_p, axis=1)
    step = (challenge * p_true)[:, None]
    Z_hard = Z + step * (M[rival] - Z)
    log_p_hard = _log_posteriors(Z_hard, M, log_prior)
    return require_finite(np.mean(np.exp(log_p_hard[rows, y])), "SFDA")
