"""Two or more evaluations side by side: the same checkpoints, ranked in each.

Scores of one metric are comparable within an evaluation, not across datasets; ranks are.
The comparison therefore shows each evaluation's ranking metric and linear-probe accuracy
with their ranks, and how far the evaluations' orders agree (Kendall's tau over the
checkpoints both finished).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .metrics import REGISTRY
from .models import Evaluation
from .ranking import ConstantInputError, kendall_tau
from .results import ranked_rows, rows_ranking_metric

__all__ = ["MAX_COMPARED", "CompareError", "parse_ids", "Comparison", "compare"]

MAX_COMPARED = 8
PROBE = "probe_accuracy"


class CompareError(ValueError):
    """The ids do not name evaluations that can be compared; the message says why."""


def parse_ids(values: list[str]) -> list[int]:
    """Evaluation ids from ``?ids=1,2`` or ``?ids=1&ids=2``, in order, without repeats."""
    ids = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or not 0 < int(part) < 2**63:
                raise CompareError(f"{part!r} is not an evaluation id")
            if int(part) not in ids:
                ids.append(int(part))
    return ids


@dataclass
class Column:
    evaluation: Evaluation
    metric: str | None  # the evaluation's ranking metric
    label: str
    rows: dict[int, object] = field(default_factory=dict)  # checkpoint id -> ResultRow
    has_probe: bool = False


@dataclass
class Comparison:
    columns: list[Column]
    # {"checkpoint", "mean_rank", "cells"}: per column its ranking-metric cell, then its probe
    # cell if it has one; a cell is {"value", "rank", "of", "status", "probe"} or {"absent"}.
    checkpoints: list[dict]
    datasets_differ: bool
    same_content: bool  # different dataset rows with the same images
    metrics_differ: bool
    agreement: list[dict]  # {"a", "b", "tau", "common"} per pair of evaluations
    dataset_names: list[str] = field(default_factory=list)  # distinct, in column order


def compare(evaluations: list[Evaluation]) -> Comparison:
    columns = []
    for evaluation in evaluations:
        rows = ranked_rows(evaluation)
        metric = rows_ranking_metric(rows)
        columns.append(Column(
            evaluation=evaluation, metric=metric,
            label=REGISTRY[metric].label if metric else "",
            rows={row.checkpoint.pk: row for row in rows},
            has_probe=any(PROBE in row.ranks for row in rows)))
    checkpoints = {}
    for column in columns:
        for row in column.rows.values():
            checkpoints.setdefault(row.checkpoint.pk, row.checkpoint)
    table = []
    for pk, checkpoint in checkpoints.items():
        cells, ranks = [], []
        for column in columns:
            row = column.rows.get(pk)
            names = [column.metric] + ([PROBE] if column.has_probe else [])
            for name in names:
                if row is None:
                    cells.append({"absent": True})
                    continue
                rank = row.ranks.get(name) if name else None
                if name == column.metric and rank is not None:
                    ranks.append(rank)
                value = row.scores.get(name) if name else None
                cells.append({
                    "value": (100.0 * value if name == PROBE and value is not None else value),
                    "rank": rank, "status": row.result.status, "probe": name == PROBE,
                    "of": sum(1 for r in column.rows.values() if name in r.ranks)})
        table.append({"checkpoint": checkpoint, "cells": cells,
                      "mean_rank": sum(ranks) / len(ranks) if ranks else None})
    table.sort(key=lambda t: (t["mean_rank"] is None, t["mean_rank"] or 0, t["checkpoint"].name))
    datasets = {c.evaluation.dataset_id for c in columns}
    hashes = {c.evaluation.dataset.content_hash for c in columns}
    return Comparison(
        columns=columns, checkpoints=table,
        datasets_differ=len(datasets) > 1,
        same_content=len(datasets) > 1 and len(hashes) == 1,
        metrics_differ=len({c.metric for c in columns}) > 1,
        agreement=_agreement(columns),
        dataset_names=list(dict.fromkeys(c.evaluation.dataset.name for c in columns)),
    )


def _agreement(columns: list[Column]) -> list[dict]:
    """Kendall's tau between every two evaluations' ranking-metric orders, over the
    checkpoints ranked in both; None where undefined (fewer than 2, or constant)."""
    out = []
    for i, first in enumerate(columns):
        for second in columns[i + 1:]:
            common = [pk for pk, row in first.rows.items()
                      if first.metric in row.ranks and pk in second.rows
                      and second.metric in second.rows[pk].ranks]
            tau = None
            if len(common) >= 2:
                try:
                    # Ranks on both sides (1 = best): comparable across metrics and datasets.
                    tau = kendall_tau([first.rows[pk].ranks[first.metric] for pk in common],
                                      [second.rows[pk].ranks[second.metric] for pk in common])
                except (ConstantInputError, ValueError):
                    tau = None
            out.append({"a": first.evaluation, "b": second.evaluation, "tau": tau,
                        "common": len(common)})
    return out
