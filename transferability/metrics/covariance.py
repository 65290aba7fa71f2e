"""H-score and its shrinkage version: tr(cov(f)^-1 cov(E[f | y]))."""

from __future__ import annotations

import numpy as np
from sklearn.covariance import LedoitWolf

from ._validation import centre_columns, check_features_labels, class_counts, class_sums
from ._validation import pow2_scale, require_finite, sym_pinv

__all__ = ["hscore", "shrinkage_hscore"]


def _centred_and_class_cov(X: np.ndarray, y: np.ndarray, n_classes: int):
    """Centred features and cov(E[f | y]) = sum_c (n_c / N) mu_c mu_c^T (centred means)."""
    n = X.shape[0]
    Xc = centre_columns(X)
    Xc /= pow2_scale(Xc)  # both H-scores are scale-free; avoid overflow at extreme scales
    counts = class_counts(y, n_classes).astype(np.float64)
    sums = class_sums(Xc, y, n_classes)
    means = sums / counts[:, None]
    weighted = means * np.sqrt(counts / n)[:, None]
    return Xc, weighted.T @ weighted


def hscore(features, labels) -> float:
    """H-score (Bao, Li, Huang, Zhang, Zheng, Zamir & Guibas, ICIP 2019). Higher is better.

    Variant: the paper's definition, H(f) = tr(cov(f)^+ cov(E[f | y])) on the raw features,
    with both covariances normalised by N and the Moore-Penrose pseudo-inverse (eigenvalues
    below D * machine-epsilon of the largest are treated as zero). In exact arithmetic
    0 <= H <= C - 1; with ill-conditioned features the pseudo-inverse is unstable and the
    value can exceed that bound (use :func:`shrinkage_hscore`). Features that are constant
    (zero variance) carry no information and score 0.

    Args:
        features: ``N x D`` features (float32 or float64; computed in float64).
        labels: length-N labels of any type (at least 2 classes).
    """
    X, y, n_classes = check_features_labels(features, labels)
    n = X.shape[0]
    Xc, class_cov = _centred_and_class_cov(X, y, n_classes)
    cov = Xc.T @ Xc / n
    return require_finite(np.sum(sym_pinv(cov) * class_cov), "H-score")


def shrinkage_hscore(features, labels) -> float:
    """Shrinkage H-score (Ibrahim, Ponomareva & Mazumder, "Newer is not always better:
    Rethinking transferability metrics, their peculiarities, stability and performance",
    ECML-PKDD 2022, arXiv 2110.06893). Higher is better; 0 <= value <= C - 1.

    Variant: the paper's regularised H-score. cov(f) is replaced by the Ledoit-Wolf
    estimate (1 - a) cov(f) + a (tr cov(f) / D) I (scikit-learn ``LedoitWolf``, shrinkage
    a chosen analytically) and the class-mean covariance is shrunk by the same (1 - a)::

        H_a = tr( ((1 - a) cov(f) + a sigma I)^-1 (1 - a) cov(E[f | y]) )

    Features that are constant (zero variance) carry no information and score 0.

    Args:
        features: ``N x D`` features (float32 or float64; computed in float64).
        labels: length-N labels of any type (at least 2 classes).
    """
    X, y, n_classes = check_features_labels(features, labels)
    Xc, class_cov = _centred_and_class_cov(X, y, n_classes)
    if not np.any(Xc):
        return 0.0
    lw = LedoitWolf(store_precision=False, assume_centered=True).fit(Xc)
    shrinkage = float(lw.shrinkage_)
    value = np.sum(sym_pinv(lw.covariance_) * ((1.0 - shrinkage) * class_cov))
    return require_finite(value, "shrinkage H-score")
