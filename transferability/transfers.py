"""Moving knowledge between checkpoints (KL+DP, docs/science.md section 5): requests.

``submit_transfer`` records a teacher -> student transfer on an evaluation's target dataset
and queues it (queue ``gpu``; the work is in ``workers.transfers``). ``suggest_pair`` names
the pair the evaluation page proposes: the top-ranked checkpoint as the student, and as
teacher the checkpoint with the most positive flips over it (the knowledge it lacks).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from zoo.models import Checkpoint

from .models import Evaluation, Status, Transfer
from .submission import Conflict, SubmissionError, require_a_held_out_split

log = logging.getLogger(__name__)

TRANSFER_TASK = "workers.tasks.transfer_knowledge"


def _finished_checkpoint(evaluation: Evaluation, key, role: str):
    """A finished checkpoint of the evaluation, by id, name or object."""
    key = getattr(key, "pk", key)
    results = evaluation.results.select_related("checkpoint").filter(
        status=Status.DONE, checkpoint__in=Checkpoint.objects.visible_to(evaluation.owner))
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise SubmissionError(f"give the {role} as a checkpoint id or name")
    if isinstance(key, int) and not 0 < key < 2**63:
        key = ""  # names no row (and would overflow SQL)
    found = results.filter(**({"checkpoint_id": key} if isinstance(key, int)
                              else {"checkpoint__name": key})).first()
    if found is None:
        raise SubmissionError(f"{role} {key} is not a finished checkpoint of evaluation "
                              f"{evaluation.pk}")
    return found.checkpoint


def submit_transfer(owner, evaluation: Evaluation, teacher, student,
                    variant: str = Transfer.Variant.SUPERVISED,
                    enqueue_work: bool = True) -> Transfer:
    if evaluation.owner_id != owner.pk:
        raise SubmissionError("that evaluation is not yours")
    if variant not in Transfer.Variant.values:
        raise SubmissionError(f"variant must be one of {', '.join(Transfer.Variant.values)}")
    if not evaluation.is_finished:
        raise Conflict("the evaluation is still running; transfer once it has finished")
    teacher = _finished_checkpoint(evaluation, teacher, "teacher")
    student = _finished_checkpoint(evaluation, student, "student")
    if teacher.pk == student.pk:
        raise SubmissionError("teacher and student must be different checkpoints")
    require_a_held_out_split(evaluation.dataset)
    with transaction.atomic():
        transfer = Transfer.objects.create(owner=owner, evaluation=evaluation, teacher=teacher,
                                           student=student, variant=variant)
        if enqueue_work:
            transaction.on_commit(lambda: enqueue_transfer(transfer.pk))
    return transfer


def enqueue_transfer(transfer_id: int) -> None:
    from config.celery import app

    try:
        app.send_task(TRANSFER_TASK, args=(transfer_id,), queue="gpu")
    except Exception as exc:  # the broker is unreachable: say so instead of waiting forever
        log.exception("could not enqueue transfer %s", transfer_id)
        Transfer.objects.filter(pk=transfer_id, status=Status.PENDING).update(
            status=Status.FAILED, finished_at=timezone.now(),
            message=f"the task queue could not be reached: {exc}")


def suggest_pair(evaluation: Evaluation, rows, student: str | None = None) -> dict | None:
    """{"teacher", "student", "positive_flips"}: as student ``student`` (the page passes the
    recommended checkpoint) or else the top-ranked one, and as teacher the checkpoint with the
    most positive flips over it; None without complementarity."""
    report = evaluation.complementarity
    ranked = [r for r in rows if r.rank is not None]
    if not report or not (ranked or student):
        return None
    if student is None:
        student = min(ranked, key=lambda r: r.rank).checkpoint.name
    candidates = [p for p in report["pairs"] if p["b"] == student]
    if not candidates:
        return None
    best = max(candidates, key=lambda p: p["positive_flips"])
    return {"teacher": best["a"], "student": student,
            "positive_flips": best["positive_flips"]}


def transfer_payload(transfer: Transfer, request=None) -> dict:
    url = reverse("api-transfer-detail", args=[transfer.pk])
    return {
        "id": transfer.pk,
        "url": request.build_absolute_uri(url) if request else url,
        "evaluation": transfer.evaluation_id,
        "teacher": transfer.teacher.name,
        "student": transfer.student.name,
        "variant": transfer.variant,
        "status": transfer.status,
        "progress": round(transfer.progress, 4),
        "message": transfer.message,
        "delta": transfer.delta,
        "flips_before": transfer.flips_before,
        "flips_after": transfer.flips_after,
        "details": transfer.details,
        "checkpoint": transfer.result_checkpoint_id,
        "checkpoint_name": transfer.result_checkpoint.name if transfer.result_checkpoint else None,
        "created_at": transfer.created_at,
        "finished_at": transfer.finished_at,
    }
