"""Ground truth on request ("verify"), and how well each metric predicted it.

``submit_truth`` asks the workers to transfer an evaluation's checkpoints to its target and
measure held-out accuracy (one task per checkpoint, queue ``gpu``; the work is in
``workers.verification``). ``agreement`` then scores every metric, every baseline and the
trivial references (source accuracy, parameter count, feature width d) against those
accuracies by weighted Kendall's tau, Kendall's tau and top-1 relative accuracy
(docs/science.md, section 6). It is computed when read, from the stored scores and
accuracies, so it always matches what the page shows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils import timezone

from .ground_truth import standard_error
from .metrics import REGISTRY
from .models import Evaluation, GroundTruth, Status, TruthResult
from .ranking import ranking_summary
from .submission import Conflict, SubmissionError, require_a_held_out_split

log = logging.getLogger(__name__)

VERIFY_CHECKPOINT = "workers.tasks.verify_checkpoint"


@dataclass(frozen=True)
class Reference:
    """A trivial predictor scored exactly like a metric: "bigger is better", "better at the
    source is better"."""

    name: str
    label: str
    attribute: str

    kind = "reference"
    higher_is_better = True

    def value(self, row):
        if self.attribute == "feature_dim":
            return row.result.feature_dim or row.checkpoint.feature_dim
        return getattr(row.checkpoint, self.attribute)


REFERENCES = [
    Reference("source_accuracy", "Source accuracy", "source_top1"),
    Reference("param_count", "Parameter count", "param_count"),
    Reference("feature_dim", "Feature width d", "feature_dim"),
]


def submit_truth(evaluation: Evaluation, checkpoints=None, mode: str = GroundTruth.Mode.FINETUNE,
                 enqueue_work: bool = True) -> GroundTruth:
    """Create (or replace a finished) ground truth for ``evaluation`` and queue its work.

    ``checkpoints``: Checkpoint objects, ids or names among the evaluation's finished
    checkpoints; None for all of them.
    """
    if mode not in GroundTruth.Mode.values:
        raise SubmissionError(f"mode must be one of {', '.join(GroundTruth.Mode.values)}")
    if not evaluation.is_finished:
        raise Conflict("the evaluation is still running; ground truth is measured "
                              "once it has finished")
    done = {r.checkpoint.name: r.checkpoint for r in
            evaluation.results.select_related("checkpoint").filter(status=Status.DONE)}
    if not done:
        raise SubmissionError("no checkpoint of this evaluation finished")
    if checkpoints is None:
        chosen = list(done.values())
    else:
        by_id = {c.pk: c for c in done.values()}
        chosen, unknown = [], []
        for item in checkpoints:
            key = getattr(item, "pk", item)
            found = by_id.get(key) if isinstance(key, int) else done.get(key)
            (chosen if found else unknown).append(found or item)
        if unknown:
            raise SubmissionError("not finished checkpoints of this evaluation: "
                                  + ", ".join(str(getattr(u, "name", u)) for u in unknown))
        chosen = list({c.pk: c for c in chosen}.values())
        if not chosen:
            raise SubmissionError("choose at least one checkpoint")
    require_a_held_out_split(evaluation.dataset)
    with transaction.atomic():
        Evaluation.objects.select_for_update().filter(pk=evaluation.pk).first()
        existing = GroundTruth.objects.filter(evaluation=evaluation).first()
        if existing is not None:
            if not existing.is_finished:
                raise Conflict("ground truth is already being measured for this "
                                      "evaluation")
            existing.delete()
        truth = GroundTruth.objects.create(evaluation=evaluation, mode=mode)
        TruthResult.objects.bulk_create(TruthResult(truth=truth, checkpoint=c) for c in chosen)
        if enqueue_work:
            transaction.on_commit(lambda: enqueue_truth(truth.pk))
    return truth


