"""Baselines that a user must always see beside the metrics: k-NN and linear-probe accuracy."""

from __future__ import annotations

import numpy as np

from ..probes import probe_correctness
from ._validation import check_features_labels, check_positive_int, class_counts
from .sampling import stratified_subsample
from .statistics import statistics_of

__all__ = ["knn_accuracy", "probe_accuracy", "KNN_SAMPLE_LIMIT"]

# Above this many samples k-NN accuracy is estimated on a stratified subsample of queries.
KNN_SAMPLE_LIMIT = 10_000


def knn_accuracy(features, labels=None, k: int = 5, max_samples: int = KNN_SAMPLE_LIMIT,
                 random_state: int = 0) -> float:
    """Leave-one-out k-nearest-neighbour accuracy of the features. Higher is better; in [0, 1].

    Each sample is classified by a majority vote of its ``k`` (default 5) nearest *other*
    samples (exact Euclidean search, distances in float32); the sample itself is excluded by index, so
    exact duplicates of it still vote. Ties between classes go to the class whose member is
    nearest. Standard k-NN evaluation (Cover & Hart, IEEE Trans. Inf. Theory 1967), proposed
    as a transferability estimator by Sorkhei et al., "k-NN as a Simple and Effective
    Estimator of Transferability", arXiv 2503.18528; with ``k=1`` it equals dbolya/parc's
    ``kNN`` baseline (docs/science.md §7).

    Above ``max_samples`` samples, the accuracy is estimated on a class-stratified subset of
    ``max_samples`` query samples (drawn with ``random_state``), each still searched against
    *all* samples: an unbiased estimate of the full leave-one-out accuracy, at
    ``max_samples / N`` of the cost.

    Args:
        features: ``N x D`` features, or a :class:`~.statistics.FeatureStatistics`.
        labels: length-N labels of any type (at least 2 classes).
        k: number of neighbours; needs N >= k + 1, otherwise ValueError.
    """
    k = check_positive_int(k, "k")
    max_samples = check_positive_int(max_samples, "max_samples")
    stats = statistics_of(features, labels)
    stats.require_classes(2)
    n, y = stats.n, stats.y
    if n < k + 1:
        raise ValueError(f"leave-one-out k-NN with k={k} needs at least {k + 1} samples, got {n}")
    queries = stratified_subsample(y, max_samples, random_state) if n > max_samples \
        else np.arange(n)
    backend = stats.backend
    # Centred and scaled by a power of two (the same neighbours, no overflow), in float32:
    # twice as fast, and the order differs from a float64 search only between neighbours
    # whose distances agree to about 1e-6 relative.
    reference = backend.single(stats.centred)
    neighbours = backend.nearest_others(backend.rows(reference, queries), queries,
                                        reference, k)
    votes = np.zeros((queries.size, stats.n_classes))
    # Weight 1 + tiny rank bonus: ties are broken in favour of the nearer neighbour's class.
    bonus = 1.0 / (k * (k + 1))
    rows = np.arange(queries.size)
    for rank in range(k):
        votes[rows, y[neighbours[:, rank]]] += 1.0 + bonus * (k - rank)
    return float(np.mean(np.argmax(votes, axis=1) == y[queries]))


def probe_accuracy(
    features,
    labels=None,
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
    smallest class when that is smaller than ``n_splits``. On a CUDA panel (statistics
    with a torch backend there) the probe is fitted on that device, otherwise by
    scikit-learn (:func:`~transferability.probes.probe_implementation`).

    Raises ValueError when a class has fewer than 2 samples (it cannot appear on both
    sides of a split).

    Args:
        features: ``N x D`` features, or a :class:`~.statistics.FeatureStatistics`.
        labels: length-N labels of any type (at least 2 classes).
    """
    n_splits = check_positive_int(n_splits, "n_splits", minimum=2)
    stats = statistics_of(features, labels)
    X, y, n_classes = check_features_labels(stats.features, stats.y, keep_float32=True)
    smallest = int(class_counts(y, n_classes).min())
    if smallest < 2:
        raise ValueError(
            "probe accuracy needs at least 2 samples per class for a stratified split; "
            "a class has fewer than 2 samples"
        )
    # One implementation of the probe, shared with complementarity (which needs the same
    # out-of-fold predictions per sample, and gets them remembered from this call).
    correct = probe_correctness(X, y, folds=n_splits, seed=random_state, C=C, max_iter=max_iter,
                                device=getattr(stats.backend, "device", None))
    return float(np.mean(correct))
