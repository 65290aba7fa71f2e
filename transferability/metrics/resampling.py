"""How sure a ranking is: the metric panel on resampled images.

Each resample keeps, class by class, 63.2 % of the images drawn without replacement: the
share of distinct images that a bootstrap sample holds on average (Efron & Tibshirani's
.632 idea), without the duplicated images that a sample drawn with replacement would hold,
which put k-th neighbour distances at zero and so would change TMI, k-NN accuracy and
k-NN MI by themselves. The resamples depend only on the labels and their number, so every
checkpoint of an evaluation is scored on the same images in resample b, and the ranks per
resample can be compared.

From the resampled scores of every checkpoint: P(first), the share of resamples in which a
checkpoint ranks first (a tie for first shared evenly), and a 90 % rank interval (the 5th and 95th percentiles of its
rank). :func:`rank_confidence` does this for one predictor, :func:`consensus_confidence`
for the mean rank over several.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from scipy.stats import rankdata

from .statistics import FeatureStatistics

__all__ = ["RESAMPLES", "RESAMPLE_FRACTION", "NOT_RESAMPLED", "resample_indices",
           "resampled_scores", "rank_confidence", "consensus_confidence"]

RESAMPLES = 30
RESAMPLE_FRACTION = 0.632
# Too costly to repeat 30 times beside the panel (their share of its time, measured on the
# demo evaluation: the linear probe 80 %, PARC 15 %), or defined over the candidate set.
NOT_RESAMPLED = {
    "probe_accuracy": "a 5-fold logistic regression per resample would take 30 times the "
                      "panel's slowest part",
    "parc": "its Spearman correlation over sample pairs is the panel's second slowest part",
    "nleep": "a Gaussian mixture refitted per resample is costly and seed-dependent",
    "ncti": "it is normalised over the candidate set after every checkpoint finished",
}
MIN_PER_CLASS = 5  # k-NN metrics need k + 1 images of a class (TMI's k = 3, k-NN's 5 + 1)


def resample_indices(labels, resamples: int = RESAMPLES,
                     fraction: float = RESAMPLE_FRACTION, seed: int = 0) -> list[np.ndarray]:
    """``resamples`` sorted index arrays: per class, ceil(fraction * n_c) of its images (at
    least ``MIN_PER_CLASS``, at most all), without replacement, from a seeded generator."""
    y = np.unique(np.asarray(labels), return_inverse=True)[1].ravel()
    members = [np.flatnonzero(y == c) for c in range(int(y.max()) + 1)]
    out = []
    for b in range(resamples):
        rng = np.random.default_rng([seed, b])
        chosen = []
        for index in members:
            take = min(index.size, max(MIN_PER_CLASS, math.ceil(fraction * index.size)))
            chosen.append(rng.choice(index, size=take, replace=False))
        out.append(np.sort(np.concatenate(chosen)))
    return out


def resampled_scores(features, labels, specs: Iterable, *, source_probs=None,
                     indices: list[np.ndarray] | None = None, backend=None,
                     after_each=None) -> dict[str, list[float | None]]:
    """{metric name: its value on each resample (None where it failed)} for the specs that
    are resampled (not in :data:`NOT_RESAMPLED`, not relative to the set).
    ``after_each(b)`` is called after each resample (heartbeats, deadlines)."""
    specs = [s for s in specs if s.name not in NOT_RESAMPLED and not s.relative_to_set]
    features = np.asarray(features)
    labels = np.asarray(labels)
    indices = indices if indices is not None else resample_indices(labels)
    out: dict[str, list[float | None]] = {s.name: [] for s in specs}
    for index in indices:
        stats = FeatureStatistics(features[index], labels[index], backend=backend)
        for spec in specs:
            try:
                if spec.needs == "source_probs":
                    if source_probs is None:
                        raise ValueError("no source head")
                    value = float(spec.func(np.asarray(source_probs)[index], stats.y))
                else:
                    value = float(spec.func(stats, None))
                out[spec.name].append(value if np.isfinite(value) else None)
            except ValueError:
                out[spec.name].append(None)
        if after_each is not None:
            after_each(len(out[specs[0].name]) if specs else 0)
    return {name: values for name, values in out.items()
            if any(v is not None for v in values)}


def _ranks_per_resample(values: Mapping[str, list], higher_is_better: bool
                        ) -> tuple[list[str], np.ndarray]:
    """(names, R x M ranks, 1 = best, ties share the best rank); a resample where some
    checkpoint has no value is a row of NaN."""
    names = sorted(values)
    if not names:
        return names, np.empty((0, 0))
    length = min(len(values[n]) for n in names)
    ranks = np.full((length, len(names)), np.nan)
    for b in range(length):
        column = [values[n][b] for n in names]
        if any(v is None for v in column):
            continue
        vector = np.asarray(column, dtype=np.float64)
        ranks[b] = rankdata(-vector if higher_is_better else vector, method="min")
    return names, ranks


def _summary(names: list[str], ranks: np.ndarray) -> dict:
    ranks = ranks[~np.isnan(ranks).any(axis=1)] if ranks.size else ranks
    if ranks.size == 0:
        return {"resamples": 0, "p_first": {}, "rank_interval": {}}
    return {
        "resamples": int(ranks.shape[0]),
        # A tie for first shares the resample: each of t tied checkpoints counts 1 / t.
        "p_first": {n: float(np.mean((ranks[:, j] == 1) / np.sum(ranks == 1, axis=1)))
                    for j, n in enumerate(names)},
        "rank_interval": {n: [int(np.floor(np.percentile(ranks[:, j], 5))),
                              int(np.ceil(np.percentile(ranks[:, j], 95)))]
                          for j, n in enumerate(names)},
    }


def rank_confidence(values: Mapping[str, list], higher_is_better: bool = True) -> dict:
    """{"resamples", "p_first": {checkpoint: p}, "rank_interval": {checkpoint: [lo, hi]}}
    from each checkpoint's values on the same resamples."""
    return _summary(*_ranks_per_resample(values, higher_is_better))


def consensus_confidence(per_metric: Mapping[str, Mapping[str, list]],
                         higher_is_better: Mapping[str, bool]) -> dict:
    """The same for the consensus: per resample, each metric's ranks averaged, ranked again.
    ``per_metric``: {metric: {checkpoint: values}}; metrics missing a checkpoint are left
    out."""
    names = sorted({n for values in per_metric.values() for n in values})
    stacks = []
    for metric, values in per_metric.items():
        if sorted(values) != names:
            continue
        _, ranks = _ranks_per_resample(values, higher_is_better.get(metric, True))
        if ranks.shape[0]:
            stacks.append(ranks)
    if not stacks:
        return _summary(names, np.empty((0, 0)))
    length = min(s.shape[0] for s in stacks)
    mean = np.mean([s[:length] for s in stacks], axis=0)  # NaN where any metric lacks one
    ranked = np.asarray([rankdata(row, method="min") if not np.isnan(row).any()
                         else np.full(row.shape, np.nan) for row in mean])
    return _summary(names, ranked)