def enqueue_truth(truth_id: int) -> None:
    """One task per checkpoint, sent by name (the web process never imports torch)."""
    from config.celery import app

    ids = list(TruthResult.objects.filter(truth_id=truth_id).order_by("pk")
               .values_list("pk", flat=True))
    try:
        for result_id in ids:
            app.send_task(VERIFY_CHECKPOINT, args=(result_id,), queue="gpu")
    except Exception as exc:  # the broker is unreachable: say so instead of waiting forever
        log.exception("could not enqueue ground truth %s", truth_id)
        message = f"the task queue could not be reached: {exc}"
        now = timezone.now()
        TruthResult.objects.filter(pk__in=ids, status=Status.PENDING).update(
            status=Status.FAILED, message=message, finished_at=now)
        GroundTruth.objects.filter(pk=truth_id).update(status=Status.FAILED, message=message,
                                                       finished_at=now)


def _specs_with_scores(rows):
    """Registry metrics and baselines scored for these rows, then the references."""
    present = {name for row in rows for name, value in row.scores.items() if value is not None}
    return [spec for name, spec in REGISTRY.items() if name in present] + REFERENCES


def _score(spec, row):
    if isinstance(spec, Reference):
        return spec.value(row)
    return row.scores.get(spec.name)


def agreement(rows, accuracy: dict[str, float]) -> dict[str, dict]:
    """Per metric, baseline and reference: how its order agrees with the true accuracies.

    ``rows``: the evaluation's ranked rows; ``accuracy``: checkpoint name -> true accuracy.
    Only checkpoints with both a score and a true accuracy take part (``checkpoints`` says
    how many); a tau is None where undefined (constant scores or truth), and a measure is
    left out when fewer than 2 checkpoints qualify.
    """
    out = {}
    for spec in _specs_with_scores(rows):
        pairs = [(_score(spec, row), accuracy[row.checkpoint.name]) for row in rows
                 if row.checkpoint.name in accuracy and _score(spec, row) is not None
                 and row.result.status == Status.DONE]
        pairs = [(float(s), float(t)) for s, t in pairs if np.isfinite(s)]
        entry = {"label": spec.label, "kind": spec.kind,
                 "higher_is_better": spec.higher_is_better, "checkpoints": len(pairs),
                 "weighted_tau": None, "kendall_tau": None, "top1_relative_accuracy": None}
        if len(pairs) >= 2 and max(t for _, t in pairs) > 0:
            scores, truth = zip(*pairs)
            summary = ranking_summary(scores, truth, spec.higher_is_better, ks=(1,))
            entry.update(weighted_tau=summary["weighted_tau"],
                         kendall_tau=summary["kendall_tau"],
                         top1_relative_accuracy=summary["top_1_relative_accuracy"])
        out[spec.name] = entry
    return out


def truth_payload(evaluation: Evaluation, rows) -> dict | None:
    """The evaluation's ground truth for the API and the page; None when none was asked."""
    truth = GroundTruth.objects.filter(evaluation=evaluation).first()
    if truth is None:
        return None
    results = list(truth.results.select_related("checkpoint"))
    accuracy = {r.checkpoint.name: r.accuracy for r in results
                if r.status == Status.DONE and r.accuracy is not None}
    errors = {}
    for r in results:
        if r.accuracy is not None and r.details.get("test"):
            errors[r.checkpoint.name] = standard_error(r.accuracy, r.details["test"])
    values = list(accuracy.values())
    return {
        "status": truth.status,
        "mode": truth.mode,
        "progress": round(truth.progress, 4),
        "message": truth.message,
        "test_fraction": truth.test_fraction,
        "accuracy": accuracy,
        "standard_error": errors,
        "spread": {"min": min(values), "max": max(values),
                   "range": max(values) - min(values),
                   "mean_standard_error": float(np.mean(list(errors.values())))
                   if errors else None} if values else None,
        "agreement": agreement(rows, accuracy) if len(accuracy) >= 2 else {},
        "results": [{"checkpoint": r.checkpoint.name, "status": r.status,
                     "accuracy": r.accuracy, "message": r.message, "seconds": r.seconds,
                     "details": r.details} for r in results],
        "created_at": truth.created_at,
        "finished_at": truth.finished_at,
    }

