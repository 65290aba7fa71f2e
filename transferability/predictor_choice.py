"""Which predictor to trust: chosen by agreement with measured ground truth.

No transferability metric wins everywhere (Agostinelli et al., "How stable are
transferability metrics evaluations?", ECCV 2022), so the predictor the app leads with is
chosen by evidence: the datasets whose checkpoints' true accuracies were measured. Each
dataset is one :class:`DatasetEvidence` (the true accuracies and every predictor's scores).

Candidates are the single predictors, the consensus of the k predictors that agreed best
(mean rank, ranked again), and aggregates fixed in advance (the consensus of the
established metrics). A *method* of choosing ("the best single predictor", "the
consensus of the 3 best") is judged leave-one-dataset-out: chosen on the other datasets,
its pick is scored on the dataset left out. The method with the best mean weighted tau
over the left-out datasets is kept (ties go to the simpler one: a single predictor) and
applied to all the evidence; an aggregate is therefore kept only where it wins that check.
With fewer than :data:`MIN_DATASETS` datasets there is no check to make and the caller's
documented default applies.

Plain functions over dicts and arrays; no Django.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .ranking import ConstantInputError, kendall_tau, top_k_relative_accuracy, weighted_tau

__all__ = ["DatasetEvidence", "Candidate", "Choice", "MIN_DATASETS", "CONSENSUS_SIZES",
           "agreement", "agreement_table", "choose", "mean_rows"]

MIN_DATASETS = 3
CONSENSUS_SIZES = (3, 5)
MEASURES = ("weighted_tau", "kendall_tau", "top1_relative_accuracy")


@dataclass(frozen=True)
class DatasetEvidence:
    """One dataset's ground truth and every predictor's scores on its checkpoints."""

    name: str
    truth: Mapping[str, float]  # checkpoint -> true accuracy (%)
    scores: Mapping[str, Mapping[str, float]]  # predictor -> checkpoint -> score


@dataclass(frozen=True)
class Candidate:
    """A single predictor (one member) or the consensus of several."""

    members: tuple[str, ...]

    @property
    def name(self) -> str:
        if len(self.members) == 1:
            return self.members[0]
        return "consensus:" + "+".join(self.members)

    @property
    def is_single(self) -> bool:
        return len(self.members) == 1

    def scores(self, scores: Mapping[str, Mapping[str, float]],
               higher_is_better: Mapping[str, bool]) -> dict[str, float]:
        """checkpoint -> score, higher better: the member's score (its sign turned when
        lower is better), or minus the mean rank over the members that scored every
        checkpoint here (LEEP scores only those with a source head)."""
        members = self.members
        if len(members) > 1:  # a consensus of the members that scored every checkpoint here
            members = tuple(m for m in members if scores.get(m))
            everyone = set().union(*(set(scores[m]) for m in members)) if members else set()
            complete = tuple(m for m in members if set(scores[m]) == everyone)
            members = complete or members
        per_member = [scores.get(m, {}) for m in members]
        names = set.intersection(*(set(s) for s in per_member)) if per_member else set()
        names = sorted(n for n in names if all(np.isfinite(s[n]) for s in per_member))
        if not names:
            return {}
        if self.is_single:
            sign = 1.0 if higher_is_better.get(self.members[0], True) else -1.0
            return {n: sign * float(per_member[0][n]) for n in names}
        from scipy.stats import rankdata
        ranks = []
        for member, values in zip(members, per_member):
            vector = np.array([values[n] for n in names], dtype=np.float64)
            if not higher_is_better.get(member, True):
                vector = -vector
            ranks.append(rankdata(-vector, method="min"))
        mean_rank = np.mean(ranks, axis=0)
        return {n: -float(r) for n, r in zip(names, mean_rank)}


def agreement(candidate_scores: Mapping[str, float], truth: Mapping[str, float]) -> dict:
    """{weighted_tau, kendall_tau, top1_relative_accuracy, checkpoints} of one score vector
    against the true accuracies (None where undefined)."""
    names = [n for n in candidate_scores if n in truth]
    out = {"checkpoints": len(names), "weighted_tau": None, "kendall_tau": None,
           "top1_relative_accuracy": None, "pick": None}
    if len(names) < 2:
        return out
    s = [candidate_scores[n] for n in names]
    t = [truth[n] for n in names]
    for key, measure in (("weighted_tau", weighted_tau), ("kendall_tau", kendall_tau)):
        try:
            out[key] = measure(s, t)
        except ConstantInputError:
            out[key] = None
    if max(t) > 0:
        out["top1_relative_accuracy"] = top_k_relative_accuracy(s, t, 1)
    # The pick, ties against the predictor as top_k_relative_accuracy resolves them.
    order = sorted(names, key=lambda n: (-candidate_scores[n], truth[n]))
    out["pick"] = order[0]
    return out


def agreement_table(evidence: Iterable[DatasetEvidence], candidates: Iterable[Candidate],
                    higher_is_better: Mapping[str, bool]) -> dict[str, dict[str, dict]]:
    """{candidate name: {dataset name: agreement}}."""
    evidence = list(evidence)
    return {c.name: {e.name: agreement(c.scores(e.scores, higher_is_better), e.truth)
                     for e in evidence} for c in candidates}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def mean_rows(table: Mapping[str, Mapping[str, dict]]) -> dict[str, dict]:
    """{candidate: {measure: mean over datasets, "datasets": how many had a value}}."""
    out = {}
    for name, per_dataset in table.items():
        row = {m: _mean(a[m] for a in per_dataset.values()) for m in MEASURES}
        row["datasets"] = sum(a["weighted_tau"] is not None for a in per_dataset.values())
        row["worst_top1_relative_accuracy"] = min(
            (a["top1_relative_accuracy"] for a in per_dataset.values()
             if a["top1_relative_accuracy"] is not None), default=None)
        out[name] = row
    return out


def _ranked_singles(table: Mapping[str, Mapping[str, dict]], datasets: list[str]) -> list[str]:
    """Single predictors by mean weighted tau over ``datasets``, best first, from their
    agreement ``table`` ({single: {dataset: agreement}}, computed once); a predictor must be
    scored on every one of them (ties: the table's order)."""
    # Scored on every dataset (at least 2 checkpoints each); where its tau is undefined (its
    # scores constant there: it cannot tell the checkpoints apart) it counts as 0.
    eligible = [s for s, row in table.items() if all(row[d]["checkpoints"] >= 2 for d in datasets)]
    mean = {s: float(np.mean([table[s][d]["weighted_tau"] or 0.0 for d in datasets]))
            for s in eligible}
    return sorted(eligible, key=lambda s: -mean[s])


def _apply(method: str, table, datasets: list[str], fixed=None) -> Candidate | None:
    if fixed and method in fixed:  # an aggregate fixed in advance: nothing to choose
        return Candidate(tuple(fixed[method]))
    ranked = _ranked_singles(table, datasets)
    if not ranked:
        return None
    if method == "single":
        return Candidate((ranked[0],))
    size = int(method.split(":")[1])
    if len(ranked) < size:
        return None
    return Candidate(tuple(ranked[:size]))


@dataclass
class Choice:
    """The outcome: the lead candidate, the method that chose it, and the evidence."""

    lead: Candidate | None
    method: str  # "single", "consensus:3", ...; "default" without enough evidence
    datasets: list[str]
    # method -> {"mean": LOO mean weighted tau, "folds": {left-out dataset: (pick, wtau)}}
    leave_one_out: dict[str, dict] = field(default_factory=dict)
    ranked_singles: list[str] = field(default_factory=list)  # best first, on all evidence

    @property
    def loo_mean(self) -> float | None:
        return (self.leave_one_out.get(self.method) or {}).get("mean")


def choose(evidence: Iterable[DatasetEvidence], singles: Iterable[str],
           higher_is_better: Mapping[str, bool],
           consensus_sizes: Iterable[int] = CONSENSUS_SIZES,
           fixed: Mapping[str, tuple[str, ...]] | None = None) -> Choice:
    """Choose the lead by leave-one-dataset-out agreement (module docstring).

    ``fixed``: aggregates defined in advance, {method name: member predictors} (the
    consensus of the established metrics), judged the same way.
    """
    evidence = list(evidence)
    singles = list(singles)
    fixed = dict(fixed or {})
    names = [e.name for e in evidence]
    if len(evidence) < MIN_DATASETS:
        return Choice(None, "default", names)
    methods = ["single"] + [f"consensus:{k}" for k in consensus_sizes] + list(fixed)
    # Each single predictor's agreement with each dataset, once; the folds read it.
    table = agreement_table(evidence, [Candidate((s,)) for s in singles], higher_is_better)
    loo = {}
    for method in methods:
        folds, values = {}, []
        for held_out in evidence:
            training = [name for name in names if name != held_out.name]
            picked = _apply(method, table, training, fixed)
            if picked is None:
                folds = None
                break
            result = agreement(picked.scores(held_out.scores, higher_is_better), held_out.truth)
            folds[held_out.name] = {"pick": picked.name, "weighted_tau": result["weighted_tau"],
                                    "top1_relative_accuracy": result["top1_relative_accuracy"]}
            values.append(result["weighted_tau"] if result["weighted_tau"] is not None else 0.0)
        if folds is not None:
            loo[method] = {"mean": float(np.mean(values)), "folds": folds}
    # A way of choosing that cannot choose on all the evidence together is no candidate.
    loo = {m: r for m, r in loo.items() if _apply(m, table, names, fixed) is not None}
    if not loo:
        return Choice(None, "default", names)
    # Best mean; on a tie (to 1e-9) the earlier, simpler method.
    best = max(loo, key=lambda m: (round(loo[m]["mean"], 9), -methods.index(m)))
    return Choice(_apply(best, table, names, fixed), best, names, loo,
                  _ranked_singles(table, names))
