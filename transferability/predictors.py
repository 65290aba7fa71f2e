"""The site's evidence on which predictor to trust, and the lead it chooses.

Every finished fine-tuning ground truth the site holds is one dataset of evidence (the
latest per dataset content, with at least :data:`MIN_CHECKPOINTS` checkpoints measured).
:func:`transferability.predictor_choice.choose` picks the lead by leave-one-dataset-out
agreement; with fewer than 3 datasets, :data:`DEFAULT_LEAD_MEMBERS` lead (their
consensus), the way of choosing that won the demo study (docs/science.md, "Which predictor to trust"). The lead
ranks every evaluation and is what the recommendation rests on before any truth.

The choice is cached until a ground truth finishes or is replaced.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.core.cache import cache

from .metrics import REGISTRY
from .models import GroundTruth, Status
from .predictor_choice import MIN_DATASETS, Candidate, Choice, DatasetEvidence, choose

__all__ = ["CONSENSUS", "DEFAULT_LEAD_MEMBERS", "DEFAULT_ORDER", "Lead", "flag_vote_study",
           "lead_for_rows", "lead_members", "lead_metric_among", "picked_lead",
           "predictor_report", "site_choice", "site_evidence"]

# Without enough evidence on the site, the demo study decides (docs/science.md section 8):
# its predictors in the order of their mean weighted tau over its four targets, and as the
# lead the way of choosing that won its leave-one-dataset-out check, the consensus of the
# 5 best (those of them scored in an evaluation; the first of DEFAULT_ORDER scored when
# none is).
DEFAULT_ORDER = ("shrinkage_hscore", "gbc", "logme", "hscore", "leep", "nleep",
                 "probe_accuracy", "sfda", "knn_mutual_information", "knn_accuracy", "ncti",
                 "nce", "parc", "transrate", "tmi_relative_floor", "tmi_standardized", "tmi",
                 "tmi_per_dimension")
DEFAULT_LEAD_MEMBERS = DEFAULT_ORDER[:5]
MIN_CHECKPOINTS = 3
# The evaluation page's consensus, judged as a candidate lead like any other: every
# established metric that scores one checkpoint at a time (no form of TMI, no baseline).
ESTABLISHED = "consensus:established"
ESTABLISHED_METRICS = tuple(name for name, spec in REGISTRY.items()
                            if spec.kind == "metric" and spec.variant_of is None
                            and not spec.relative_to_set)
log = logging.getLogger(__name__)
CACHE_SECONDS = 3600


@dataclass(frozen=True)
class Lead:
    """The predictor an evaluation is ranked by and why it was chosen."""

    candidate: Candidate
    basis: str  # one line: why this predictor leads
    chosen_by_evidence: bool

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def label(self) -> str:
        labels = [REGISTRY[m].label for m in self.candidate.members]
        if len(labels) == 1:
            return labels[0]
        if self.candidate.members == ESTABLISHED_METRICS:
            return "the consensus of the established metrics"
        return f"consensus of {', '.join(labels)}"

    @property
    def chart_metric(self) -> str:
        """The registry metric that charts stand for (the lead's best member)."""
        return self.candidate.members[0]

    def scores(self, rows) -> dict[str, float]:
        """checkpoint name -> the lead's score (higher better) for the finished rows.

        Every member's value counts, flagged or not: that is how the lead was judged against
        the ground truths (predictor_choice), and leaving flagged values out of it measured
        worse where it acts (``flag_vote_study``; docs/science.md section 8). The page's
        consensus and "first by N" leave them out (recommendation.consensus_ranks)."""
        return self._scores(rows, voting_only=False)

    def _scores(self, rows, voting_only: bool) -> dict[str, float]:
        scores = {m: {r.checkpoint.name: r.scores[m] for r in rows
                      if r.result.status == Status.DONE and r.scores.get(m) is not None
                      and not (voting_only and m in getattr(r, "flagged", ()))}
                  for m in self.candidate.members}
        return self.candidate.scores(scores, HIGHER_IS_BETTER)


HIGHER_IS_BETTER = {name: spec.higher_is_better for name, spec in REGISTRY.items()}


def _evidence_key() -> str:
    truths = (GroundTruth.objects.filter(status=Status.DONE, mode=GroundTruth.Mode.FINETUNE,
                                         strategy="")
              .order_by("pk").values_list("pk", "finished_at", "evaluation__finished_at"))
    return "predictor-choice:" + hashlib.sha256(repr(list(truths)).encode()).hexdigest()


def references_of(row) -> dict[str, float | None]:
    from .verification import REFERENCES
    return {ref.name: ref.value(row) for ref in REFERENCES}


def site_evidence() -> list[dict]:
    """One entry per dataset content with a finished fine-tuning truth (the latest):
    {"dataset", "evaluation", "evidence": DatasetEvidence, "references"}; cached until a
    ground truth finishes or is replaced (reading it is a ranking per dataset)."""
    key = _evidence_key() + ":entries"
    try:
        entries = cache.get(key)
    except Exception:  # noqa: BLE001 - the cache is an optimisation: work without it
        entries = None
    if entries is None:
        entries = _read_site_evidence()
        try:
            cache.set(key, entries, CACHE_SECONDS)
        except Exception:  # noqa: BLE001
            pass
    return entries


def _read_site_evidence() -> list[dict]:
    from .results import ranked_rows

    out, seen = [], set()
    # Full truths only: one on a budget measured the lead's favourites, a biased sample.
    truths = (GroundTruth.objects.filter(status=Status.DONE, mode=GroundTruth.Mode.FINETUNE,
                                         strategy="")
              .select_related("evaluation__dataset").order_by("-finished_at", "-pk"))
    for truth in truths:
        evaluation = truth.evaluation
        content = evaluation.dataset.content_hash or f"dataset-{evaluation.dataset_id}"
        if content in seen:
            continue
        accuracy = dict(truth.results.filter(status=Status.DONE, accuracy__isnull=False)
                        .values_list("checkpoint__name", "accuracy"))
        if len(accuracy) < MIN_CHECKPOINTS or len(set(accuracy.values())) < 2:
            continue  # too few, or all equal: nothing to agree with
        seen.add(content)
        rows = [r for r in ranked_rows(evaluation, rank=False)
                if r.result.status == Status.DONE and r.checkpoint.name in accuracy]
        scores = {}
        for name in REGISTRY:
            values = {r.checkpoint.name: float(r.scores[name]) for r in rows
                      if r.scores.get(name) is not None}
            if values:
                scores[name] = values
        references = {}
        for row in rows:
            for ref, value in references_of(row).items():
                if value is not None:
                    references.setdefault(ref, {})[row.checkpoint.name] = float(value)
        label = f"{evaluation.dataset.name} (evaluation {evaluation.pk})"
        out.append({"dataset": evaluation.dataset, "evaluation": evaluation,
                    "evidence": DatasetEvidence(label, accuracy, scores),
                    "references": DatasetEvidence(label, accuracy, references)})
    out.reverse()  # oldest first: a stable order for the page
    return out


def site_choice() -> Choice:
    """The chooser's verdict on the site's evidence (cached until the evidence changes)."""
    key = _evidence_key()
    try:
        choice = cache.get(key)
    except Exception:  # noqa: BLE001 - the cache is an optimisation: work without it
        log.warning("cache unavailable; the predictor choice is computed afresh")
        choice = None
    if choice is None:
        evidence = [e["evidence"] for e in site_evidence()]
        choice = choose(evidence, list(REGISTRY), HIGHER_IS_BETTER,
                        fixed={ESTABLISHED: ESTABLISHED_METRICS})
        try:
            cache.set(key, choice, CACHE_SECONDS)
        except Exception:  # noqa: BLE001
            pass
    return choice


def lead_members() -> tuple[str, ...]:
    """The metrics of the site's lead (the default's first without evidence)."""
    choice = site_choice()
    return choice.lead.members if choice.lead is not None else DEFAULT_LEAD_MEMBERS


def lead_metric_among(names) -> str | None:
    """The single registry metric to rank by among ``names`` (stages of one checkpoint):
    the lead's best member, else the best-agreeing one present, else the default."""
    names = set(names)
    choice = site_choice()
    for name in ([*(choice.lead.members[:1] if choice.lead else ())]
                 + choice.ranked_singles + list(DEFAULT_ORDER) + list(REGISTRY)):
        if name in names and not REGISTRY[name].relative_to_set:
            return name
    return None


def lead_for_rows(rows, choice: Choice | None = None) -> Lead | None:
    """The lead for an evaluation's rows: the site's choice when every member was scored
    here, else the best-agreeing predictor that was (the default without evidence)."""
    choice = choice if choice is not None else site_choice()
    scored = {name for row in rows for name, value in row.scores.items() if value is not None}
    if choice.lead is not None:
        n = len(choice.datasets)
        loo = choice.loo_mean
        basis = (f"chosen by agreement with the ground truth of {n} datasets "
                 f"(leave-one-dataset-out weighted τ {loo:.2f})")
        if all(m in scored for m in choice.lead.members):
            return Lead(choice.lead, basis, True)
        for name in choice.ranked_singles:
            if name in scored:
                return Lead(Candidate((name,)), basis + "; the best-agreeing predictor "
                            "scored in this evaluation", True)
    evidence_needed = (f"this site holds ground truth for {len(choice.datasets)} of the "
                       f"{MIN_DATASETS} datasets needed to choose by evidence")
    present = tuple(m for m in DEFAULT_LEAD_MEMBERS if m in scored)
    if len(present) == len(DEFAULT_LEAD_MEMBERS):
        return Lead(Candidate(present), f"the demo study's choice; {evidence_needed}", False)
    if present:
        return Lead(Candidate(present), f"the demo study's choice (the consensus of its 5 best "
                    f"predictors), of which {len(present)} scored here; {evidence_needed}",
                    False)
    for name in DEFAULT_ORDER + tuple(REGISTRY):
        if name in scored and not REGISTRY[name].relative_to_set:
            return Lead(Candidate((name,)), f"the best-agreeing predictor of the demo study "
                        f"scored here; {evidence_needed}", False)
    return None


CONSENSUS = "consensus"  # what a user picks to rank by the established metrics' consensus


def picked_lead(name: str) -> Lead:
    """A predictor the user picked to rank by (a registry name or :data:`CONSENSUS`)."""
    members = ESTABLISHED_METRICS if name == CONSENSUS else (name,)
    return Lead(Candidate(members), "picked on this page; the answer stays with the lead "
                                    "predictor chosen by evidence", False)


OTHER = "a dataset of another user"


def _own(entry, user) -> bool:
    return user is None or user.is_staff or entry["dataset"].owner_id == user.pk


def _dataset_label(entry, user) -> str:
    return entry["evidence"].name if _own(entry, user) else OTHER


def _floor_share(evaluation) -> float | None:
    """The mean share of TMI's floored distances over the evaluation's checkpoints."""
    from .models import MetricScore

    shares = [d["diagnostics"]["floored_share"] for d in MetricScore.objects.filter(
        result__evaluation=evaluation, metric="tmi", layer=MetricScore.PRE_LOGITS,
        result__status=Status.DONE).values_list("details", flat=True)
        if (d or {}).get("diagnostics")]
    return float(sum(shares) / len(shares)) if shares else None


def predictor_report(user=None, evaluations=None) -> dict:
    """Everything the "Which predictor to trust" page and ``manage.py predictor_study``
    show: per predictor (metrics, baselines, references) its agreement with every dataset's
    truth and on average, the chooser's leave-one-dataset-out result per method, the lead.

    ``user``: names the datasets they own (staff: all); others are "another user's".
    ``evaluations``: only the truths of these evaluation ids (the choice made on them)."""
    from .predictor_choice import agreement_table, mean_rows

    entries = site_evidence()
    if evaluations is not None:  # a study of some of the evidence (manage.py predictor_study)
        entries = [e for e in entries if e["evaluation"].pk in set(evaluations)]
    evidence = [e["evidence"] for e in entries]
    choice = site_choice() if evaluations is None else choose(
        evidence, list(REGISTRY), HIGHER_IS_BETTER, fixed={ESTABLISHED: ESTABLISHED_METRICS})
    singles = [Candidate((name,)) for name in REGISTRY]
    table = agreement_table(evidence, singles, HIGHER_IS_BETTER)
    from .verification import REFERENCES
    reference_table = agreement_table([e["references"] for e in entries],
                                      [Candidate((r.name,)) for r in REFERENCES], {})
    datasets = [{"name": e["evidence"].name, "label": _dataset_label(e, user),
                 "own": _own(e, user),
                 "checkpoints": len(e["evidence"].truth),
                 "truth_range": [min(e["evidence"].truth.values()),
                                 max(e["evidence"].truth.values())],
                 "tmi_floored_share": _floor_share(e["evaluation"]),
                 "evaluation": e["evaluation"] if (user is None or
                                                   e["dataset"].owner_id == user.pk) else None}
                for e in entries]
    for d in datasets:  # for column headers: the dataset's name alone
        d["short"] = d["label"].split(" (evaluation ")[0]
    labels = {d["name"]: d["short"] for d in datasets}
    means = mean_rows(table)
    reference_means = mean_rows(reference_table)
    rows = []
    for name, spec in REGISTRY.items():
        if not any(a["checkpoints"] for a in table[name].values()):
            continue
        rows.append({"name": name, "label": spec.label, "kind": spec.kind,
                     "variant_of": spec.variant_of, "per_dataset": table[name],
                     **means[name]})
    for ref in REFERENCES:
        if not any(a["checkpoints"] for a in reference_table[ref.name].values()):
            continue
        rows.append({"name": ref.name, "label": ref.label, "kind": "reference",
                     "variant_of": None, "per_dataset": reference_table[ref.name],
                     **reference_means[ref.name]})
    rows.sort(key=lambda r: (r["weighted_tau"] is None, -(r["weighted_tau"] or 0.0)))
    methods = []
    for method, result in choice.leave_one_out.items():
        folds = [{"dataset": labels.get(d, OTHER), "short": labels.get(d, OTHER), **fold,
                  "pick_label": _pick_label(fold["pick"])}
                 for d, fold in result["folds"].items()]
        methods.append({"method": method, "label": _method_label(method), "mean": result["mean"],
                        "folds": folds, "kept": method == choice.method})
    best_single = max((r for r in rows if r["kind"] != "reference"
                       and r["datasets"] == len(datasets) and r["weighted_tau"] is not None),
                      key=lambda r: r["weighted_tau"], default=None)
    lead = Lead(choice.lead, "", True) if choice.lead is not None else None
    return {"datasets": datasets, "rows": rows, "methods": methods, "choice": choice,
            "lead": lead, "default_lead": Lead(Candidate(DEFAULT_LEAD_MEMBERS), "", False),
            "best_single": best_single, "min_datasets": MIN_DATASETS}


def _pick_label(name: str) -> str:
    """ "GBC" for a single predictor, "GBC + LogME + ..." for a consensus."""
    members = name.removeprefix("consensus:").split("+")
    return " + ".join(REGISTRY[m].label if m in REGISTRY else m for m in members)


def _method_label(method: str) -> str:
    if method == ESTABLISHED:
        return "the consensus of every established metric (fixed)"
    if method == "single":
        return "the best single predictor on the other datasets"
    return f"the consensus of the {method.split(':')[1]} best on the other datasets"


def flag_vote_study(evaluations=None) -> list[dict]:
    """Whether leaving flagged values out of the vote helps, per dataset of evidence: the
    agreement with the truth of the demo study's lead consensus and of the consensus of
    the established metrics, with flagged values voting and left out, and how many cells
    were flagged. (The chooser's study scores each predictor as measured; this is the
    evaluation page's aggregation on top of it.)"""
    from .predictor_choice import agreement
    from .recommendation import consensus_ranks
    from .results import ranked_rows

    out = []
    for entry in site_evidence():
        evaluation = entry["evaluation"]
        if evaluations and evaluation.pk not in evaluations:
            continue
        truth = entry["evidence"].truth
        rows = [r for r in ranked_rows(evaluation, rank=False)
                if r.result.status == Status.DONE and r.checkpoint.name in truth]
        lead = Lead(Candidate(DEFAULT_LEAD_MEMBERS), "", False)
        voted, plain = lead._scores(rows, voting_only=True), lead._scores(rows, False)
        consensus_voted, _ = consensus_ranks(rows, {})
        saved = [(r.flagged, r.vote_ranks) for r in rows]
        for r in rows:
            r.flagged, r.vote_ranks = set(), dict(r.ranks)
        consensus_plain, _ = consensus_ranks(rows, {})
        for r, (flagged, votes) in zip(rows, saved):
            r.flagged, r.vote_ranks = flagged, votes
        out.append({
            "dataset": evaluation.dataset.name, "evaluation": evaluation.pk,
            "flagged_cells": sum(len(r.flagged & set(ESTABLISHED_METRICS)) for r in rows),
            "lead_voting": agreement(plain, truth),
            "lead_left_out": agreement(voted if len(voted) == len(plain) else plain, truth),
            "consensus_voting": agreement({n: -c for n, c in consensus_plain.items()}, truth),
            "consensus_left_out": agreement({n: -c for n, c in consensus_voted.items()},
                                            truth)})
    return out
