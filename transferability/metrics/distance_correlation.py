"""PARC: rank correlation of pairwise feature and label dissimilarities."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from ._validation import check_features_labels, check_positive_int, pca_project, require_finite

__all__ = ["parc"]


def parc(
    features,
    labels,
    n_components: int = 32,
    max_samples: int = 2000,
    random_state: int = 0,
) -> float:
    """PARC (Bolya, Mittapalli & Hoffman, "Scalable Diverse Model Selection for Accessible
    Transfer Learning", NeurIPS 2021, arXiv 2111.06977). Higher is better; in [-100, 100].

    Variant: the paper's PARC, reported *times 100* as in the paper. Features are reduced by
    PCA to ``n_components`` (32) dimensions; the feature dissimilarity of samples i and j
    is 1 - Pearson correlation of their reduced feature vectors, the label dissimilarity is
    1 - Pearson correlation of their one-hot labels (0 for the same class, 1 + 1/(C-1)
    otherwise); PARC = 100 * Spearman correlation of the two upper triangles (i < j).

    The pairwise matrices are N x N, so at most ``max_samples`` samples (2000, about 2 M
    pairs) are used: a uniform random subset drawn with ``random_state`` (the paper also
    works on a probe subset). A sample whose reduced vector is constant has no defined
    correlation; it is treated as uncorrelated (dissimilarity 1) with every other sample.
    Raises ValueError when the features have zero variance or rank < 2, or when the label
    dissimilarities are all equal (e.g. every sampled image in its own class).

    Args:
        features: ``N x D`` features (float32 or float64; computed in float64).
        labels: length-N labels of any type (at least 2 classes).
    """
    check_positive_int(n_components, "n_components")
    max_samples = check_positive_int(max_samples, "max_samples", minimum=3)
    X, y, _ = check_features_labels(features, labels)
    n = X.shape[0]
    if n > max_samples:
        keep = np.sort(np.random.default_rng(random_state).choice(n, max_samples, replace=False))
        X, y = X[keep], y[keep]
        n = max_samples
    if n < 3:
        raise ValueError(f"PARC needs at least 3 samples, got {n}")
    Z = pca_project(X, n_components=n_components)
    if Z.shape[1] < 2:
        raise ValueError(
            "PARC needs features of rank >= 2: the correlation of two reduced feature "
            "vectors is undefined in one dimension"
        )
    Zc = Z - Z.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(Zc, axis=1)
    scale = norms.max()
    unit = np.divide(Zc, norms[:, None], out=np.zeros_like(Zc),
                     where=norms[:, None] > 1e-12 * scale)
    feature_dist = 1.0 - unit @ unit.T
    upper = np.triu_indices(n, k=1)
    label_dist = (y[upper[0]] != y[upper[1]]).astype(np.float64)
    if np.ptp(label_dist) == 0.0:
        raise ValueError(
            "PARC is undefined when all label dissimilarities are equal "
            "(every sampled image in its own class)"
        )
    # The label dissimilarity takes two values (0 and 1 + 1/(C-1)); a 0/1 indicator has
    # the same ranks, which is all Spearman's correlation sees.
    rho = spearmanr(feature_dist[upper], label_dist).statistic
    return require_finite(100.0 * rho, "PARC")
