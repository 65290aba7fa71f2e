"""LEEP: the log expected empirical prediction through the checkpoint's own source head.

Takes ``source_probs``, the N x C_source softmax probabilities of the checkpoint's own
classifier on the target images, and the target labels. N-LEEP reuses
:func:`leep_from_probs` with a Gaussian mixture in place of the head.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_source_probs, require_finite

__all__ = ["leep", "leep_from_probs"]

# Rows are read in blocks of about this many entries (1 MiB of float64): each block is
# converted and summed while it is in cache, never the whole matrix.
_BLOCK_ENTRIES = 1 << 17


def leep_from_probs(P: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    """LEEP on validated probabilities, renormalised here in float64 (shared with N-LEEP).

    The rows are visited in label order, in blocks, so that within a block each class is
    one run of rows: its share of the joint P(y, z) is one vector-matrix product, and its
    expected empirical predictions one matrix-vector product with its row of P(y | z).
    Two passes over ``P`` and no N x Z temporary (the authors' ``P @ P(y | z).T`` costs
    N x Z x C multiply-adds).
    """
    n, n_source = P.shape
    order = np.argsort(y, kind="stable")
    blocks = _class_runs(y[order], max(64, _BLOCK_ENTRIES // max(n_source, 1)))
    ones = np.ones(n_source)
    joint = np.zeros((n_classes, n_source))  # N P(y, z)
    inverse_sums = np.empty(n)
    for start, stop, runs in blocks:
        block = P[order[start:stop]].astype(np.float64, copy=False)
        inverse = 1.0 / (block @ ones)
        inverse_sums[start:stop] = inverse
        for a, b, label in runs:
            joint[label] += inverse[a:b] @ block[a:b]
    marginal = joint.sum(axis=0)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    eep = np.empty(n)
    for start, stop, runs in blocks:
        block = P[order[start:stop]].astype(np.float64, copy=False)
        for a, b, label in runs:
            eep[start + a:start + b] = block[a:b] @ conditional[label]
    # eep_i >= sum_z P_iz^2 / (N P(z)) > 0: sample i contributes to its own P(y_i, z).
    return float(np.sum(np.log(eep * inverse_sums))) / n


def _class_runs(y_sorted: np.ndarray, step: int) -> list:
    """Blocks ``(start, stop, runs)`` of ``step`` rows of sorted labels; ``runs`` lists each
    class's rows in the block as ``(first, last + 1, class)``, counted from ``start``."""
    n = y_sorted.size
    class_starts = np.flatnonzero(np.r_[True, y_sorted[1:] != y_sorted[:-1]])
    cuts = np.union1d(class_starts, np.arange(0, n, step)).tolist() + [n]
    labels = y_sorted[cuts[:-1]].tolist()
    blocks = []
    for i, cut in enumerate(cuts[:-1]):
        if cut % step == 0:
            start = cut
            blocks.append((start, min(start + step, n), []))
        blocks[-1][2].append((cut - start, cuts[i + 1] - start, labels[i]))
    return blocks


def leep(source_probs, labels) -> float:
    """LEEP (Nguyen, Hassner, Seeger & Archambeau, ICML 2020, arXiv 2002.12462).

    Higher is better; LEEP <= 0.

    Follows thuml/LogME ``LEEP.py`` (``LEEP``), the paper's definition *with* the log:
    the average log of the expected empirical prediction. With theta(x_i) the source softmax (N x Z), the empirical joint
    P(y, z) = 1/N sum_{i: y_i = y} theta(x_i)_z, the conditional P(y | z) = P(y, z) / P(z),
    and::

        LEEP = 1/N sum_i log( sum_z P(y_i | z) theta(x_i)_z )

    Args:
        source_probs: ``N x C_source`` softmax probabilities of the checkpoint's own head
            (rows must sum to 1 within 1e-3; they are renormalised, in float64).
        labels: length-N target labels of any type (at least 2 classes).
    """
    P, y, n_classes = check_source_probs(source_probs, labels)
    return require_finite(leep_from_probs(P, y, n_classes), "LEEP")
