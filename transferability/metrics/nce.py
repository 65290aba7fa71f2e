"""NCE: negative conditional entropy of the target labels given the source head's labels."""

from __future__ import annotations

import numpy as np

from ._validation import check_source_probs, require_finite

__all__ = ["nce"]


def nce(source_probs, labels) -> float:
    """NCE (Tran, Nguyen & Hassner, ICCV 2019, arXiv 1908.08142). Higher is better; NCE <= 0.

    Follows thuml/LogME ``NCE.py`` (``NCE``): the paper's negative conditional entropy of
    the *target* labels Y given the *source* labels Z, NCE = -H(Y | Z) = sum_{y,z} P(y, z) log P(y | z), where Z is the
    source head's argmax (hard dummy source labels; ties go to the lowest source index)
    and P is the empirical joint over the N target samples. Natural log.

    Args:
        source_probs: ``N x C_source`` softmax probabilities of the checkpoint's own head.
        labels: length-N target labels of any type (at least 2 classes).
    """
    P, y, n_classes = check_source_probs(source_probs, labels)
    n, n_source = P.shape
    z = np.argmax(P, axis=1)
    counts = np.bincount(y * n_source + z, minlength=n_classes * n_source)
    counts = counts.reshape(n_classes, n_source).astype(np.float64)
    z_counts = counts.sum(axis=0)
    nz = counts > 0
    conditional = counts[nz] / np.broadcast_to(z_counts, counts.shape)[nz]
    value = float(np.sum(counts[nz] / n * np.log(conditional)))
    return require_finite(value, "NCE")
