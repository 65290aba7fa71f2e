"""k-NN mutual information I(Z; Y) between features and class (Ross, 2014).

Ross, "Mutual Information between Discrete and Continuous Data Sets", PLoS ONE 9(2), 2014:
the Kraskov-style estimator for one continuous and one discrete variable. Per sample i of
class c: r_i is the distance to its k-th nearest other sample of the same class, m_i the
number of other samples of any class within r_i (m_i >= k); then

    I = psi(N) - < psi(n_c(i)) > + psi(k) - < psi(m_i) >

It answers TMI's question, how tightly a class gathers against the rest, with neighbour
*counts* instead of log-distances times d: no floor, no feature width d as a factor, and
the same value when the features are scaled. Listed beside TMI as a scale-aware form of it
(docs/science.md, section 2).
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

from ._validation import check_positive_int
from .backends import BLOCK_ENTRIES
from .sampling import stratified_subsample
from .statistics import statistics_of

__all__ = ["knn_mutual_information", "KNN_MI_SAMPLE_LIMIT"]

# Above this many samples the estimate is made on a class-stratified subsample (N^2 pairs).
KNN_MI_SAMPLE_LIMIT = 10_000


def knn_mutual_information(features, labels=None, k: int = 3,
                           max_samples: int = KNN_MI_SAMPLE_LIMIT,
                           random_state: int = 0) -> float:
    """I(Z; Y) in nats by Ross's k-NN estimator (PLoS ONE, 2014), Euclidean distances.
    Higher is better; at most log C in expectation.

    Classes with k samples or fewer have no k-th neighbour and are left out. Above
    ``max_samples`` samples, a class-stratified subsample of that size is used.
    """
    k = check_positive_int(k, "k")
    stats = statistics_of(features, labels)
    stats.require_classes(2)
    y = stats.y
    keep = np.flatnonzero(stats.counts[y] > k)
    if np.unique(y[keep]).size < 2:
        raise ValueError(f"fewer than 2 classes have more than k={k} samples")
    if keep.size > max_samples:
        keep = keep[stratified_subsample(y[keep], max_samples, random_state)]
        sizes = np.bincount(y[keep], minlength=stats.n_classes)
        keep = keep[sizes[y[keep]] > k]  # a class the subsample left with k or fewer: out
        if np.unique(y[keep]).size < 2:
            raise ValueError(f"fewer than 2 classes keep more than k={k} samples in the "
                             f"subsample of {max_samples}")
    X = np.asarray(stats.backend.take(stats.centred), dtype=np.float64)[keep]
    y = y[keep]
    n = keep.size
    squared = np.einsum("ij,ij->i", X, X)
    radius = np.empty(n)
    within = np.empty(n)
    step = max(1, BLOCK_ENTRIES // n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = squared[start:stop, None] + squared[None, :] - 2.0 * (X[start:stop] @ X.T)
        np.maximum(block, 0.0, out=block)
        block[np.arange(stop - start), np.arange(start, stop)] = np.inf  # not its own neighbour
        same = y[start:stop, None] == y[None, :]
        r = np.partition(np.where(same, block, np.inf), k - 1, axis=1)[:, k - 1]
        radius[start:stop] = r
        within[start:stop] = np.count_nonzero(block <= r[:, None], axis=1)
    class_size = np.bincount(y)[y]
    return float(digamma(n) - np.mean(digamma(class_size)) + digamma(k)
                 - np.mean(digamma(within)))
