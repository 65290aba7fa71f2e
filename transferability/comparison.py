"""Two or more evaluations side by side: the same checkpoints, ranked in each.

Scores of one metric are comparable within an evaluation, not across datasets; ranks are.
The comparison therefore shows each evaluation's rank by its lead predictor (or the one
picked, ``rank_by``), its linear-probe accuracy and, where measured, its true accuracy;
and how far the evaluations' orders agree (Kendall's tau over the checkpoints both
finished) beside how far their true accuracies do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .models import Evaluation
from .ranking import ConstantInputError, kendall_tau
from .results import lead_of, ranked_rows

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
    metric: str | None  # the metric that stands for the lead (a single lead's values shown)
    label: str  # the predictor that ranks it
    rows: dict[int, object] = field(default_factory=dict)  # checkpoint id -> ResultRow
    has_probe: bool = False
    truth: dict[str, float] = field(default_factory=dict)  # checkpoint name -> true acc.
    single: bool = True  # ranked by one metric (its values shown) or by a consensus

    @property
    def width(self) -> int:
        """Table columns: the rank, then the probe and the true accuracy where present."""
        return 1 + self.has_probe + bool(self.truth)


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


def compare(evaluations: list[Evaluation], rank_by: str | None = None) -> Comparison:
    from .verification import truth_payload

    columns = []
    for evaluation in evaluations:
        rows = ranked_rows(evaluation, rank_by=rank_by)
        lead = lead_of(rows)
        truth = truth_payload(evaluation, rows) or {}
        columns.append(Column(
            evaluation=evaluation, metric=lead.chart_metric if lead else None,
            label=lead.label if lead else "",
            single=bool(lead) and len(lead.candidate.members) == 1,
            rows={row.checkpoint.pk: row for row in rows},
            has_probe=any(PROBE in row.ranks for row in rows),
            truth=truth.get("accuracy") or {}))
    checkpoints = {}
    for column in columns:
        for row in column.rows.values():
            checkpoints.setdefault(row.checkpoint.pk, row.checkpoint)
    table = []
    for pk, checkpoint in checkpoints.items():
        cells, ranks = [], []
        for column in columns:
            row = column.rows.get(pk)
            ranked = sum(1 for r in column.rows.values() if r.rank is not None)
            kinds = ["lead"] + (["probe"] if column.has_probe else []) \
                + (["truth"] if column.truth else [])
            for kind in kinds:
                if row is None:
                    cells.append({"absent": True})
                    continue
                cell = {"status": row.result.status, "kind": kind, "probe": kind == "probe"}
                if kind == "lead":
                    cell.update(rank=row.rank, of=ranked, value=row.scores.get(column.metric)
                                if column.single else None)
                    if row.rank is not None:
                        ranks.append(row.rank)
                elif kind == "probe":
                    value = row.scores.get(PROBE)
                    cell.update(value=100.0 * value if value is not None else None,
                                rank=row.ranks.get(PROBE),
                                of=sum(1 for r in column.rows.values() if PROBE in r.ranks))
                else:
                    cell.update(value=column.truth.get(checkpoint.name), rank=None)
                cells.append(cell)
        table.append({"checkpoint": checkpoint, "cells": cells,
                      "mean_rank": sum(ranks) / len(ranks) if ranks else None})
    table.sort(key=lambda t: (t["mean_rank"] is None, t["mean_rank"] or 0, t["checkpoint"].name))
    datasets = {c.evaluation.dataset_id for c in columns}
    hashes = {c.evaluation.dataset.content_hash for c in columns}
    return Comparison(
        columns=columns, checkpoints=table,
        datasets_differ=len(datasets) > 1,
        same_content=len(datasets) > 1 and len(hashes) == 1,
        metrics_differ=len({c.label for c in columns}) > 1,
        agreement=_agreement(columns),
        dataset_names=list(dict.fromkeys(c.evaluation.dataset.name for c in columns)),
    )


def _tau(first: dict, second: dict) -> tuple[float | None, int]:
    """Kendall's tau between two {key: value} over their common keys, and how many."""
    common = [k for k in first if k in second]
    if len(common) < 2:
        return None, len(common)
    try:
        return kendall_tau([first[k] for k in common], [second[k] for k in common]), len(common)
    except (ConstantInputError, ValueError):
        return None, len(common)


def _agreement(columns: list[Column]) -> list[dict]:
    """Per pair of evaluations: Kendall's tau between their ranks (over the checkpoints
    ranked in both) and, where both were measured, between their true accuracies; None
    where undefined (fewer than 2, or constant)."""
    out = []
    for i, first in enumerate(columns):
        for second in columns[i + 1:]:
            # Ranks (1 = best) negated so that tau is 1 for the same order.
            tau, common = _tau({pk: -r.rank for pk, r in first.rows.items() if r.rank},
                               {pk: -r.rank for pk, r in second.rows.items() if r.rank})
            truth_tau, truth_common = _tau(first.truth, second.truth) \
                if first.truth and second.truth else (None, 0)
            out.append({"a": first.evaluation, "b": second.evaluation, "tau": tau,
                        "common": common, "truth_tau": truth_tau,
                        "truth_common": truth_common})
    return out
