"""Baselines that a user must always see beside the metrics: k-NN and linear-probe accuracy."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from ..probes import probe_correctness
from ._validation import check_features_labels, check_positive_int, class_counts, pow2_scale

__all__ = ["knn_accuracy", "probe_accuracy"]


def knn_accuracy(features, labels, k: int = 5, metric: str = "euclidean") -> float:
    """Leave-one-out k-nearest-neighbour accuracy of the features. Higher is better; in [0, 1].

    Each sample is classified by a majority vote of its ``k`` (default 5) nearest *other*
    samples (exact brute-force search with scikit-learn, Euclidean distance by default);
    the sample itself is excluded by index, so exact duplicates of it still vote. Ties
    between classes go to the class whose member is nearest. Standard k-NN evaluation
    (Cover & Hart, IEEE Trans. Inf. Theory 1967), proposed as a transferability estimator
    by Sorkhei et al., "k-NN as a Simple and Effective Estimator of Transferability",
    arXiv 2503.18528.

    Args:
        features: ``N x D`` features (float32 or float64).
        labels: length-N labels of any type (at least 2 classes).
        k: number of neighbours; needs N >= k + 1, otherwise ValueError.
        metric: any scikit-learn ``NearestNeighbors`` metric.
    """
    k = check_positive_int(k, "k")
    X, y, n_classes = check_features_labels(features, labels, keep_float32=True)
    n = X.shape[0]
    if n < k + 1:
        raise ValueError(f"leave-one-out k-NN with k={k} needs at least {k + 1} samples, got {n}")
    X = X / X.dtype.type(pow2_scale(X))  # exact; neighbours do not depend on the scale
    search = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric=metric).fit(X)
    _, index = search.kneighbors(X)
    is_self = index == np.arange(n)[:, None]
    # Rows where self was pushed out by duplicates: drop the farthest neighbour instead.
    missing = ~is_self.any(axis=1)
    is_self[missing, -1] = True
    neighbours = index[~is_self].reshape(n, k)
    votes = np.zeros((n, n_classes))
    # Weight 1 + tiny rank bonus: ties are broken in favour of the nearer neighbour's class.
    bonus = 1.0 / (k * (k + 1))
    for rank in range(k):
        votes[np.arange(n), y[neighbours[:, rank]]] += 1.0 + bonus * (k - rank)
    predicted = np.argmax(votes, axis=1)
    return float(np.mean(predicted == y))


def probe_accuracy(
    features,
    labels,
    n_splits: int = 5,
    C: float = 1.0,
    max_iter: int = 1000,
    random_state: int = 0,
) -> float:
    """Cross-validated accuracy of a logistic-regression linear probe. Higher is better.

    The standard linear-probe protocol (e.g. Kornblith, Shlens & Le, "Do Better ImageNet
    Models Transfer Better?", CVPR 2019, arXiv 1805.08974), with a stratified k-fold
    (``n_splits`` = 5, shuffled with ``random_state`` = 0, so deterministic): features are
    standardised on each training fold, an L2-regularised multinomial logistic regression
    (``C`` = 1, lbfgs) is fitted, and the score is the fraction of samples whose
    out-of-fold prediction is right. The number of folds is reduced to the size of the
    smallest class when that is smaller than ``n_splits``.

    Raises ValueError when a class has fewer than 2 samples (it cannot appear on both
    sides of a split).

    Args:
        features: ``N x D`` features (float32 or float64).
        labels: length-N labels of any type (at least 2 classes).
    """
    n_splits = check_positive_int(n_splits, "n_splits", minimum=2)
    X, y, n_classes = check_features_labels(features, labels, keep_float32=True)
    smallest = int(class_counts(y, n_classes).min())
    if smallest < 2:
        raise ValueError(
            "probe accuracy needs at least 2 samples per class for a stratified split; "
            "a class has fewer than 2 samples"
        )
    # One implementation of the probe, shared with complementarity (which needs the same
    # out-of-fold predictions per sample, and gets them remembered from this call).
    correct = probe_correctness(X, y, folds=n_splits, seed=random_state, C=C, max_iter=max_iter)
    return float(np.mean(correct))
