"""PARC: rank correlation of pairwise feature and label dissimilarities."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from ._validation import check_positive_int, require_finite
from .sampling import stratified_subsample
from .statistics import statistics_of

__all__ = ["parc"]


def parc(features, labels=None, n_components: int = 32, max_samples: int = 2000,
         random_state: int = 0) -> float:
    """PARC (Bolya, Mittapalli & Hoffman, "Scalable Diverse Model Selection for Accessible
    Transfer Learning", NeurIPS 2021, arXiv 2111.06977). Higher is better; in [-100, 100].

    Follows dbolya/parc ``methods.py`` ``PARC`` (the configuration whose README reproduces
    the paper's table): features reduced by PCA to ``n_components`` (32) dimensions, each
    reduced dimension standardised (scikit-learn ``StandardScaler``), the feature
    dissimilarity of samples i and j is 1 - Pearson correlation of their standardised
    vectors, the label dissimilarity 1 - [y_i == y_j], and PARC = 100 * Spearman
    correlation of the two upper triangles (i < j). Two stated differences from the
    released code: the PCA is exact (theirs is scikit-learn's randomised PCA with
    ``iterated_power=1``, a noisy approximation), and the label dissimilarity is exact
    (theirs, ``1 - corrcoef(onehot)``, leaves 1e-16 noise that breaks the ties in the
    Spearman ranks and makes the value depend on rounding); see docs/science.md §7.

    The pairwise matrices are N x N, so at most ``max_samples`` samples (2000, about 2 M
    pairs) are used, a class-stratified subset drawn with ``random_state`` (the PCA is
    fitted on all samples). A sample whose standardised vector is constant has no defined
    correlation; it is treated as uncorrelated (dissimilarity 1) with every other sample.

    Args:
        features: ``N x D`` features, or a :class:`~.statistics.FeatureStatistics`.
        labels: length-N labels of any type (at least 2 classes).
    """
    check_positive_int(n_components, "n_components")
    max_samples = check_positive_int(max_samples, "max_samples", minimum=3)
    stats = statistics_of(features, labels)
    stats.require_classes(2)
    if stats.n < 3:
        raise ValueError(f"PARC needs at least 3 samples, got {stats.n}")
    if stats.is_constant:
        raise ValueError("features have zero variance (all rows identical): PCA is undefined")
    Z, y = stats.pca_scores(n_components), stats.y
    if Z.shape[1] < 2:
        raise ValueError(
            "PARC needs features of rank >= 2: the correlation of two reduced feature "
            "vectors is undefined in one dimension"
        )
    if stats.n > max_samples:
        keep = stratified_subsample(y, max_samples, random_state)
        Z, y = Z[keep], y[keep]
    spread = Z.std(axis=0)
    Z = (Z - Z.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    Zc = Z - Z.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(Zc, axis=1)
    unit = np.divide(Zc, norms[:, None], out=np.zeros_like(Zc),
                     where=norms[:, None] > 1e-12 * norms.max())
    feature_dist = 1.0 - unit @ unit.T
    upper = np.triu_indices(Z.shape[0], k=1)
    label_dist = (y[upper[0]] != y[upper[1]]).astype(np.float64)
    if np.ptp(label_dist) == 0.0:
        raise ValueError(
            "PARC is undefined when all label dissimilarities are equal "
            "(every sampled image in its own class)"
        )
    rho = spearmanr(feature_dist[upper], label_dist).statistic
    return require_finite(100.0 * rho, "PARC")
