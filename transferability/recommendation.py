"""The evaluation's answer, first: which checkpoint to take, why, and how sure that is.

- Consensus rank: the mean of a checkpoint's ranks over the transferability metrics that
  can tell the candidates apart (baselines and uninformative metrics left out), ranked again.
- Warnings per metric: constant across the candidates (it cannot discriminate, e.g. H-score
  = 2 for every checkpoint when it saturates), and, for the metrics that estimate per-class
  (co)variances, a feature width d at least the images of the smallest class.
- The recommendation: the best by true accuracy when ground truth was measured, else the
  best consensus rank; with its rank by every metric and baseline, the margin to the next,
  and cautions (metrics that disagree, a small dataset, warnings).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .metrics import REGISTRY
from .models import Status
from .ranking import ConstantInputError, kendall_tau

__all__ = ["consensus_ranks", "metric_warnings", "recommend", "SMALL_DATASET_IMAGES",
           "SMALL_CLASS_IMAGES"]

# Metrics that estimate a covariance or scatter per class (or need d < n_c to be meaningful).
COVARIANCE_METRICS = {"hscore", "sfda", "gbc"}
SMALL_DATASET_IMAGES = 500
SMALL_CLASS_IMAGES = 20
PROBE = "probe_accuracy"
KNN = "knn_accuracy"


def _done(rows):
    return [r for r in rows if r.result.status == Status.DONE]


def metric_warnings(rows, class_counts) -> dict[str, dict[str, str]]:
    """{metric: {checkpoint name or "*": why its value cannot be trusted}}; "*" for all."""
    rows = _done(rows)
    smallest = min(class_counts) if class_counts else 0
    out: dict[str, dict[str, str]] = {}
    for name in REGISTRY:
        values = [r.scores.get(name) for r in rows if r.scores.get(name) is not None]
        if len(values) >= 2 and np.ptp(values) <= 1e-9 * max(1.0, float(np.max(np.abs(values)))):
            out.setdefault(name, {})["*"] = (
                f"the same value ({values[0]:.4g}) for every checkpoint: it cannot tell them "
                f"apart here")
        if name in COVARIANCE_METRICS:
            for r in rows:
                d = r.result.feature_dim or r.checkpoint.feature_dim
                if r.scores.get(name) is not None and d and smallest and d >= smallest:
                    out.setdefault(name, {}).setdefault(
                        r.checkpoint.name,
                        f"feature width d = {d} is at least the {smallest} images of the "
                        f"smallest class: class covariances are not estimable and the value "
                        f"saturates")
    return out


def consensus_ranks(rows, warnings=None) -> tuple[dict[str, int], list[str]]:
    """({checkpoint name: consensus rank}, metric names used): mean rank over the metrics
    scored for every finished checkpoint and not constant across them."""
    rows = _done(rows)
    warnings = warnings if warnings is not None else {}
    used = [name for name, spec in REGISTRY.items() if spec.kind == "metric"
            and "*" not in warnings.get(name, {})
            and rows and all(name in r.ranks for r in rows)]
    if not used:
        return {}, []
    means = {r.checkpoint.name: float(np.mean([r.ranks[m] for m in used])) for r in rows}
    ordered = sorted(means.items(), key=lambda item: item[1])
    ranks, previous, rank = {}, None, 0
    for position, (name, mean) in enumerate(ordered, start=1):
        if mean != previous:
            rank, previous = position, mean
        ranks[name] = rank
    return ranks, used


@dataclass
class Recommendation:
    checkpoint: object
    basis: str
    ranks: list[tuple[str, int, int]] = field(default_factory=list)  # (label, rank, of)
    margin: str = ""
    cautions: list[str] = field(default_factory=list)
    first_by: int = 0  # how many of the metrics put it first
    metrics_used: int = 0


def recommend(rows, class_counts, truth: dict | None = None,
              ranking: str | None = None) -> Recommendation | None:
    """The checkpoint to take, with the evidence; None when nothing finished."""
    done = _done(rows)
    if not done:
        return None
    warnings = metric_warnings(rows, class_counts)
    consensus, used = consensus_ranks(rows, warnings)
    accuracy = (truth or {}).get("accuracy") or {}
    measured = [r for r in done if r.checkpoint.name in accuracy]
    if len(measured) >= 2:
        ordered = sorted(measured, key=lambda r: -accuracy[r.checkpoint.name])
        best, runner = ordered[0], ordered[1]
        basis = f"best true accuracy ({accuracy[best.checkpoint.name]:.1f} %)"
        gap = accuracy[best.checkpoint.name] - accuracy[runner.checkpoint.name]
        margin = f"{gap:.1f} points above {runner.checkpoint.name}"
    elif consensus:
        ordered = sorted(done, key=lambda r: (consensus[r.checkpoint.name], r.checkpoint.name))
        best = ordered[0]
        basis = f"best consensus rank over {len(used)} metrics"
        runner = ordered[1] if len(ordered) > 1 else None
        margin = _probe_margin(best, runner)
    else:
        ranked = [r for r in done if r.rank is not None]
        if not ranked:
            return None
        ordered = sorted(ranked, key=lambda r: r.rank)
        best = ordered[0]
        runner = ordered[1] if len(ordered) > 1 else None
        basis = "best rank"
        margin = _probe_margin(best, runner)
    rec = Recommendation(best.checkpoint, basis, margin=margin, metrics_used=len(used))
    for name, spec in REGISTRY.items():
        if name in best.ranks:
            of = sum(1 for r in done if name in r.ranks)
            rec.ranks.append((spec.label, best.ranks[name], of))
    rec.first_by = sum(1 for m in used if best.ranks.get(m) == 1)
    rec.cautions = _cautions(done, best, used, warnings, class_counts, ranking)
    return rec


def _probe_margin(best, runner) -> str:
    if runner is None:
        return "the only checkpoint that finished"
    a, b = best.scores.get(PROBE), runner.scores.get(PROBE)
    if a is None or b is None:
        return f"next: {runner.checkpoint.name}"
    return (f"linear probe {100 * (a - b):+.1f} points against the next, "
            f"{runner.checkpoint.name}")


def _cautions(done, best, used, warnings, class_counts, ranking) -> list[str]:
    cautions = []
    if len(done) < 2:
        return ["only one checkpoint finished: nothing to compare it with"]
    if used and best.ranks and sum(1 for m in used if best.ranks.get(m) == 1) <= len(used) / 2:
        firsts = {}
        for r in done:
            for m in used:
                if r.ranks.get(m) == 1:
                    firsts.setdefault(r.checkpoint.name, []).append(REGISTRY[m].label)
        others = [f"{name} ({', '.join(labels)})" for name, labels in firsts.items()
                  if name != best.checkpoint.name]
        if others:
            cautions.append("the metrics disagree: others put first " + "; ".join(others))
    if ranking and all(ranking in r.scores and PROBE in r.scores for r in done):
        try:
            tau = kendall_tau([r.scores[ranking] for r in done], [r.scores[PROBE] for r in done],
                              REGISTRY[ranking].higher_is_better)
        except (ConstantInputError, ValueError):
            tau = None
        if tau is not None and tau < 0.3:
            cautions.append(f"{REGISTRY[ranking].label} and the linear probe order the "
                            f"checkpoints differently (Kendall τ {tau:.2f})")
    total = sum(class_counts)
    smallest = min(class_counts) if class_counts else 0
    if total < SMALL_DATASET_IMAGES or smallest < SMALL_CLASS_IMAGES:
        cautions.append(f"a small dataset ({total} images, {smallest} in the smallest class): "
                        f"scores are noisy")
    flagged = [REGISTRY[name].label for name, where in warnings.items()
               if "*" in where or best.checkpoint.name in where]
    if flagged:
        cautions.append("cannot discriminate here: " + ", ".join(flagged))
    return cautions
