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

__all__ = ["consensus_ranks", "flag_votes", "metric_warnings", "recommend", "tmi_floor_caution",
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


def flag_votes(rows, class_counts) -> dict[str, dict[str, str]]:
    """The metrics' warnings (:func:`metric_warnings`), and on each row the metrics flagged
    for it (``row.flagged``) and each metric's rank among the finished rows it is not
    flagged for (``row.vote_ranks``): a flagged value does not vote."""
    from .results import competition_ranks

    warnings = metric_warnings(rows, class_counts)
    done = _done(rows)
    for row in rows:
        # TMI's floor flag says what its value counts (d), not that it cannot be estimated:
        # leaving TMI out for the floored checkpoints only would let it vote for the narrow
        # ones alone. It is said once instead (tmi_floor_caution).
        row.flagged = {name for name, where in warnings.items()
                       if name != "tmi" and row.checkpoint.name in where}
        row.vote_ranks = {}
    for name, spec in REGISTRY.items():
        voting = [r for r in done if r.scores.get(name) is not None and name not in r.flagged]
        ranks = competition_ranks(voting, lambda r: r.scores[name], spec.higher_is_better)
        for row in voting:
            row.vote_ranks[name] = ranks[id(row)]
    return warnings


def consensus_ranks(rows, warnings=None) -> tuple[dict[str, int], list[str]]:
    """({checkpoint name: consensus rank}, metric names used): mean rank over the metrics
    scored for every finished checkpoint and not constant across them. A metric flagged
    for a checkpoint (``row.flagged``) does not vote for it: its ranks are taken among the
    checkpoints it is not flagged for (``row.vote_ranks``), and the checkpoint's mean is
    over the other metrics."""
    rows = _done(rows)
    warnings = warnings if warnings is not None else {}
    used = [name for name, spec in REGISTRY.items() if spec.kind == "metric"
            and spec.variant_of is None and "*" not in warnings.get(name, {})
            and rows and all(name in r.ranks for r in rows)]
    if not used:
        return {}, []
    means = {}
    for r in rows:
        votes = [_vote(r, m) for m in used if _vote(r, m) is not None]
        if votes:
            means[r.checkpoint.name] = float(np.mean(votes))
    ordered = sorted(means.items(), key=lambda item: item[1])
    ranks, previous, rank = {}, None, 0
    for position, (name, mean) in enumerate(ordered, start=1):
        if mean != previous:
            rank, previous = position, mean
        ranks[name] = rank
    return ranks, used


def _vote(row, metric) -> int | None:
    """The metric's rank of the row among those it is not flagged for (rows made outside
    :func:`~transferability.results.ranked_rows` have no flags: their plain rank)."""
    if metric in getattr(row, "flagged", ()):
        return None
    votes = getattr(row, "vote_ranks", None)
    return votes.get(metric) if votes else row.ranks.get(metric)


@dataclass
class Recommendation:
    checkpoint: object
    basis: str
    ranks: list[tuple[str, int, int]] = field(default_factory=list)  # (label, rank, of)
    margin: str = ""
    cautions: list[str] = field(default_factory=list)
    first_by: int = 0  # how many of the metrics put it first
    metrics_used: int = 0  # how many metrics voted for it (not flagged for it)
    lead: object = None  # the predictors.Lead the evaluation is ranked by
    # {"resamples", "p_first": {name: p}, "rank_interval": {name: [lo, hi]}} for the lead
    # and for the consensus; empty when no resamples were made.
    confidence: dict = field(default_factory=dict)
    consensus_confidence: dict = field(default_factory=dict)
    confidence_text: str = ""
    tied_with: list[str] = field(default_factory=list)  # tied first by the answer's basis
    separation: str = ""  # what separates the tied: "consensus rank 1 against 4; ..."
    truth_note: str = ""  # a ground truth still partial: "5 of 14 measured; ..."
    flagged: list[str] = field(default_factory=list)  # labels that do not vote for it

    def payload(self) -> dict:
        """The API's ``recommendation``."""
        lead = self.lead
        return {"checkpoint": self.checkpoint.name, "basis": self.basis, "margin": self.margin,
                "lead": lead.name if lead else None,
                "lead_label": lead.label if lead else None,
                "lead_basis": lead.basis if lead else None,
                "tied_with": list(self.tied_with), "separation": self.separation,
                "truth_note": self.truth_note,
                "first_by": self.first_by, "metrics_voting": self.metrics_used,
                "flagged": list(self.flagged),
                "p_first": self.confidence.get("p_first", {}),
                "rank_interval": self.confidence.get("rank_interval", {}),
                "resamples": self.confidence.get("resamples", 0),
                "consensus_p_first": self.consensus_confidence.get("p_first", {}),
                "consensus_rank_interval": self.consensus_confidence.get("rank_interval", {}),
                "confidence": self.confidence_text,
                "cautions": list(self.cautions)}


def _truth_state(truth: dict | None, done) -> tuple[dict[str, float], bool, str]:
    """(true accuracies of finished checkpoints, whether they are final, the note for a
    partial truth). Final: the truth is done, or the best measured cannot be caught up
    (100 %). A partial truth claims no best."""
    if not truth:
        return {}, False, ""
    names = {r.checkpoint.name for r in done}
    accuracy = {n: a for n, a in (truth.get("accuracy") or {}).items() if n in names}
    results = [r for r in truth.get("results") or [] if r["checkpoint"] in names]
    total = len(results) or len(accuracy)
    failed = sum(r["status"] == Status.FAILED for r in results)
    if truth.get("status", Status.DONE) == Status.DONE:
        return accuracy, True, ""
    if accuracy and max(accuracy.values()) >= 100.0:
        return accuracy, True, ""
    if not results:
        return {}, False, ""
    note = f"true accuracy: {len(accuracy)} of {total} measured"
    if failed:
        note += f", {failed} failed"
    if truth.get("status") == Status.FAILED:
        note += "; the measurement stopped"
    elif accuracy:
        top = max(accuracy, key=accuracy.get)
        note += (f"; the highest so far is {top} at {accuracy[top]:.1f} %, not final until "
                 f"the rest are measured")
    else:
        note += "; until they are, the answer rests on the predictors"
    return {}, False, note


def _ordered(candidates, key_score, consensus) -> list:
    """Best first by ``key_score`` (higher better); ties broken by the consensus rank,
    then the linear probe, then the name (results.tie_order)."""
    def key(r):
        probe = r.scores.get(PROBE)
        return (-key_score(r), consensus.get(r.checkpoint.name, 10**9),
                -probe if probe is not None else float("inf"), r.checkpoint.name)
    return sorted(candidates, key=key)


def _next_after(ordered, tied):
    """The first checkpoint after the best and those tied with it (None when none)."""
    rest = ordered[1 + len(tied):]
    return rest[0] if rest else None


def _separation(best, other, consensus, used) -> str:
    """What tells two tied checkpoints apart, as the page says it."""
    parts = []
    a, b = consensus.get(best.checkpoint.name), consensus.get(other.checkpoint.name)
    if a is not None and b is not None and a != b:
        parts.append(f"consensus rank {a} against {b}")
    firsts = [sum(1 for m in used if _vote(r, m) == 1) for r in (best, other)]
    if used and firsts[0] != firsts[1]:
        parts.append(f"first by {firsts[0]} of {len(used)} metrics against {firsts[1]}")
    pa, pb = best.scores.get(PROBE), other.scores.get(PROBE)
    if pa is not None and pb is not None and pa != pb:
        parts.append(f"linear probe {100 * pa:.1f} % against {100 * pb:.1f} %")
    return "; ".join(parts)


def recommend(rows, class_counts, truth: dict | None = None,
              ranking: str | None = None, lead=None,
              leakage: dict[str, str] | None = None) -> Recommendation | None:
    """The checkpoint to take, with the evidence; None when nothing finished.

    ``lead``: the :class:`~transferability.predictors.Lead` that ranks the evaluation;
    ``ranking``: a single metric compared with the linear probe in the cautions (the
    lead's chart metric when left out); ``leakage``: {checkpoint name: reason} of those
    trained on this data (:func:`transferability.leakage.leaked_checkpoints`), which the
    answer passes over while another is there (their scores measure memory of these
    images), with a caution.
    """
    everyone = _done(rows)
    leakage = leakage or {}
    done = [r for r in everyone if r.checkpoint.name not in leakage] or everyone
    if not done:
        return None
    warnings = metric_warnings(rows, class_counts)
    consensus, used = consensus_ranks(rows, warnings)
    accuracy, final, truth_note = _truth_state(truth, done)
    measured = [r for r in done if r.checkpoint.name in accuracy]
    lead_scores = lead.scores(done) if lead is not None else {}
    ranking = ranking or (lead.chart_metric if lead is not None else None)
    tied, by = [], ""
    if final and len(measured) >= 2:
        ordered = _ordered(measured, lambda r: accuracy[r.checkpoint.name], consensus)
        best, runner = ordered[0], ordered[1]
        basis = f"best true accuracy, {accuracy[best.checkpoint.name]:.1f} %"
        if len(measured) < len(done):
            basis += f", of the {len(measured)} of {len(done)} measured"
        gap = accuracy[best.checkpoint.name] - accuracy[runner.checkpoint.name]
        margin = f"{gap:.1f} points above {runner.checkpoint.name}"
        # Within noise of the best (verification.tied_with_best), else exactly equal.
        noise = set((truth or {}).get("tied") or ())
        tied = [r for r in ordered[1:] if r.checkpoint.name in noise
                or accuracy[r.checkpoint.name] == accuracy[best.checkpoint.name]]
        by = "true accuracy within noise" if noise & {r.checkpoint.name for r in tied} \
            else "true accuracy"
        if tied:
            errors = (truth or {}).get("standard_error") or {}
            names = [best.checkpoint.name] + [r.checkpoint.name for r in tied]
            margin = "; ".join(f"{n} {accuracy[n]:.1f} ± {errors[n]:.1f} %" if n in errors
                               else f"{n} {accuracy[n]:.1f} %" for n in names)
    elif lead_scores:
        ordered = _ordered([r for r in done if r.checkpoint.name in lead_scores],
                           lambda r: lead_scores[r.checkpoint.name], consensus)
        best = ordered[0]
        tied = [r for r in ordered[1:]
                if lead_scores[r.checkpoint.name] == lead_scores[best.checkpoint.name]]
        runner = _next_after(ordered, tied)
        basis = f"first by {lead.label}, the lead predictor"
        margin = _probe_margin(best, runner) if runner or not tied else ""
        by = lead.label
    elif consensus:
        ordered = _ordered([r for r in done if r.checkpoint.name in consensus],
                           lambda r: -consensus[r.checkpoint.name], {})
        best = ordered[0]
        tied = [r for r in ordered[1:]
                if consensus[r.checkpoint.name] == consensus[best.checkpoint.name]]
        basis = f"best consensus rank over {len(used)} metrics"
        runner = _next_after(ordered, tied)
        margin = _probe_margin(best, runner) if runner or not tied else ""
        by = "the consensus"
    else:
        ranked = [r for r in done if r.rank is not None]
        if not ranked:
            return None
        ordered = sorted(ranked, key=lambda r: r.rank)
        best = ordered[0]
        runner = ordered[1] if len(ordered) > 1 else None
        basis = "best rank"
        margin = _probe_margin(best, runner)
    voting = [m for m in used if _vote(best, m) is not None]
    rec = Recommendation(best.checkpoint, basis, margin=margin, metrics_used=len(voting),
                         lead=lead, truth_note=truth_note)
    for name, spec in REGISTRY.items():
        if name in best.ranks:
            of = sum(1 for r in done if name in r.ranks)
            rec.ranks.append((spec.label, best.ranks[name], of))
    rec.flagged = [REGISTRY[m].label for m in REGISTRY if m in getattr(best, "flagged", ())]
    rec.first_by = sum(1 for m in voting if _vote(best, m) == 1)
    rec.confidence, rec.consensus_confidence = _confidence(done, lead, used)
    if by.startswith("true accuracy") or (final and len(measured) >= 2):
        # The answer rests on the truth: say how sure the lead was of its own pick.
        p_first = rec.confidence.get("p_first") or {}
        pick = max(p_first, key=p_first.get) if p_first else None
        rec.confidence_text = (
            f"before the truth, the lead put {pick} first in {100 * p_first[pick]:.0f} % of "
            f"{rec.confidence['resamples']} resamples" if pick else "")
    else:
        rec.confidence_text = _confidence_text(rec.confidence, best.checkpoint.name, lead)
    rec.cautions = _cautions(done, best, used, warnings, class_counts, ranking)
    if leakage:
        from .leakage import leakage_cautions

        passed_over = [r.checkpoint.name for r in everyone if r not in done]
        rec.cautions[:0] = leakage_cautions(
            {n: why for n, why in leakage.items() if n in {r.checkpoint.name for r in everyone}},
            best.checkpoint.name)
        if passed_over:
            rec.cautions.insert(0, f"left out of this answer: {', '.join(passed_over)}, "
                                   f"trained on this data")
    if tied:
        rec.tied_with = [r.checkpoint.name for r in tied]
        rec.separation = _separation(best, tied[0], consensus if by != "the consensus"
                                     else {}, used)
        if by.startswith("true accuracy"):
            # Measured: the higher mean is taken, the predictors' view beside it.
            gap = accuracy[best.checkpoint.name] - accuracy[tied[0].checkpoint.name]
            rec.separation = "; ".join(p for p in (
                f"its mean is {gap:.1f} points higher, within the noise", rec.separation) if p)
        names = " and ".join([best.checkpoint.name] + rec.tied_with)
        rec.basis = f"tied first by {by} with {', '.join(rec.tied_with)}"
        rec.cautions.insert(0, f"a tie: {names} are equal by {by}; " + (
            f"{best.checkpoint.name} is taken because {rec.separation}" if rec.separation
            else "nothing else separates them, so the first by name is shown: look at both"))
    p_best = rec.confidence.get("p_first", {}).get(best.checkpoint.name)
    if p_best is not None and p_best < 0.5 and not (final and len(measured) >= 2):
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
    if used and best.ranks and sum(1 for m in used if _vote(best, m) == 1) <= len(used) / 2:
        firsts = {}
        for r in done:
            for m in used:
                if _vote(r, m) == 1:
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
    constant = [REGISTRY[name].label for name, where in warnings.items() if "*" in where]
    if constant:
        cautions.append("cannot discriminate here: " + ", ".join(constant))
    flagged = [REGISTRY[name].label for name, where in warnings.items()
               if "*" not in where and name != "tmi" and best.checkpoint.name in where]
    if flagged:
        cautions.append(f"{', '.join(flagged)} cannot be estimated for "
                        f"{best.checkpoint.name} here, so they do not vote for it")
    floor = tmi_floor_caution(done)
    if floor:
        cautions.append(floor)
    return cautions
