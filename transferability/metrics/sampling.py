"""Class-stratified subsamples, for the metrics that approximate on a subset above a size."""

from __future__ import annotations

import numpy as np

__all__ = ["stratified_subsample", "subsample_note"]


def stratified_subsample(y: np.ndarray, size: int, random_state: int = 0) -> np.ndarray:
    """Sorted indices of about ``size`` samples, each class in proportion to its count and
    at least one sample of every class (so slightly more than ``size`` with many tiny
    classes). Deterministic for a given ``random_state``."""
    n = y.shape[0]
    if size >= n:
        return np.arange(n)
    rng = np.random.default_rng(random_state)
    classes, counts = np.unique(y, return_counts=True)
    quota = np.maximum(1, np.floor(counts * (size / n)).astype(int))
    # Hand out what rounding left over to the classes with the largest remainders.
    short = size - int(quota.sum())
    if short > 0:
        remainder = counts * (size / n) - np.floor(counts * (size / n))
        room = quota < counts
        for c in np.argsort(-remainder, kind="stable"):
            if short == 0:
                break
            if room[c]:
                quota[c] += 1
                short -= 1
    chosen = [rng.choice(np.flatnonzero(y == c), size=q, replace=False)
              for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


def subsample_note(what: str, used: int, total: int) -> str:
    """How a result was approximated, for the user: "k-NN on 10,000 of 50,000 samples"."""
    return f"{what} on {used:,} of {total:,} samples"
