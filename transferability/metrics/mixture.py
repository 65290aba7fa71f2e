"""N-LEEP: LEEP through a Gaussian mixture fitted on the features instead of a source head.

Li, Jia, Sang, Zhu, Green, Wang & Gong, "Ranking Neural Checkpoints", CVPR 2021,
arXiv 2011.11200.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from ._validation import check_features_labels, check_positive_int, pca_project, require_finite
from .source_head import leep_from_probs

__all__ = ["nleep"]


def _n_distinct_rows(Z: np.ndarray) -> int:
    rows = np.ascontiguousarray(Z)
    return int(np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))).size)


def nleep(
    features,
    labels,
    variance: float = 0.8,
    components_per_class: int = 5,
    covariance_type: str = "diag",
    random_state: int = 0,
    max_iter: int = 100,
) -> float:
    """N-LEEP (Li et al., CVPR 2021, arXiv 2011.11200). Higher is better; N-LEEP <= 0.

    Variant: the paper's recipe. The features are reduced by PCA to the fewest components
    that keep ``variance`` (80 %) of the variance, a Gaussian mixture with
    ``components_per_class * C`` components (5 C) is fitted on them, and its posterior
    component memberships play the role of the source head in LEEP (log of the expected
    empirical prediction, see :func:`leep`).

    Choices the paper leaves open, fixed here for determinism and cost: diagonal
    covariances (``covariance_type``), k-means initialisation with ``random_state=0``,
    ``reg_covar`` = 1e-6 times the mean PCA-component variance (scale-free, so the score
    does not change when the features are rescaled), and the number of components capped
    at the number of distinct PCA rows (so also at N). Features whose rows are all
    identical carry no information: one component, and N-LEEP equals the log class prior
    averaged over samples. Cost: O(N * 5C * d_pca) per EM iteration; the most expensive
    metric of the panel at large N and C.

    Args:
        features: ``N x D`` features (float32 or float64; computed in float64).
        labels: length-N labels of any type (at least 2 classes).
    """
    check_positive_int(components_per_class, "components_per_class")
    X, y, n_classes = check_features_labels(features, labels)
    n = X.shape[0]
    if np.ptp(X, axis=0).max() == 0.0:
        membership = np.ones((n, 1))
    else:
        Z = pca_project(X, variance=variance)
        n_components = min(components_per_class * n_classes, _n_distinct_rows(Z))
        reg = 1e-6 * max(float(np.mean(np.var(Z, axis=0))), np.finfo(np.float64).tiny)
        gmm = GaussianMixture(
            n_components=n_components,
            covariance_type=covariance_type,
            reg_covar=reg,
            max_iter=max_iter,
            random_state=random_state,
        )
        with warnings.catch_warnings():
            # Not converging within max_iter still gives a usable mixture for ranking.
            warnings.simplefilter("ignore", ConvergenceWarning)
            gmm.fit(Z)
        membership = gmm.predict_proba(Z)
    return require_finite(leep_from_probs(membership, y, n_classes), "N-LEEP")
