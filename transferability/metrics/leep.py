"""LEEP: the log expected empirical prediction through the checkpoint's own source head.

Takes ``source_probs``, the N x C_source softmax probabilities of the checkpoint's own
classifier on the target images, and the target labels. N-LEEP reuses
:func:`leep_from_probs` with a Gaussian mixture in place of the head.
"""

from __future__ import annotations

import numpy as np

from ._validation import check_source_probs, require_finite

__all__ = ["leep", "leep_from_probs"]

_BLOCK_ENTRIES = 1 << 22


def _joint_from_soft(P: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Empirical joint P(y, z) = 1/N * sum_{i: y_i = y} P_iz, as a C x Z matrix."""
    order = np.argsort(y, kind="stable")
    starts = np.searchsorted(y[order], np.arange(n_classes))
    joint = np.add.reduceat(P[order], starts, axis=0)  # every class is non-empty
    return joint / P.shape[0]


def leep_from_probs(P: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    """LEEP on already validated, row-normalised probabilities (shared with N-LEEP)."""
    joint = _joint_from_soft(P, y, n_classes)  # C x Z
    marginal = joint.sum(axis=0)  # P(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    n = P.shape[0]
    total = 0.0
    rows = max(1, _BLOCK_ENTRIES // max(P.shape[1], 1))
    for start in range(0, n, rows):
        block = P[start:start + rows]
        eep = np.einsum("iz,iz->i", block, conditional[y[start:start + rows]])
        # eep_i >= sum_z P_iz^2 / (N P(z)) > 0: sample i contributes to its own P(y_i, z).
        total += float(np.sum(np.log(eep)))
    return total / n


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
            (rows must sum to 1 within 1e-3; they are renormalised).
        labels: length-N target labels of any type (at least 2 classes).
    """
    P, y, n_classes = check_source_probs(source_probs, labels)
    return require_finite(leep_from_probs(P, y, n_classes), "LEEP")
