"""GBC: Gaussian Bhattacharyya coefficient between classes in a PCA space."""

from __future__ import annotations

import numpy as np

from ._validation import check_positive_int, require_finite
from .statistics import statistics_of

__all__ = ["gbc"]

GAUSSIANS = ("spherical", "diagonal")


def gbc(features, labels=None, n_components: int = 64, gaussian: str = "spherical",
        variance_floor: float = 1e-4) -> float:
    """GBC (Pandy, Agostinelli, Uijlings, Ferrari & Mensink, "Transferability Estimation
    using Bhattacharyya Class Separability", CVPR 2022, arXiv 2111.12780).

    Higher is better (closer to 0 = better separated classes); -C(C-1) <= GBC <= 0.

    Follows google-research ``stable_transfer/transferability/gbc.py`` (``get_gbc_score``)
    with the released configuration: features reduced by PCA to ``n_components`` (64, or
    fewer when the features have fewer dimensions), each class c a Gaussian with its mean
    and its per-dimension variance (biased, floored at ``variance_floor`` = 1e-4 in feature
    units); for every ordered pair of distinct classes the Bhattacharyya distance::

        D_B = 1/8 sum_k (mu_i - mu_j)_k^2 / s_k + 1/2 sum_k [log s_k - 1/2 (log s_ik + log s_jk)]

    with s = (s_i + s_j) / 2, and GBC = -sum over ordered pairs of exp(-D_B).

    ``gaussian="spherical"`` (the default, as released): each class variance is the mean of
    its per-dimension variances, a single number, and the log term is that of one
    dimension (the released code sums a scalar), not multiplied by the dimension.
    ``gaussian="diagonal"``: per-dimension variances, the paper's diagonal Gaussians.
    The authors compute in float32; here float64 (values agree to about 1e-4).

    Args:
        features: ``N x D`` features, or a :class:`~.statistics.FeatureStatistics`.
        labels: length-N labels of any type (at least 2 classes).
        n_components: PCA dimension (capped at the rank of the centred features).
        gaussian: ``"spherical"`` or ``"diagonal"``.
    """
    check_positive_int(n_components, "n_components")
    if gaussian not in GAUSSIANS:
        raise ValueError(f"gaussian must be one of {GAUSSIANS}, got {gaussian!r}")
    stats = statistics_of(features, labels)
    stats.require_classes(2)
    n_classes = stats.n_classes
    if stats.is_constant:
        return float(-n_classes * (n_classes - 1))
    scale = stats.scale
    Z = stats.pca_scores(n_components)
    counts = stats.counts.astype(np.float64)
    onehot = np.zeros((n_classes, stats.n))
    onehot[stats.y, np.arange(stats.n)] = 1.0
    means = (onehot @ Z) / counts[:, None]
    variances = (onehot @ (Z - means[stats.y]) ** 2) / counts[:, None]
    # Back to feature units (scale is an exact power of two) before the absolute floor.
    means = means * scale
    variances = np.maximum(variances * scale ** 2, variance_floor)
    if gaussian == "spherical":
        variances = variances.mean(axis=1, keepdims=True)
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
