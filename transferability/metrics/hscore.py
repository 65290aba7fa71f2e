"""H-score and its shrinkage version: tr(cov(f)^-1 cov(E[f | y]))."""

from __future__ import annotations

import numpy as np

from ._validation import require_finite
from .statistics import FeatureStatistics, statistics_of

__all__ = ["hscore", "shrinkage_hscore", "ledoit_wolf_shrinkage"]


def _class_mean_coordinates(stats: FeatureStatistics) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of the scatter ``Xc^T Xc`` and the centred class means in its eigenbasis,
    each weighted by sqrt(n_c / N): then cov(E[f | y]) = W^T W in that basis."""
    values, axes = stats.spectrum
    weighted = (stats.class_means @ axes) * np.sqrt(stats.counts / stats.n)[:, None]
    return values, weighted


def hscore(features, labels=None) -> float:
    """H-score (Bao, Li, Huang, Zhang, Zheng, Zamir & Guibas, ICIP 2019). Higher is better.

    Follows YaojieBao's ``getDiffNN``: tr(pinv(cov(f)) cov(g)) with g_i = E[f | y_i], the
    class mean of sample i's class (both covariances over N - 1, which cancels). The
    pseudo-inverse drops eigenvalues at or below ``max(N, D) * machine epsilon`` of the
    largest (the usual rank tolerance; the authors pass ``rcond=1e-15``, which keeps
    rounding noise as signal when the features are rank-deficient and can blow the value
    up). In exact arithmetic 0 <= H <= C - 1; with ill-conditioned features the value can
    exceed that bound (see :func:`shrinkage_hscore`). Features that are constant (zero
    variance) carry no information and score 0.

    Args:
        features: ``N x D`` features (float32 or float64; computed in float64), or a
            :class:`~.statistics.FeatureStatistics` (labels ignored).
        labels: length-N labels of any type (at least 2 classes).
    """
    stats = statistics_of(features, labels)
    stats.require_classes(2)
    if stats.is_constant:
        return 0.0
    values, weighted = _class_mean_coordinates(stats)
    # pinv(cov) = N * V diag(1 / values) V^T in the units of the scatter.
    return require_finite(stats.n * np.sum(weighted ** 2 / values), "H-score")


def ledoit_wolf_shrinkage(stats: FeatureStatistics) -> float:
    """The Ledoit-Wolf shrinkage of the centred features, as scikit-learn's
    ``ledoit_wolf_shrinkage``, from statistics already computed: the squared Frobenius
    norm of the scatter is the sum of its squared eigenvalues, and the sum of the entries of
    ``(X^2)^T X^2`` is the sum of the rows' fourth powers of norms (no second Gram)."""
    n, d = stats.n, stats.d
    values, _ = stats.spectrum
    Xc = stats.backend.take(stats.centred)
    trace = float(values.sum()) / n  # tr(emp_cov)
    mu = trace / d
    delta_ = float(np.sum(values ** 2)) / n ** 2  # ||emp_cov||_F^2
    beta_ = float(np.sum(np.einsum("ij,ij->i", Xc, Xc) ** 2))
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace + d * mu ** 2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else beta / delta


def shrinkage_hscore(features, labels=None) -> float:
    """Shrinkage H-score (Ibrahim, Ponomareva & Mazumder, "Newer is not always better:
    Rethinking transferability metrics, their peculiarities, stability and performance",
    ECML-PKDD 2022, arXiv 2110.06893). Higher is better; 0 <= value <= C - 1.

    Follows tllib (thuml/Transfer-Learning-Library) ``regularized_h_score``: cov(f) is the
    Ledoit-Wolf estimate (1 - a) cov(f) + a (tr cov(f) / D) I (shrinkage a as scikit-learn's
    ``LedoitWolf``), the class-mean covariance is shrunk by the same (1 - a), both over N::

        H_a = tr( ((1 - a) cov(f) + a mu I)^-1 (1 - a) cov(E[f | y]) )

    The Ledoit-Wolf matrix has the eigenvectors of cov(f), so this is computed on the
    shared spectrum. Features that are constant (zero variance) carry no information and
    score 0.

    Args:
        features: ``N x D`` features (float32 or float64; computed in float64), or a
            :class:`~.statistics.FeatureStatistics` (labels ignored).
        labels: length-N labels of any type (at least 2 classes).
    """
    stats = statistics_of(features, labels)
    stats.require_classes(2)
    if stats.is_constant:
        return 0.0
    shrinkage = ledoit_wolf_shrinkage(stats)
    values, weighted = _class_mean_coordinates(stats)
    n = stats.n
    mu = float(values.sum()) / n / stats.d
    shrunk = (1.0 - shrinkage) * values / n + shrinkage * mu
    # Directions outside the data's span carry no class-mean component: they add nothing.
    value = (1.0 - shrinkage) * np.sum(weighted ** 2 / shrunk)
    return require_finite(value, "shrinkage H-score")
