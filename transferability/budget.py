"""Verifying on a budget: the best checkpoint found with a few fine-tunes.

A budget of k is k full fine-tunes' worth of training (epochs times the learning-rate
grid, per checkpoint). Two strategies, both over the checkpoints in the lead predictor's
order:

- ``top``: fine-tune the k best by the lead, fully;
- ``halving``: successive halving (Jamieson & Talwalkar, AISTATS 2016; Li et al.,
  Hyperband, JMLR 2018). Rung 0 trains the n best by the lead for a quarter of the epochs,
  the better half by held-out accuracy goes on to half the epochs, the better half of
  those to the full schedule. n is the largest that keeps the total within k full
  fine-tunes, so halving looks further down the lead's order than ``top`` for the same
  cost, at the price of judging on short schedules first.

Plain functions; no Django.
"""

from __future__ import annotations

import math

__all__ = ["STRATEGIES", "halving_rungs", "plan", "survivors", "plan_cost"]

STRATEGIES = ("top", "halving")


def halving_rungs(full_epochs: int) -> list[int]:
    """Epochs per rung: a quarter, a half, then all of them (each at least 1)."""
    return [max(1, full_epochs // 4), max(1, full_epochs // 2), full_epochs]


def plan_cost(counts: list[int], epochs: list[int], full_epochs: int) -> float:
    """The plan's training, in full fine-tunes."""
    return sum(n * e for n, e in zip(counts, epochs)) / full_epochs


def plan(strategy: str, budget: int, available: int, full_epochs: int) -> list[dict]:
    """The rungs: [{"epochs": e, "checkpoints": how many}], first to last.

    ``available``: checkpoints that can be fine-tuned (the lead's order). Raises
    ValueError on an unknown strategy or a budget below 1.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a whole number of fine-tunes >= 1, got {budget!r}")
    if available < 1:
        raise ValueError("no checkpoint to fine-tune")
    if strategy == "top" or budget >= available or full_epochs < 4:
        return [{"epochs": full_epochs, "checkpoints": min(budget, available)}]
    best = None
    for n in range(2, available + 1):
        rungs = _rungs(n, full_epochs)
        if plan_cost([r["checkpoints"] for r in rungs], [r["epochs"] for r in rungs],
                     full_epochs) <= budget:
            best = rungs
    if best is None:  # too small a budget to halve: the top ones, fully
        return [{"epochs": full_epochs, "checkpoints": min(budget, available)}]
    return best


def _rungs(n: int, full_epochs: int) -> list[dict]:
    """n checkpoints halved over the rungs; a rung that would not shrink the field is
    dropped (its checkpoints go straight to the next, longer one)."""
    epochs = halving_rungs(full_epochs)
    counts = [math.ceil(n / 2 ** r) for r in range(len(epochs))]
    rungs = []
    for r, (e, c) in enumerate(zip(epochs, counts)):
        if r + 1 < len(epochs) and (counts[r + 1] == c or epochs[r + 1] == e):
            continue
        rungs.append({"epochs": e, "checkpoints": c})
    return rungs


def survivors(accuracy: dict[str, float], count: int, order: list[str]) -> list[str]:
    """The ``count`` best by held-out accuracy; ties go to the earlier in the lead's
    ``order``."""
    position = {name: i for i, name in enumerate(order)}
    ranked = sorted(accuracy, key=lambda n: (-accuracy[n], position.get(n, len(order))))
    return ranked[:count]
