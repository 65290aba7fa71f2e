"""How well a transferability metric ranks checkpoints (docs/science.md, section 6).

Ground truth is the accuracy each checkpoint reaches on the target task after transfer
(fine-tuning, or the linear-probe proxy of
:func:`transferability.probes.holdout_probe_accuracy`); higher is always better. A
metric's scores are compared with it by:

- weighted Kendall's tau (Vigna, "A weighted correlation index for rankings with ties",
  WWW 2015) as computed by ``scipy.stats.weightedtau`` with its default additive
  hyperbolic weigher and ``rank=True`` (weights from the rank by the metric's scores and
  from the rank by ground truth, averaged), the measure used in the transferability
  literature since LogME (You et al., ICML 2021) and SFDA (Shao et al., ECCV 2022);
- plain Kendall's tau-b (``scipy.stats.kendalltau``);
- top-k relative accuracy: the best ground truth among the metric's k top-scored
  checkpoints divided by the best ground truth overall (1.0 when the metric's top-k
  contains the truly best checkpoint).

Every function takes ``higher_is_better`` for the metric's direction; when it is False the
scores are negated first. Plain functions over numpy arrays; no Django.

Constant input: a correlation with a constant vector is undefined (0 / 0; SciPy returns
NaN). The tau functions raise :class:`ConstantInputError` (a ValueError) instead, so that
an uninformative metric is never silently shown with a number; callers that want a value
catch it and display "undefined".
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = [
    "ConstantInputError",
    "weighted_tau",
    "kendall_tau",
    "top_k_relative_accuracy",
    "ranking_summary",
]


class ConstantInputError(ValueError):
    """A rank correlation was asked of a constant score or ground-truth vector."""


def _prepare(scores, truth, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if scores.ndim != 1 or truth.ndim != 1:
        raise ValueError(
            f"scores and truth must be 1-D, got shapes {scores.shape} and {truth.shape}"
        )
    if scores.shape != truth.shape:
        raise ValueError(f"{scores.size} scores but {truth.size} ground-truth values")
    if scores.size < 2:
        raise ValueError(f"ranking needs at least 2 models, got {scores.size}")
    if np.isnan(scores).any() or np.isnan(truth).any():
        raise ValueError("scores and truth must not contain NaN")
    return (scores if higher_is_better else -scores), truth


def _check_not_constant(scores: np.ndarray, truth: np.ndarray) -> None:
    for name, values in (("scores", scores), ("truth", truth)):
        if np.all(values == values[0]):
            raise ConstantInputError(f"rank correlation is undefined: {name} are constant")


def weighted_tau(scores, truth, higher_is_better: bool = True) -> float:
    """Weighted Kendall's tau between the metric's scores and the ground truth.

    ``scipy.stats.weightedtau`` with the default hyperbolic weigher (weight 1 / (r + 1) for
    rank r, agreement at the top weighs most). Returns a value in [-1, 1]: 1 for the same
    ranking, -1 for the reversed one.

    Raises:
        ValueError: fewer than 2 models, mismatched lengths, NaN.
        ConstantInputError: constant scores or constant ground truth.
    """
    scores, truth = _prepare(scores, truth, higher_is_better)
    _check_not_constant(scores, truth)
    return float(stats.weightedtau(scores, truth).statistic)


def kendall_tau(scores, truth, higher_is_better: bool = True) -> float:
    """Kendall's tau-b between the metric's scores and the ground truth.

    Raises:
        ValueError: fewer than 2 models, mismatched lengths, NaN.
        ConstantInputError: constant scores or constant ground truth.
    """
    scores, truth = _prepare(scores, truth, higher_is_better)
    _check_not_constant(scores, truth)
    return float(stats.kendalltau(scores, truth).statistic)


def top_k_relative_accuracy(scores, truth, k: int = 1, higher_is_better: bool = True) -> float:
    """Best ground truth among the metric's top-k picks divided by the best overall.

    Ties in the scores at the k-th place are resolved against the metric (the tied
    checkpoints with the lowest ground truth are picked first), so the result does not
    depend on the order of the inputs and a constant metric earns no credit for luck.

    Raises:
        ValueError: fewer than 2 models, mismatched lengths, NaN, k outside 1..M, or a best
            ground truth that is not positive (the ratio would be meaningless).
    """
    scores, truth = _prepare(scores, truth, higher_is_better)
    if not 1 <= k <= scores.size:
        raise ValueError(f"k must be between 1 and {scores.size}, got {k}")
    best = truth.max()
    if not best > 0:
        raise ValueError(f"the best ground truth must be positive, got {best}")
    # lexsort sorts by the last key first: scores descending, then truth ascending.
    order = np.lexsort((truth, -scores))
    return float(truth[order[:k]].max() / best)


def ranking_summary(scores, truth, higher_is_better: bool = True, ks=(1, 3)) -> dict:
    """JSON-friendly dict of every measure above; undefined taus are None."""
    summary = {}
    for name, measure in (("weighted_tau", weighted_tau), ("kendall_tau", kendall_tau)):
        try:
            summary[name] = measure(scores, truth, higher_is_better)
        except ConstantInputError:
            summary[name] = None
    n_models = np.asarray(scores).size
    for k in ks:
        if k <= n_models:
            summary[f"top_{k}_relative_accuracy"] = top_k_relative_accuracy(
                scores, truth, k, higher_is_better
            )
    return summary
