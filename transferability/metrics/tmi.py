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

__all__ = ["tmi", "class_kth_distances", "tmi_from_distances", "tmi_floor_diagnostics",
           "tmi_standardized", "tmi_relative_floor", "tmi_per_dimension", "FLOOR_DECIDES_SHARE"]

# Above this share of floored k-th neighbour distances the floor, not the features' spread,
# makes most of TMI: each floored distance adds (d / n_c) log 2, a constant times d.
FLOOR_DECIDES_SHARE = 0.5

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
    return tmi_from_distances(stats, class_kth_distances(stats, k), k, min_dist)


def class_kth_distances(stats, k: int = 3) -> dict[int, np.ndarray]:
    """{class index: Chebyshev distance of each member to its k-th nearest other member},
    for the classes with more than k members; computed once per statistics and k (TMI, its
    variants and its diagnostics share it)."""
    def compute():
        out = {}
        for c in range(stats.n_classes):
            members = stats.members(c)
            if members.size > k:
                rows = np.asarray(stats.features[members], dtype=np.float64)  # exact for f32
                out[c] = stats.backend.kth_chebyshev(rows, k)
        return out
    return stats._once(("class_kth_chebyshev", k), compute)


def tmi_from_distances(stats, distances: dict[int, np.ndarray], k: int, min_dist: float,
                       scale: float = 1.0) -> float:
    """TMI from per-class k-th neighbour distances, each divided by ``scale`` (features
    divided by ``scale``) and floored at ``min_dist``; the edge cases of :func:`tmi`."""
    n_total, d = stats.n, stats.d
    weighted_sum = 0.0
    kept = 0
    for c in range(stats.n_classes):
        n_c = int(stats.counts[c])
        if n_c <= 1:
            kept += 1  # H_c = 0, still counted
            continue
        if n_c <= k:
            continue  # no k-th neighbour: infinite estimate, left out
        eps = np.maximum(distances[c] / scale, min_dist)
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


def _all_distances(stats, k: int) -> np.ndarray:
    distances = class_kth_distances(stats, k)
    if not distances:
        raise ValueError(f"no class has more than k={k} samples: no k-th neighbour distances")
    return np.concatenate(list(distances.values()))


def tmi_floor_diagnostics(features, labels=None, k: int = 3, min_dist: float = 1.0) -> dict:
    """How much of TMI its floor decides: ``floored_share``, the share of k-th neighbour
    distances below ``min_dist`` (raised to it, each adding (d / n_c) log 2 whatever the
    features), ``median_distance``, the median k-th neighbour distance, and the floor."""
    stats = statistics_of(features, labels)
    eps = _all_distances(stats, check_positive_int(k, "k"))
    return {"floored_share": float(np.mean(eps < min_dist)),
            "median_distance": float(np.median(eps)), "floor": float(min_dist), "k": k}


def feature_rms(stats) -> float:
    """Root mean square of the centred features over every coordinate: their typical
    spread, sqrt(tr(cov) / d) (0 for constant features)."""
    X = np.asarray(stats.features, dtype=np.float64)
    return float(np.sqrt(np.mean((X - stats.mean) ** 2)))


def tmi_standardized(features, labels=None, k: int = 3, min_dist: float = 1.0) -> float:
    """TMI (Xu & Kang, 2023) of the features divided by their RMS spread (:func:`feature_rms`): the published
    estimator and floor on features of unit typical spread, so the floor means the same
    for every checkpoint whatever its feature scale. Higher is better."""
    stats = statistics_of(features, labels)
    rms = feature_rms(stats)
    if rms == 0.0:
        raise ValueError("zero variance: the features are constant, no spread to standardise by")
    return tmi_from_distances(stats, class_kth_distances(stats, k), k, min_dist, scale=rms)


def tmi_relative_floor(features, labels=None, k: int = 3, relative_floor: float = 0.01) -> float:
    """TMI (Xu & Kang, 2023) with its floor relative to the distance scale: ``relative_floor`` times the
    median k-th neighbour distance instead of 1, so it catches duplicates only, not the
    bulk of small distances. Higher is better."""
    stats = statistics_of(features, labels)
    k = check_positive_int(k, "k")
    median = float(np.median(_all_distances(stats, k)))
    if median == 0.0:
        raise ValueError("zero variance within the classes: most k-th neighbour distances are 0 "
                         "(duplicate samples), so there is no distance scale")
    return tmi_from_distances(stats, class_kth_distances(stats, k), k, relative_floor * median)


def tmi_per_dimension(features, labels=None, k: int = 3, min_dist: float = 1.0) -> float:
    """:func:`tmi_standardized` (Xu & Kang, 2023) divided by the feature width d: the conditional entropy per
    dimension, so a wider checkpoint does not score higher for its width alone. Higher is
    better."""
    stats = statistics_of(features, labels)
    return tmi_standardized(stats, None, k, min_dist) / stats.d
