"""LogME: the log marginal evidence of a Bayesian linear model on the features.

You, Liu, Wang & Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021, arXiv 2102.11005.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_positive_int, require_finite
from .statistics import statistics_of

__all__ = ["logme"]

_TINY = 1e-300
_CLIP = 1e100


def logme(features, labels=None, max_iter: int = 100, tol: float = 1e-6) -> float:
    """LogME (You et al., ICML 2021, arXiv 2102.11005). Higher is better.

    Follows thuml/LogME, ``LogME._fit_fixed_point`` (classification): for each class k the
    one-hot column y_k is regressed on the raw, uncentred features F (N x D) with prior
    w ~ N(0, alpha^-1 I) and noise N(0, beta^-1); alpha and beta maximise the evidence by
    MacKay's fixed-point updates (gamma = sum_i beta s_i / (alpha + beta s_i),
    alpha = gamma / m^T m, beta = (N - gamma) / ||F m - y||^2, from alpha = beta = 1) on the
    spectrum of F, computed once for all classes. The score is the mean over classes of the
    maximised log evidence divided by N::

        L = N/2 log beta + D/2 log alpha - N/2 log 2 pi - beta/2 ||F m - y||^2
            - alpha/2 m^T m - 1/2 log |alpha I + beta F^T F|

    Two deliberate departures, both small:

    - the iteration runs until alpha and beta change by less than ``tol`` (relative), at
      most ``max_iter`` rounds; the authors' loop stops at a 1e-3 relative change of
      alpha / beta or after 11 rounds, so values agree to about 1e-3 (docs/science.md §7);
    - when D > N (rank k < D), ``log |alpha I + beta F^T F|`` keeps its D - k null
      directions, each contributing log alpha, as the evidence formula (and the authors'
      own ``_fit_icml``) requires. ``_fit_fixed_point`` drops that -(D - k)/2 log alpha
      term, which makes its value grow with D for a fixed data set.

    Args:
        features: ``N x D`` raw features (float32 or float64; computed in float64), or a
            :class:`~.statistics.FeatureStatistics` (labels ignored).
        labels: length-N labels of any type (at least 2 classes).
    """
    max_iter = check_positive_int(max_iter, "max_iter")
    stats = statistics_of(features, labels)
    stats.require_classes(2)
    n, n_classes = stats.n, stats.n_classes
    counts = stats.counts.astype(np.float64)  # ||y_k||^2 of one-hot columns
    # The maximised evidence is invariant to F -> s F (alpha absorbs s^2): the spectrum is
    # of F divided by an exact power of two, so that extreme scales cannot overflow.
    sigma, z = stats.uncentred_spectrum  # (r,), (r, C)
    z2 = z * z
    # ||y||^2 - ||U^T y||^2: the part of y outside the column space of F.
    outside = np.maximum(counts - z2.sum(axis=0), 0.0)
    s = sigma[:, None]
    alpha = np.ones(n_classes)
    beta = np.ones(n_classes)
    for _ in range(max_iter):
        denom = alpha + beta * s  # (r, C)
        gamma = np.sum(beta * s / denom, axis=0)
        m2 = np.sum(beta * beta * s * z2 / (denom * denom), axis=0)
        res2 = np.sum(alpha * alpha * z2 / (denom * denom), axis=0) + outside
        new_alpha = np.clip(gamma / np.maximum(m2, _TINY), 1.0 / _CLIP, _CLIP)
        new_beta = np.clip((n - gamma) / np.maximum(res2, _TINY), 1.0 / _CLIP, _CLIP)
        done = (np.abs(new_alpha - alpha) <= tol * alpha).all() and (
            np.abs(new_beta - beta) <= tol * beta
        ).all()
        alpha, beta = new_alpha, new_beta
        if done:
            break
    denom = alpha + beta * s
    m2 = np.sum(beta * beta * s * z2 / (denom * denom), axis=0)
    res2 = np.sum(alpha * alpha * z2 / (denom * denom), axis=0) + outside
    # D/2 log alpha - 1/2 log|A| = 1/2 sum_i [log alpha - log(alpha + beta s_i)]: the D - r
    # null directions of F contribute log(alpha) to both terms and cancel.
    evidence = (
        0.5 * n * np.log(beta)
        + 0.5 * np.sum(np.log(alpha) - np.log(denom), axis=0)
        - 0.5 * n * np.log(2.0 * np.pi)
        - 0.5 * beta * res2
        - 0.5 * alpha * m2
    )
    return require_finite(np.mean(evidence) / n, "LogME")
