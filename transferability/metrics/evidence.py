"""LogME: the log marginal evidence of a Bayesian linear model on the features.

You, Liu, Wang & Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021, arXiv 2102.11005.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_features_labels, check_positive_int, class_counts, class_sums
from ._validation import pow2_scale, require_finite

__all__ = ["logme"]

_TINY = 1e-300
_CLIP = 1e100


def _spectrum(X: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``sigma`` of F^T F (= squared singular values of F) and ``z = U^T Y``.

    One decomposition for all classes: ``eigh`` of the smaller of ``F^T F`` (D x D) and
    ``F F^T`` (N x N), which equals an SVD of F. Products with the one-hot matrix Y are
    per-class sums (O(N D), not O(N D C)). Numerically zero directions (eigenvalue at or
    below the usual rank tolerance) are dropped; the part of y they would explain stays in
    the residual, which is exactly their contribution in the limit sigma -> 0.
    """
    n, d = X.shape
    if d <= n:
        sigma, V = np.linalg.eigh(X.T @ X)
        top = max(sigma.max(initial=0.0), 0.0)
        keep = sigma > top * max(n, d) * np.finfo(np.float64).eps
        sigma, V = sigma[keep], V[:, keep]
        FtY = class_sums(X, y, n_classes).T  # D x C
        z = (V.T @ FtY) / np.sqrt(sigma)[:, None]  # U^T Y with U = F V / s
    else:
        sigma, U = np.linalg.eigh(X @ X.T)
        top = max(sigma.max(initial=0.0), 0.0)
        keep = sigma > top * max(n, d) * np.finfo(np.float64).eps
        sigma, U = sigma[keep], U[:, keep]
        z = class_sums(U, y, n_classes).T  # U^T Y
    return sigma, z


def logme(features, labels, max_iter: int = 100, tol: float = 1e-6) -> float:
    """LogME (You et al., ICML 2021, arXiv 2102.11005). Higher is better.

    Variant: the paper's classification recipe. For each class k, the one-hot column y_k is
    regressed on the raw features F (N x D) with prior w ~ N(0, alpha^-1 I) and noise
    N(0, beta^-1); alpha and beta maximise the evidence by MacKay's fixed-point iteration
    (gamma = sum_i beta s_i / (alpha + beta s_i), alpha = gamma / m^T m,
    beta = (N - gamma) / ||F m - y||^2, starting at alpha = beta = 1) carried out on the
    spectrum of F computed once. The score is the mean over classes of the maximised log
    evidence divided by N::

        L = N/2 log beta + D/2 log alpha - N/2 log 2 pi - beta/2 ||F m - y||^2
            - alpha/2 m^T m - 1/2 log |alpha I + beta F^T F|

    The iteration runs until alpha and beta change by less than ``tol`` (relative) or for
    ``max_iter`` rounds. Implementations that stop after a fixed small number of rounds
    (e.g. 11) can leave the evidence slightly below its maximum, so their values may differ
    in the last digits.

    Args:
        features: ``N x D`` raw features (float32 or float64; computed in float64).
        labels: length-N labels of any type (at least 2 classes).
    """
    max_iter = check_positive_int(max_iter, "max_iter")
    X, y, n_classes = check_features_labels(features, labels)
    # The maximised evidence is invariant to F -> s F (alpha absorbs s^2): compute on F
    # divided by an exact power of two so that extreme scales cannot overflow.
    X = X / pow2_scale(X)
    n, _ = X.shape
    counts = class_counts(y, n_classes).astype(np.float64)  # ||y_k||^2 of one-hot columns
    sigma, z = _spectrum(X, y, n_classes)  # (r,), (r, C)
    z2 = z * z
    # ||y||^2 - ||U^T y||^2: the part of y outside the column space of F.
    outside = np.maximum(counts - z2.sum(axis=0), 0.0)
    s = sigma[:, None]
    alpha = np.ones(n_classes)
    beta = np.ones(n_classes)
    for _ in range(max_iter):
        denom = alpha + beta * s  # (r, C)
        gamma = np.sum(beta * s / denom, axis=0)
        m2 = np.sum(beta * beta * s * z2 / (denom * denom), axis=0)
        res2 = np.sum(alpha * alpha * z2 / (denom * denom), axis=0) + outside
        new_alpha = np.clip(gamma / np.maximum(m2, _TINY), 1.0 / _CLIP, _CLIP)
        new_beta = np.clip((n - gamma) / np.maximum(res2, _TINY), 1.0 / _CLIP, _CLIP)
        done = (np.abs(new_alpha - alpha) <= tol * alpha).all() and (
            np.abs(new_beta - beta) <= tol * beta
        ).all()
        alpha, beta = new_alpha, new_beta
        if done:
            break
    denom = alpha + beta * s
    m2 = np.sum(beta * beta * s * z2 / (denom * denom), axis=0)
    res2 = np.sum(alpha * alpha * z2 / (denom * denom), axis=0) + outside
    # D/2 log alpha - 1/2 log|A| = 1/2 sum_i [log alpha - log(alpha + beta s_i)]: the D - r
    # null directions of F contribute log(alpha) to both terms and cancel.
    evidence = (
        0.5 * n * np.log(beta)
        + 0.5 * np.sum(np.log(alpha) - np.log(denom), axis=0)
        - 0.5 * n * np.log(2.0 * np.pi)
        - 0.5 * beta * res2
        - 0.5 * alpha * m2
    )
    return require_finite(np.mean(evidence) / n, "LogME")
