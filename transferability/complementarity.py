"""Complementary knowledge between checkpoints, measured by prediction flips.

Follows Fantastic Gains (Roth et al., "Fantastic Gains and Where to Find Them: On the
Existence and Prospect of General Knowledge Transfer between Any Pretrained Model",
ICLR 2024, arXiv 2310.17653), section 3: the complementary knowledge of model A over
model B is the share of samples A classifies correctly and B does not (positive
prediction flips), and its per-class distribution tells whether that knowledge is
concentrated in a few classes. See docs/science.md section 4.

Variant implemented here: flips are computed from a per-sample correctness matrix that may
come from the checkpoints' own heads (the paper's setting) or from out-of-fold linear
probes on target labels (this app's default, see :mod:`transferability.probes`). All
percentages are in % of the N samples. Entropies use the natural log.

Plain functions over numpy arrays; no Django.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "TOP_P_PERCENTS",
    "ClassBreakdown",
    "positive_flips",
    "oracle_accuracy",
    "accuracy",
    "class_breakdown",
    "complementarity_report",
]

#: The "top p % classes" reported per pair (Roth et al., section 3).
TOP_P_PERCENTS = (2, 5, 20, 50)


def _as_correctness(correct, ndim: int, name: str = "correct") -> np.ndarray:
    """Cast to bool, refusing anything that is not exactly 0/1 or True/False."""
    array = np.asarray(correct)
    if array.ndim != ndim:
        shape = "M x N" if ndim == 2 else "N"
        raise ValueError(f"{name} must be {ndim}-D ({shape}), got shape {array.shape}")
    if array.shape[-1] == 0:
        raise ValueError(f"{name} has no samples")
    if array.dtype == bool:
        return array
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == object):
        raise ValueError(f"{name} must be boolean or 0/1, got dtype {array.dtype}")
    try:
        is_binary = bool(np.all((array == 0) | (array == 1)))
    except TypeError as error:
        raise ValueError(f"{name} must be boolean or 0/1: {error}") from None
    if not is_binary:
        raise ValueError(f"{name} must contain only booleans or 0/1 values")
    return array.astype(bool)


def _as_labels(labels, n_samples: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (N,), got shape {labels.shape}")
    if labels.shape[0] != n_samples:
        raise ValueError(
            f"correctness covers {n_samples} samples but there are {labels.shape[0]} labels"
        )
    return labels


def _plain(value):
    """A JSON-friendly Python scalar from a numpy scalar."""
    return value.item() if isinstance(value, np.generic) else value


def accuracy(correct) -> np.ndarray:
    """Accuracy in % of each row of the M x N correctness matrix."""
    correct = _as_correctness(correct, 2)
    return correct.sum(axis=1) * 100.0 / correct.shape[1]


def positive_flips(correct) -> np.ndarray:
    """M x M matrix of positive prediction flips, in %.

    Entry [i, j] is the share of samples that model i classifies correctly and model j
    does not: 100 / N * K (1 - K)^T for the M x N correctness matrix K. The diagonal is 0,
    [j, i] is the negative flips of i over j, and acc(i) - acc(j) = [i, j] - [j, i].

    Counts are computed in integers and scaled once, so the identity holds to rounding.
    """
    correct = _as_correctness(correct, 2)
    right = correct.astype(np.int64)
    counts = right @ (1 - right).T
    return counts * 100.0 / correct.shape[1]


def oracle_accuracy(correct) -> np.ndarray:
    """M x M matrix of the accuracy (in %) of an oracle choosing between models i and j.

    Entry [i, j] = mean over samples of (correct_i or correct_j); the diagonal is each
    model's own accuracy.
    """
    correct = _as_correctness(correct, 2)
    wrong = (~correct).astype(np.int64)
    both_wrong = wrong @ wrong.T
    return (correct.shape[1] - both_wrong) * 100.0 / correct.shape[1]


@dataclass(frozen=True)
class ClassBreakdown:
    """Where the positive flips of model A over model B fall among the classes.

    Attributes:
        classes: the class label values, sorted (np.unique order).
        counts: positive flips of A over B per class (samples A gets right, B wrong).
        shares: counts / total; all zeros when there are no flips.
        total: number of positive flips over all classes.
        entropy: natural-log entropy of ``shares`` (0 when there are no flips). Low values
            mean the complementary knowledge sits in a few classes.
        max_entropy: log C, the entropy of flips spread evenly over the C classes.
        top_p: {p: fewest classes whose cumulative share reaches p %} for p in
            TOP_P_PERCENTS; 0 when there are no flips.
    """

    classes: np.ndarray
    counts: np.ndarray
    shares: np.ndarray
    total: int
    entropy: float
    max_entropy: float
    top_p: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-friendly copy (lists of Python scalars; top_p keys as strings)."""
        return {
            "classes": [_plain(c) for c in self.classes],
            "counts": [int(c) for c in self.counts],
            "shares": [float(s) for s in self.shares],
            "total": int(self.total),
            "entropy": float(self.entropy),
            "max_entropy": float(self.max_entropy),
            "top_p": {str(p): int(n) for p, n in self.top_p.items()},
        }


