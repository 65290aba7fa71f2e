"""GBC: Gaussian Bhattacharyya coefficient between classes in a PCA space."""

from __future__ import annotations

import numpy as np

from ._validation import check_features_labels, check_positive_int, class_counts, class_sums
from ._validation import pca_project, require_finite

__all__ = ["gbc"]


def gbc(features, labels, n_components: int = 64) -> float:
    """GBC (Pandy, Agostinelli, Uijlings, Ferrari & Mensink, "Transferability Estimation
    using Bhattacharyya Class Separability", CVPR 2022, arXiv 2111.12780).

    Higher is better (closer to 0 = better separated classes); -C(C-1) <= GBC <= 0.

    Variant: the paper's diagonal-covariance GBC. Features are reduced by PCA to
    ``n_components`` (64) dimensions; each class c is modelled by a Gaussian with its mean
    and per-dimension (diagonal) variance; for each pair the Bhattacharyya coefficient
    BC = exp(-D_B) with::

        D_B = 1/8 (mu_i - mu_j)^T S^-1 (mu_i - mu_j) + 1/2 ln( det S / sqrt(det S_i det S_j) ),
        S = (S_i + S_j) / 2

    and GBC = -sum_{i} sum_{j != i} BC(c_i, c_j) (ordered pairs, as in the paper's double
    sum, i.e. twice the sum over unordered pairs).

    Numerical choices: class variances are the biased (1/n_c) estimates plus a floor of
    1e-6 times the mean PCA-component variance; a class with a single sample has no
    variance estimate and borrows the pooled within-class variance. Features whose rows
    are all identical make every class the same point: GBC = -C(C-1).

    Args:
        features: ``N x D`` features (float32 or float64; computed in float64).
        labels: length-N labels of any type (at least 2 classes).
        n_components: PCA dimension (capped at the rank of the centred features).
    """
    check_positive_int(n_components, "n_components")
    X, y, n_classes = check_features_labels(features, labels)
    if np.ptp(X, axis=0).max() == 0.0:
        return float(-n_classes * (n_classes - 1))
    Z = pca_project(X, n_components=n_components)
    n, k = Z.shape
    counts = class_counts(y, n_classes).astype(np.float64)
    sums = class_sums(Z, y, n_classes)
    means = sums / counts[:, None]
    squares = class_sums((Z - means[y]) ** 2, y, n_classes)
    variances = squares / counts[:, None]
    singletons = counts < 2
    if singletons.any():
        pooled = squares.sum(axis=0) / n
        variances[singletons] = pooled
    floor = 1e-6 * float(np.mean(np.var(Z, axis=0)))
    variances = variances + floor
    log_var = np.log(variances)
    total = 0.0
    for i in range(n_classes - 1):
        avg = 0.5 * (variances[i] + variances[i + 1:])
        diff = means[i] - means[i + 1:]
        distance = 0.125 * np.sum(diff * diff / avg, axis=1) + 0.5 * np.sum(
            np.log(avg) - 0.5 * (log_var[i] + log_var[i + 1:]), axis=1
        )
        total += float(np.sum(np.exp(-distance)))
    return require_finite(-2.0 * total, "GBC")
