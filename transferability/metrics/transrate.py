"""TransRate: coding rate of the features minus their class-conditional coding rate."""

from __future__ import annotations

import numpy as np

from ._validation import require_finite
from .statistics import statistics_of

__all__ = ["transrate", "coding_rate"]

CLASS_WEIGHTS = ("uniform", "frequency")


def coding_rate(eigenvalues: np.ndarray, n: int, eps: float, scale: float = 1.0) -> float:
    """R(Z, eps) = 1/2 log det(I + s^2 Z^T Z / (n eps)) from the eigenvalues of ``Z^T Z``
    (or of ``Z Z^T``: same non-zero spectrum), Z being ``n`` rows divided by ``scale`` (s).
    Combined in log space, so that no intermediate overflows. Float64."""
    eigenvalues = eigenvalues[eigenvalues > 0.0]
    log_factor = 2.0 * np.log(scale) - np.log(n) - np.log(eps)
    return 0.5 * float(np.sum(np.logaddexp(0.0, np.log(eigenvalues) + log_factor)))


def transrate(features, labels=None, eps: float = 1e-4, class_weights: str = "uniform",
              normalise_rows: bool = False) -> float:
    """TransRate (Huang, Huang, Rong, Yang & Wei, "Frustratingly Easy Transferability
    Estimation", ICML 2022, arXiv 2106.09362). Higher is better.

    Default: the paper's code listing (as tllib's ``transrate``), on the features centred
    by their global mean::

        TransRate = R(Z, eps) - 1/C sum_c R(Z_c, eps),
        R(Z, eps) = 1/2 log det(I_d + Z^T Z / (n eps))

    where Z_c holds the (globally centred) rows of class c and n is the number of rows of
    the matrix at hand; eps = 1e-4. The value depends on the feature scale through eps.

    Options towards the authors' experiment pipeline: ``normalise_rows=True`` divides each
    row by its L2 norm first, ``class_weights="frequency"`` weighs R(Z_c) by n_c / N
    instead of 1 / C. (That pipeline also normalises eigenvalues and ranks; those steps are
    not reproduced here.)

    Args:
        features: ``N x D`` features (float32 or float64; computed in float64), or a
            :class:`~.statistics.FeatureStatistics` (labels ignored).
        labels: length-N labels of any type (at least 2 classes).
        eps: distortion (> 0).
    """
    eps = float(eps)
    if not eps > 0 or not np.isfinite(eps):
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    if class_weights not in CLASS_WEIGHTS:
        raise ValueError(f"class_weights must be one of {CLASS_WEIGHTS}, got {class_weights!r}")
    stats = statistics_of(features, labels)
    stats.require_classes(2)
    if normalise_rows:
        X = np.asarray(stats.features, dtype=np.float64)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
        stats = statistics_of(X, stats.y, backend=stats.backend)
    backend, scale = stats.backend, stats.scale
    total = coding_rate(stats.spectrum[0], stats.n, eps, scale)
    per_class = []
    for c in range(stats.n_classes):
        rows = backend.rows(stats.centred, stats.members(c))
        n_c, d = stats.counts[c], stats.d
        gram = backend.gram(rows) if d <= n_c else backend.gram(rows.T)
        per_class.append(coding_rate(np.linalg.eigvalsh(gram), n_c, eps, scale))
    if class_weights == "uniform":
        conditional = float(np.mean(per_class))
    else:
        conditional = float(np.dot(stats.counts / stats.n, per_class))
    return require_finite(total - conditional, "TransRate")
