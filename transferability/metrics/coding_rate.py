"""TransRate: coding rate of the features minus their class-conditional coding rate."""

from __future__ import annotations

import numpy as np

from ._validation import centre_columns, check_features_labels, pow2_scale, require_finite

__all__ = ["transrate", "coding_rate"]


def coding_rate(Z: np.ndarray, eps: float, scale: float = 1.0) -> float:
    """R(s Z, eps) = 1/2 log det(I_d + s^2 Z^T Z / (n eps)) for an ``n x d`` matrix Z.

    ``scale`` (s) lets callers pass features divided by a power of two: the eigenvalues of
    the smaller Gram matrix (det(I_d + a Z^T Z) = det(I_n + a Z Z^T)) are combined with
    s^2 / (n eps) in log space, so no intermediate overflows. Float64.
    """
    n, d = Z.shape
    gram = Z.T @ Z if d <= n else Z @ Z.T
    eigenvalues = np.linalg.eigvalsh(gram)
    eigenvalues = eigenvalues[eigenvalues > 0.0]
    log_factor = 2.0 * np.log(scale) - np.log(n) - np.log(eps)
    return 0.5 * float(np.sum(np.logaddexp(0.0, np.log(eigenvalues) + log_factor)))


def transrate(features, labels, eps: float = 1e-4) -> float:
    """TransRate (Huang, Huang, Rong, Yang & Wei, "Frustratingly Easy Transferability
    Estimation", ICML 2022, arXiv 2106.09362). Higher is better.

    Variant: the paper's definition on the raw features, centred by their global mean::

        TransRate = R(Z, eps) - 1/C sum_c R(Z_c, eps),
        R(Z, eps) = 1/2 log det(I_d + Z^T Z / (n eps))

    where Z_c holds the (globally centred) rows of class c and n is the number of rows of
    the matrix at hand; eps = 1e-4 as in the paper. The per-class term is the plain mean
    over classes. The value depends on the feature scale through eps.

    Args:
        features: ``N x D`` features (float32 or float64; computed in float64).
        labels: length-N labels of any type (at least 2 classes).
        eps: distortion (> 0).
    """
    eps = float(eps)
    if not eps > 0 or not np.isfinite(eps):
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    X, y, n_classes = check_features_labels(features, labels)
    Z = centre_columns(X)
    scale = pow2_scale(Z)
    Z /= scale  # exact; the scale re-enters inside coding_rate, in log space
    total = coding_rate(Z, eps, scale)
    order = np.argsort(y, kind="stable")
    bounds = np.searchsorted(y[order], np.arange(n_classes + 1))
    per_class = [coding_rate(Z[order[bounds[c]:bounds[c + 1]]], eps, scale)
                 for c in range(n_classes)]
    return require_finite(total - float(np.mean(per_class)), "TransRate")
