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
    # The argmax of the rows as given, found in the checks' pass over them: dividing a row
    # by its positive sum keeps the order (up to entries within a rounding error of the
    # maximum, which renormalising may tie).
    P, y, n_classes, z = check_source_probs(source_probs, labels, argmax=True)
    n, n_source = P.shape
    # Only the joint's non-empty cells (y, z), at most N of its C x C_source.
    cells, counts = np.unique(y * n_source + z, return_counts=True)
    z_counts = np.bincount(z, minlength=n_source)
    value = float(np.sum(counts / n * np.log(counts / z_counts[cells % n_source])))
    return require_finite(value, "NCE")
