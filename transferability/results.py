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
    """An evaluation's rows, with the lead predictor that ranked them (``lead``)."""

    lead = None


def ranked_rows(evaluation: Evaluation, rank: bool = True) -> RankedRows:
    """The evaluation's rows with every metric's ranks; with ``rank``, ranked and sorted by
    the lead predictor (:func:`transferability.predictors.lead_for_rows`), kept as
    ``rows.lead`` so that the page, the API and the exports ask for it once."""
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
    for name, spec in REGISTRY.items():
        scored = [r for r in rows if r.scores.get(name) is not None
                  and r.result.status == Status.DONE]
        scored.sort(key=lambda r: r.scores[name], reverse=spec.higher_is_better)
        previous, metric_rank = None, 0
        for position, row in enumerate(scored, start=1):
            if row.scores[name] != previous:
                metric_rank, previous = position, row.scores[name]
            row.ranks[name] = metric_rank
    if not rank:
        return rows
    from .predictors import lead_for_rows

    lead = rows.lead = lead_for_rows(rows)
    scores = lead.scores(rows) if lead else {}
    ordered = sorted((r for r in rows if r.checkpoint.name in scores),
                     key=lambda r: -scores[r.checkpoint.name])
    previous, position_rank = None, 0
    for position, row in enumerate(ordered, start=1):
        row.lead_score = scores[row.checkpoint.name]
        if row.lead_score != previous:
            position_rank, previous = position, row.lead_score
        row.rank = position_rank
    rows.sort(key=lambda r: (r.rank is None, r.rank or 0, r.checkpoint.name))
    return rows


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
