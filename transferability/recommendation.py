"""The evaluation's answer, first: which checkpoint to take, why, and how sure that is.

- Consensus rank: the mean of a checkpoint's ranks over the transferability metrics that
  can tell the candidates apart (baselines and uninformative metrics left out), ranked again.
- Warnings per metric: constant across the candidates (it cannot discriminate, e.g. H-score
  = 2 for every checkpoint when it saturates), and, for the metrics that estimate per-class
  (co)variances, a feature width d at least the images of the smallest class.
- TMI's floor: where most k-th neighbour distances are raised to ``min_dist``, TMI counts
  feature width d more than the features' spread; flagged per checkpoint and said once.
- The recommendation: the best by true accuracy when ground truth was measured, else the
  best by the lead predictor (chosen by evidence, :mod:`transferability.predictors`), else
  the best consensus rank; with its rank by every metric and baseline, the margin to the
  next, how sure it is (P(first) and rank intervals over resampled images,
  :mod:`transferability.metrics.resampling`) and cautions (metrics that disagree, a tie, a
  small dataset, warnings).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .metrics import REGISTRY
from .metrics.resampling import NOT_RESAMPLED, consensus_confidence, rank_confidence
from .metrics.tmi import FLOOR_DECIDES_SHARE
from .models import Status
from .ranking import ConstantInputError, kendall_tau

__all__ = ["consensus_ranks", "metric_warnings", "recommend", "tmi_floor_caution",
           "SMALL_DATASET_IMAGES", "SMALL_CLASS_IMAGES"]

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
    for r in rows:
        share = r.diagnostics.get("tmi", {}).get("floored_share")
        if r.scores.get("tmi") is not None and share is not None \
                and share >= FLOOR_DECIDES_SHARE:
            out.setdefault("tmi", {})[r.checkpoint.name] = (
                f"{100 * share:.0f} % of its k-th neighbour distances are below TMI's floor "
                f"({r.diagnostics['tmi']['floor']:g}): the value counts feature width d more "
                f"than the features' spread")
    return out


def tmi_floor_caution(rows) -> str | None:
    """One sentence when the floor decides TMI over these checkpoints, else None."""
    rows = [r for r in _done(rows) if r.scores.get("tmi") is not None
            and "floored_share" in r.diagnostics.get("tmi", {})]
    if not rows:
        return None
    share = float(np.mean([r.diagnostics["tmi"]["floored_share"] for r in rows]))
    if share < FLOOR_DECIDES_SHARE:
        return None
    text = (f"TMI measures feature width here: {100 * share:.0f} % of neighbour distances are "
            f"at its floor")
    widths = [r.result.feature_dim or r.checkpoint.feature_dim for r in rows]
    if len(rows) >= 3 and all(widths) and len(set(widths)) > 1:
        try:
            tau = kendall_tau([r.scores["tmi"] for r in rows], widths)
        except (ConstantInputError, ValueError):
            tau = None
        if tau is not None:
            text += f" (its order against feature width d: Kendall τ {tau:.2f})"
    return text


def consensus_ranks(rows, warnings=None) -> tuple[dict[str, int], list[str]]:
    """({checkpoint name: consensus rank}, metric names used): mean rank over the metrics
    scored for every finished checkpoint and not constant across them."""
    rows = _done(rows)
    warnings = warnings if warnings is not None else {}
    used = [name for name, spec in REGISTRY.items() if spec.kind == "metric"
            and spec.variant_of is None and "*" not in warnings.get(name, {})
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
    lead: object = None  # the predictors.Lead the evaluation is ranked by
    # {"resamples", "p_first": {name: p}, "rank_interval": {name: [lo, hi]}} for the lead
    # and for the consensus; empty when no resamples were made.
    confidence: dict = field(default_factory=dict)
    consensus_confidence: dict = field(default_factory=dict)
    confidence_text: str = ""

    def payload(self) -> dict:
        """The API's ``recommendation``."""
        lead = self.lead
        return {"checkpoint": self.checkpoint.name, "basis": self.basis, "margin": self.margin,
                "lead": lead.name if lead else None,
                "lead_label": lead.label if lead else None,
                "lead_basis": lead.basis if lead else None,
                "p_first": self.confidence.get("p_first", {}),
                "rank_interval": self.confidence.get("rank_interval", {}),
                "resamples": self.confidence.get("resamples", 0),
                "consensus_p_first": self.consensus_confidence.get("p_first", {}),
                "consensus_rank_interval": self.consensus_confidence.get("rank_interval", {}),
                "confidence": self.confidence_text,
                "cautions": list(self.cautions)}


