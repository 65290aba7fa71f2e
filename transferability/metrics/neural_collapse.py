"""NCTI: how far the features are from neural collapse on the target classes."""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.special import log_softmax

from ._validation import check_features_labels, check_positive_int, class_counts, class_sums
from ._validation import pca_project, require_finite

__all__ = ["ncti", "ncti_components"]


def _nuclear_norm(A: np.ndarray) -> float:
    """Sum of singular values, via the eigenvalues of the smaller Gram matrix."""
    gram = A.T @ A if A.shape[1] <= A.shape[0] else A @ A.T
    return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None))))


def ncti_components(features, labels, n_components: int = 64) -> dict[str, float]:
    """The three single-model NCTI components; see :func:`ncti` for the definitions."""
    check_positive_int(n_components, "n_components")
    X, y, n_classes = check_features_labels(features, labels)
    Z = pca_project(X, n_components=n_components)  # ValueError on zero-variance features
    n, k = Z.shape
    counts = class_counts(y, n_classes).astype(np.float64)
    means = class_sums(Z, y, n_classes) / counts[:, None]
    within = Z - means[y]
    s_w = within.T @ within / n
    total_var = float(np.sum(Z * Z)) / n
    ridge = 1e-6 * max(total_var / k, np.finfo(np.float64).tiny)
    chol = scipy.linalg.cholesky(0.5 * (s_w + s_w.T) + ridge * np.eye(k), lower=True)
    # Whitened coordinates: the shared-covariance (LDA) log posterior is
    # -1/2 ||L^-1 (z - mu_c)||^2 + log prior_c (up to a constant per sample).
    Zw = scipy.linalg.solve_triangular(chol, Z.T, lower=True).T
    Mw = scipy.linalg.solve_triangular(chol, means.T, lower=True).T
    logits = Zw @ Mw.T - 0.5 * np.sum(Mw * Mw, axis=1) + np.log(counts / n)
    posterior = np.exp(log_softmax(logits, axis=1))
    ncc = float(np.mean(posterior[np.arange(n), y]))
    order = np.argsort(y, kind="stable")
    bounds = np.searchsorted(y[order], np.arange(n_classes + 1))
    nuclear = sum(_nuclear_norm(posterior[order[bounds[c]:bounds[c + 1]]])
                  for c in range(n_classes))
    bound = float(np.sum(np.sqrt(counts * np.minimum(counts, n_classes))))
    vc = -nuclear / bound
    frobenius = float(np.linalg.norm(Z))
    seli = _nuclear_norm(Z) / (np.sqrt(min(n, k)) * frobenius)
    return {"vc": vc, "seli": seli, "ncc": ncc}


def ncti(features, labels, n_components: int = 64) -> float:
    """NCTI (Wang, Luo, Zheng, Huang & Baktashmotlagh, "How Far Pre-trained Models Are from
    Neural Collapse on the Target Dataset Informs their Transferability", ICCV 2023).
    Higher is better; for this single-model version -1 < NCTI <= 2.

    The paper scores a model by how close its target features are to neural collapse,
    with three components summed: within-class variability collapse S_vc, closeness to
    the SELI geometry S_seli, and the nearest-centre classifier S_ncc. **The paper
    normalises each component across the set of candidate models before summing; a
    function that sees one model cannot do that**, so here each component is instead
    divided by a model-independent bound to make it scale-free, and NCTI is their plain
    sum. Rankings can therefore differ from the paper's. Written from the paper's
    description, not the authors' code. With Z the features reduced by PCA to
    ``n_components`` (64) dimensions and p(c | z) the posterior of a Gaussian classifier
    with class means, a shared (pooled within-class, slightly ridged) covariance and the
    empirical priors (the paper's Bayes-rule nearest-centre classifier):

    - S_ncc = mean over samples of p(y_i | z_i), in [0, 1];
    - S_vc = -sum_c ||P_c||_* / sum_c sqrt(n_c min(n_c, C)), in [-1, 0): P_c holds the
      posteriors of class c's samples (the paper's class-wise "logits"); a smaller nuclear
      norm means less within-class variability. The denominator bounds the numerator;
    - S_seli = ||Z||_* / (sqrt(min(N, d)) ||Z||_F), in (0, 1]: the paper's nuclear norm of
      the feature matrix (higher rank = closer to SELI), divided by its bound at a fixed
      Frobenius norm, so it measures how evenly the variance spreads over the dimensions.

    :func:`ncti_components` returns the three values separately, e.g. to normalise them
    across candidates as in the paper. Raises ValueError on zero-variance features.

    Args:
        features: ``N x D`` features (float32 or float64; computed in float64).
        labels: length-N labels of any type (at least 2 classes).
    """
    parts = ncti_components(features, labels, n_components=n_components)
    return require_finite(parts["vc"] + parts["seli"] + parts["ncc"], "NCTI")
