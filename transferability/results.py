"""Reading an evaluation's results as ranked rows, for pages, the API and exports."""

from dataclasses import dataclass, field

from django.db.models import Prefetch

from .metrics import REGISTRY, ranking_metric
from .models import CheckpointResult, Evaluation, MetricScore, Status


@dataclass
class ResultRow:
    result: CheckpointResult
    scores: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float | None] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    rank: int | None = None  # by the evaluation's ranking metric (rows_ranking_metric)
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


def ranked_rows(evaluation: Evaluation) -> list[ResultRow]:
    # Scores in the order they were written: stages in network order.
    scores = Prefetch("scores", queryset=MetricScore.objects.order_by("pk"))
    results = list(evaluation.results.select_related("checkpoint").prefetch_related(scores))
    rows = []
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
            else:
                row.stage_scores.setdefault(score.layer, {})[score.metric] = score.value
        rows.append(row)
    for name, spec in REGISTRY.items():
        scored = [r for r in rows if r.scores.get(name) is not None
                  and r.result.status == Status.DONE]
        scored.sort(key=lambda r: r.scores[name], reverse=spec.higher_is_better)
        previous, rank = None, 0
        for position, row in enumerate(scored, start=1):
            if row.scores[name] != previous:
                rank, previous = position, row.scores[name]
            row.ranks[name] = rank
    ranking = rows_ranking_metric(rows)
    for row in rows:
        row.rank = row.ranks.get(ranking) if ranking else None
    rows.sort(key=lambda r: (r.rank is None, r.rank or 0, r.checkpoint.name))
    return rows


def rows_ranking_metric(rows: list[ResultRow]) -> str | None:
    """One metric ranks a whole evaluation (see metrics.ranking_metric)."""
    return ranking_metric(name for row in rows for name in row.ranks)