def recommend(rows, class_counts, truth: dict | None = None,
              ranking: str | None = None, lead=None) -> Recommendation | None:
    """The checkpoint to take, with the evidence; None when nothing finished.

    ``lead``: the :class:`~transferability.predictors.Lead` that ranks the evaluation;
    ``ranking``: a single metric compared with the linear probe in the cautions (the
    lead's chart metric when left out).
    """
    done = _done(rows)
    if not done:
        return None
    warnings = metric_warnings(rows, class_counts)
    consensus, used = consensus_ranks(rows, warnings)
    accuracy = (truth or {}).get("accuracy") or {}
    measured = [r for r in done if r.checkpoint.name in accuracy]
    lead_scores = lead.scores(done) if lead is not None else {}
    ranking = ranking or (lead.chart_metric if lead is not None else None)
    tie = None
    if len(measured) >= 2:
        ordered = sorted(measured, key=lambda r: -accuracy[r.checkpoint.name])
        best, runner = ordered[0], ordered[1]
        basis = f"best true accuracy ({accuracy[best.checkpoint.name]:.1f} %)"
        gap = accuracy[best.checkpoint.name] - accuracy[runner.checkpoint.name]
        margin = f"{gap:.1f} points above {runner.checkpoint.name}"
    elif lead_scores:
        ordered = sorted((r for r in done if r.checkpoint.name in lead_scores),
                         key=lambda r: (-lead_scores[r.checkpoint.name], r.checkpoint.name))
        best = ordered[0]
        runner = ordered[1] if len(ordered) > 1 else None
        basis = f"first by {lead.label}, the lead predictor"
        margin = _probe_margin(best, runner)
        tied = [r.checkpoint.name for r in ordered[1:]
                if lead_scores[r.checkpoint.name] == lead_scores[best.checkpoint.name]]
        if tied:
            tie = (f"tied with {', '.join(tied)} by {lead.label}: taken by name; compare "
                   f"them by the consensus and the baselines")
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
    rec = Recommendation(best.checkpoint, basis, margin=margin, metrics_used=len(used),
                         lead=lead)
    for name, spec in REGISTRY.items():
        if name in best.ranks:
            of = sum(1 for r in done if name in r.ranks)
            rec.ranks.append((spec.label, best.ranks[name], of))
    rec.first_by = sum(1 for m in used if best.ranks.get(m) == 1)
    rec.confidence, rec.consensus_confidence = _confidence(done, lead, used)
    rec.confidence_text = _confidence_text(rec.confidence, best.checkpoint.name, lead)
    rec.cautions = _cautions(done, best, used, warnings, class_counts, ranking)
    if tie:
        rec.cautions.insert(0, tie)
    p_best = rec.confidence.get("p_first", {}).get(best.checkpoint.name)
    if p_best is not None and p_best < 0.5 and len(measured) < 2:
        rec.cautions.insert(0, f"no clear winner: first in only {100 * p_best:.0f} % of "
                               f"resampled image sets")
    return rec


def _resampled(done, metric) -> dict[str, list]:
    values = {r.checkpoint.name: r.resamples.get(metric) for r in done}
    return values if all(values.values()) else {}


def _confidence(done, lead, used) -> tuple[dict, dict]:
    """P(first) and rank intervals for the lead and for the consensus, from the
    resampled scores (empty when a checkpoint lacks them)."""
    if len(done) < 2:
        return {}, {}
    higher = {name: spec.higher_is_better for name, spec in REGISTRY.items()}
    lead_conf = {}
    if lead is not None:
        members = {m: _resampled(done, m) for m in lead.candidate.members}
        if len(members) == 1 and all(members.values()):
            (metric, values), = members.items()
            lead_conf = rank_confidence(values, higher[metric])
        elif len(members) > 1 and any(members.values()):  # over its resampled members
            lead_conf = consensus_confidence({m: v for m, v in members.items() if v}, higher)
    per_metric = {m: _resampled(done, m) for m in used if m not in NOT_RESAMPLED}
    per_metric = {m: v for m, v in per_metric.items() if v}
    consensus_conf = consensus_confidence(per_metric, higher) if per_metric else {}
    return (lead_conf if lead_conf.get("resamples") else {},
            consensus_conf if consensus_conf.get("resamples") else {})


def _confidence_text(confidence: dict, best: str, lead) -> str:
    """"first in 83 % of 30 resamples; X in 12 %"."""
    p_first = confidence.get("p_first") or {}
    if best not in p_first:
        if lead is not None and len(lead.candidate.members) == 1 \
                and lead.chart_metric in NOT_RESAMPLED:
            return f"{lead.label} is not resampled ({NOT_RESAMPLED[lead.chart_metric]})"
        return ""
    others = sorted(((p, n) for n, p in p_first.items() if n != best and p > 0), reverse=True)
    text = f"first in {100 * p_first[best]:.0f} % of {confidence['resamples']} resamples"
    if others:
        text += "; " + ", ".join(f"{n} in {100 * p:.0f} %" for p, n in others[:2])
    return text


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
    # TMI's per-checkpoint flags say its floor counts d, not that it cannot discriminate:
    # they are summed up once below (tmi_floor_caution).
    flagged = [REGISTRY[name].label for name, where in warnings.items()
               if "*" in where or (name != "tmi" and best.checkpoint.name in where)]
    if flagged:
        cautions.append("cannot discriminate here: " + ", ".join(flagged))
    floor = tmi_floor_caution(done)
    if floor:
        cautions.append(floor)
    return cautions
