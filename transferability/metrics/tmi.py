"""TMI: transferability as the conditional entropy of features given the class.

Xu & Kang, "Fast and Accurate Transferability Measurement by Evaluating Intra-class Feature
Variance", ICCV 2023, arXiv 2308.05986. Implemented from docs/science.md section 2; equal to the authors' reference code
(snudatalab/TMI) on the values of section 7.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

from ._validation import check_positive_int
from .statistics import statistics_of

__all__ = ["tmi"]

def tmi(features, labels=None, k: int = 3, min_dist: float = 1.0) -> float:
    """TMI (Xu & Kang, ICCV 2023, arXiv 2308.05986): conditional entropy H(Z | Y).

    Higher is better (more intra-class feature variance = more transferable, per the paper).

    Follows docs/science.md section 2 exactly, i.e. the authors' reference variant: per class
    c, the Kozachenko-Leonenko k-NN entropy estimate with the Chebyshev (L-inf) distance
    ``eps_i`` from z_i to its k-th nearest other sample of the same class, floored at
    ``min_dist``::

        H_c = digamma(n_c) - digamma(k) + (d / n_c) * sum_i log(2 * eps_i)

    Classes with 1 sample contribute H_c = 0 but count; classes with 2..k samples have no
    k-th neighbour and are left out; the result is the *mean* over the kept classes of
    ``(n_c / N) * H_c`` (natural log, float64). Labels are mapped to 0..C-1 first.

    Args:
        features: ``N x d`` array (float32 or float64; distances are exact in float64).
        labels: length-N labels of any type.
        k: neighbour order (int >= 1), default 3.
        min_dist: floor on ``eps_i`` (> 0, or 0 when no two samples coincide), default 1.0.

    A single class is allowed (the reference values include one). Raises ValueError on
    malformed input, when every class has 2..k samples (nothing to average), or when
    ``min_dist == 0`` meets duplicate samples (log 0).

    Cost: about ``d * sum_c n_c**2`` operations, on the statistics' backend: with NumPy a
    KD-tree for d <= 16, otherwise blockwise ``scipy.spatial.distance.cdist``; with torch
    blockwise ``torch.cdist(p=inf)`` on the device. Float64 throughout (distances are exact
    differences and maxima, so both backends agree to the last bits).

    ``features`` may also be a :class:`~.statistics.FeatureStatistics` (labels ignored).
    """
    k = check_positive_int(k, "k")
    min_dist = float(min_dist)
    if not np.isfinite(min_dist) or min_dist < 0:
        raise ValueError(f"min_dist must be a finite number >= 0, got {min_dist!r}")
    stats = statistics_of(features, labels)
    X, n_total, d = stats.features, stats.n, stats.d
    weighted_sum = 0.0
    kept = 0
    for c in range(stats.n_classes):
        members = stats.members(c)
        n_c = members.size
        if n_c <= 1:
            kept += 1  # H_c = 0, still counted
            continue
        if n_c <= k:
            continue  # no k-th neighbour: infinite estimate, left out
        class_rows = np.asarray(X[members], dtype=np.float64)  # exact for float32 input
        eps = np.maximum(stats.backend.kth_chebyshev(class_rows, k), min_dist)
        if (eps <= 0).any():
            raise ValueError(
                "duplicate samples within a class give a zero k-NN distance; "
                "use min_dist > 0 to floor it"
            )
        h_c = digamma(n_c) - digamma(k) + (d / n_c) * float(np.sum(np.log(2.0 * eps)))
        weighted_sum += (n_c / n_total) * h_c
        kept += 1
    if kept == 0:
        raise ValueError(
            f"every class has between 2 and k={k} samples, so no class has a k-th "
            "neighbour and TMI is undefined"
        )
    return float(weighted_sum / kept)