def _fewest_classes_reaching(counts: np.ndarray, total: int, percent: float) -> int:
    """Fewest classes whose cumulative share of ``total`` reaches ``percent`` %."""
    if total == 0:
        return 0
    cumulative = np.cumsum(np.sort(counts)[::-1])
    # Compare in integers (100 * count >= p * total) to avoid rounding at exact shares.
    return int(np.searchsorted(cumulative * 100 >= percent * total, True) + 1)


def class_breakdown(correct_a, correct_b, labels) -> ClassBreakdown:
    """Per-class distribution of the positive flips of A over B (Roth et al., sec. 3).

    Args:
        correct_a, correct_b: N booleans (or 0/1): is each sample right for A, for B.
        labels: N class labels; every class present in ``labels`` gets an entry, even
            with no flips.
    """
    correct_a = _as_correctness(correct_a, 1, "correct_a")
    correct_b = _as_correctness(correct_b, 1, "correct_b")
    if correct_a.shape != correct_b.shape:
        raise ValueError(
            f"correct_a has {correct_a.shape[0]} samples, correct_b {correct_b.shape[0]}"
        )
    labels = _as_labels(labels, correct_a.shape[0])
    classes, inverse = np.unique(labels, return_inverse=True)
    flips = correct_a & ~correct_b
    counts = np.bincount(inverse.ravel()[flips], minlength=classes.size).astype(np.int64)
    total = int(counts.sum())
    if total:
        shares = counts / total
        nonzero = shares[shares > 0]
        entropy = float(-np.sum(nonzero * np.log(nonzero)))
    else:
        shares = np.zeros(classes.size)
        entropy = 0.0
    return ClassBreakdown(
        classes=classes,
        counts=counts,
        shares=shares,
        total=total,
        entropy=entropy,
        max_entropy=math.log(classes.size),
        top_p={p: _fewest_classes_reaching(counts, total, p) for p in TOP_P_PERCENTS},
    )


def complementarity_report(correct, labels, names: Sequence[str]) -> dict:
    """Everything an evaluation stores about complementary knowledge, JSON-friendly.

    Args:
        correct: M x N correctness matrix (row i: model ``names[i]``).
        labels: N class labels.
        names: M distinct model names.

    Returns:
        {"names", "n_samples", "n_classes", "accuracy" (M, %), "positive_flips" (M x M, %,
        [i][j] = i right and j wrong), "oracle" (M x M, %), "pairs": one entry per ordered
        pair i != j with "a", "b", "positive_flips", "negative_flips", "oracle" and
        "breakdown" (:meth:`ClassBreakdown.to_dict` of the flips of a over b)}.
    """
    correct = _as_correctness(correct, 2)
    labels = _as_labels(labels, correct.shape[1])
    names = [str(name) for name in names]
    if len(names) != correct.shape[0]:
        raise ValueError(f"{len(names)} names for {correct.shape[0]} models")
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be distinct, got {names!r}")
    flips = positive_flips(correct)
    oracle = oracle_accuracy(correct)
    pairs = []
    for i, name_a in enumerate(names):
        for j, name_b in enumerate(names):
            if i == j:
                continue
            pairs.append({
                "a": name_a,
                "b": name_b,
                "positive_flips": float(flips[i, j]),
                "negative_flips": float(flips[j, i]),
                "oracle": float(oracle[i, j]),
                "breakdown": class_breakdown(correct[i], correct[j], labels).to_dict(),
            })
    return {
        "names": names,
        "n_samples": int(correct.shape[1]),
        "n_classes": int(np.unique(labels).size),
        "accuracy": accuracy(correct).tolist(),
        "positive_flips": flips.tolist(),
        "oracle": oracle.tolist(),
        "pairs": pairs,
    }
