"""Reading an evaluation's results as ranked rows, for pages, the API and exports."""

from dataclasses import dataclass, field

from django.db.models import Prefetch

from .metrics import REGISTRY
from .models import CheckpointResult, Evaluation, MetricScore, Status


@dataclass
class ResultRow:
    result: CheckpointResult
    scores: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float | None] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    # Metrics flagged for this checkpoint (recommendation.metric_warnings: e.g. d at least
    # the smallest class for the covariance metrics): their values do not vote for it.
    flagged: set[str] = field(default_factory=set)
    # Each metric's rank among the finished checkpoints it is not flagged for: what the
    # consensus and "first by N" count.
    vote_ranks: dict[str, int] = field(default_factory=dict)
    rank: int | None = None  # by the lead predictor (transferability.predictors)
    lead_score: float | None = None  # the lead's score, higher better
    # What a metric said about its own value (TMI: the share of floored distances).
    diagnostics: dict[str, dict] = field(default_factory=dict)
    # Each metric's value on the evaluation's resamples (metrics.resampling), when made.
    resamples: dict[str, list] = field(default_factory=dict)
    stage_scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
    # How a pre-logits score was approximated ("k-NN on 10,000 of 50,000 samples").
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def checkpoint(self):
        return self.result.checkpoint


def metric_columns(rows: list[ResultRow]) -> list:
    """Registry entries that have at least one score in these rows, registry order."""
    present = {name for row in rows for name in row.scores}
    return [spec for name, spec in REGISTRY.items() if name in present]


def relative_to_set(evaluation: Evaluation) -> list[str]:
    """The evaluation's metrics whose scores are relative to its set of checkpoints."""
    chosen = set(evaluation.metrics or REGISTRY)
    return [name for name, spec in REGISTRY.items() if spec.relative_to_set and name in chosen]


def approximation_notes(rows: list[ResultRow]) -> list[tuple]:
    """(spec, note) for every distinct note in these rows, registry order."""
    notes = {}
    for row in rows:
        for name, note in row.notes.items():
            notes.setdefault((name, note), None)
    return [(spec, note) for name, spec in REGISTRY.items()
            for (noted, note) in notes if noted == name]


class RankedRows(list):
    """An evaluation's rows, with the lead predictor that ranked them (``lead``), the
    metrics' warnings and the consensus (:mod:`transferability.recommendation`)."""

    lead = None  # what ranks the rows: the lead predictor, or the one the user picked
    evidence_lead = None  # the lead predictor chosen by evidence (what the answer rests on)
    warnings: dict = {}
    consensus: dict = {}
    consensus_metrics: list = []


def competition_ranks(rows, value, higher_is_better: bool = True) -> dict[int, int]:
    """{id(row): competition rank} by ``value(row)`` (ties share the better rank)."""
    ordered = sorted(rows, key=value, reverse=higher_is_better)
    ranks, previous, current = {}, None, 0
    for position, row in enumerate(ordered, start=1):
        if value(row) != previous:
            current, previous = position, value(row)
        ranks[id(row)] = current
    return ranks


def ranked_rows(evaluation: Evaluation, rank: bool = True,
                rank_by: str | None = None) -> RankedRows:
    """The evaluation's rows with every metric's ranks; with ``rank``, ranked and sorted by
    the lead predictor (:func:`transferability.predictors.lead_for_rows`), kept as
    ``rows.lead`` so that the page, the API and the exports ask for it once.

    ``rank_by``: a predictor the user picked instead (:func:`rank_choices`: a registry
    name or "consensus"); ``rows.evidence_lead`` keeps the lead chosen by evidence."""
    # Scores in the order they were written: stages in network order.
    scores = Prefetch("scores", queryset=MetricScore.objects.order_by("pk"))
    results = list(evaluation.results.select_related("checkpoint").prefetch_related(scores))
    rows = RankedRows()
    for result in results:
        row = ResultRow(result)
        for score in result.scores.all():
            if score.layer == MetricScore.PRE_LOGITS:
                row.scores[score.metric] = score.value
                row.seconds[score.metric] = score.seconds
                if score.error:
                    row.errors[score.metric] = score.error
                if score.details.get("note"):
                    row.notes[score.metric] = score.details["note"]
                if score.details.get("diagnostics"):
                    row.diagnostics[score.metric] = score.details["diagnostics"]
                if score.details.get("resamples"):
                    row.resamples[score.metric] = score.details["resamples"]
            else:
                row.stage_scores.setdefault(score.layer, {})[score.metric] = score.value
        rows.append(row)
    from .recommendation import consensus_ranks, flag_votes

    for name, spec in REGISTRY.items():
        scored = [r for r in rows if r.scores.get(name) is not None
                  and r.result.status == Status.DONE]
        by_score = competition_ranks(scored, lambda r: r.scores[name], spec.higher_is_better)
        for row in scored:
            row.ranks[name] = by_score[id(row)]
    rows.warnings = flag_votes(rows, evaluation.dataset.class_counts)
    rows.consensus, rows.consensus_metrics = consensus_ranks(rows, rows.warnings)
    if not rank:
        return rows
    from .predictors import lead_for_rows

    from .predictors import picked_lead

    rows.evidence_lead = lead_for_rows(rows)
    lead = rows.lead = (picked_lead(rank_by) if rank_by and rank_by in rank_choices(rows)
                        else rows.evidence_lead)
    scores = lead.scores(rows) if lead else {}
    scored = [r for r in rows if r.checkpoint.name in scores]
    by_lead = competition_ranks(scored, lambda r: scores[r.checkpoint.name])
    for row in scored:
        row.lead_score = scores[row.checkpoint.name]
        row.rank = by_lead[id(row)]
    # Within a tie by the lead, the consensus (flagged values left out), then the linear
    # probe, then the name: the first row is the answer's pick (recommendation.recommend).
    rows.sort(key=lambda r: tie_order(r, rows.consensus))
    return rows


def rank_choices(rows) -> dict[str, str]:
    """{name: label} of what the rows can be ranked by besides the lead: the consensus of
    the established metrics, then every metric and baseline scored here."""
    from .predictors import CONSENSUS

    scored = {name for row in rows for name, value in row.scores.items() if value is not None}
    choices = {CONSENSUS: "the consensus of the established metrics"} if scored else {}
    choices.update({name: spec.label for name, spec in REGISTRY.items() if name in scored})
    return choices


def tie_order(row, consensus) -> tuple:
    """Sort key: the lead's rank, then the consensus rank, then the linear probe (higher
    first), then the name."""
    probe = row.scores.get("probe_accuracy")
    return (row.rank is None, row.rank or 0, consensus.get(row.checkpoint.name, 10**9),
            -probe if probe is not None else float("inf"), row.checkpoint.name)


def lead_of(rows):
    """The lead that ranked these rows (:func:`ranked_rows`), else the one they would get."""
    if isinstance(rows, RankedRows) and rows.lead is not None:
        return rows.lead
    from .predictors import lead_for_rows

    return lead_for_rows(rows)


def rows_ranking_metric(rows: list[ResultRow]) -> str | None:
    """The registry metric that stands for the lead in charts (its best member)."""
    lead = lead_of(rows)
    return lead.chart_metric if lead else None
