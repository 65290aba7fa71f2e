"""Stopping and deleting an evaluation on its owner's request."""

from django.db import transaction
from django.utils import timezone

from ..models import CheckpointResult, Evaluation, GroundTruth, Status, Transfer
from ..submission import Conflict

UNFINISHED = (Status.PENDING, Status.RUNNING)
FINISHED = (Status.DONE, Status.FAILED)
CANCELLED_CHECKPOINT = "cancelled by its owner"
CANCELLED = "cancelled"


def cancel_evaluation(evaluation: Evaluation) -> int:
    """Fail the evaluation's unfinished checkpoints, then the evaluation; returns how many.

    Queued tasks that arrive later find nothing to claim (``workers.jobs`` claims pending
    and running rows only). A checkpoint a worker is scoring right now finishes its
    scoring; the evaluation stays cancelled. A finished evaluation raises Conflict.
    """
    with transaction.atomic():
        evaluation = Evaluation.objects.select_for_update().get(pk=evaluation.pk)
        if evaluation.is_finished:
            raise Conflict(f"the evaluation has already finished ({evaluation.status})")
        now = timezone.now()
        count = CheckpointResult.objects.filter(
            evaluation=evaluation, status__in=UNFINISHED
        ).update(status=Status.FAILED, message=CANCELLED_CHECKPOINT, finished_at=now)
        # Finalizing too: finalize_evaluation only writes over a finalizing evaluation.
        Evaluation.objects.filter(pk=evaluation.pk).update(
            status=Status.FAILED, message=CANCELLED, finished_at=now)
    return count


def delete_evaluation(evaluation: Evaluation) -> None:
    """Delete the evaluation with its results, cancelling it first if it is running.

    Refused (Conflict) while its ground truth or a transfer from it is being computed: a
    worker is writing to them.
    """
    busy = []
    if GroundTruth.objects.filter(evaluation=evaluation).exclude(status__in=FINISHED).exists():
        busy.append("its ground truth is being measured")
    if Transfer.objects.filter(evaluation=evaluation).exclude(status__in=FINISHED).exists():
        busy.append("a transfer from it is running")
    if busy:
        raise Conflict(" and ".join(busy) + "; delete it once that has finished")
    with transaction.atomic():
        if not Evaluation.objects.select_for_update().get(pk=evaluation.pk).is_finished:
            cancel_evaluation(evaluation)
        evaluation.delete()
