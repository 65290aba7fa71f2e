"""Celery tasks: thin wrappers that pass primary keys to ``workers.jobs``."""

import logging

from celery import shared_task
from celery.signals import worker_ready

from transferability.dispatch import dispatch

from . import healing, ingest, jobs, transfers, verification

log = logging.getLogger(__name__)


@worker_ready.connect
def _start_sweeping(**_kwargs) -> None:
    # Every worker sweeps: the loss of any one process loses no work.
    healing.start_sweeping()


@shared_task(acks_late=True, ignore_result=True)
def evaluate_checkpoint(result_id: int) -> None:
    evaluation_id = jobs.evaluate_checkpoint(result_id)
    if evaluation_id is not None:
        finalize_evaluation.apply_async((evaluation_id,), queue="gpu")
    try:
        dispatch()  # a place in flight is free: the next user's turn
    except Exception:  # the sweep dispatches too; this checkpoint's work is saved
        log.exception("dispatch after checkpoint result %s failed", result_id)


@shared_task(acks_late=True, ignore_result=True)
def finalize_evaluation(evaluation_id: int) -> None:
    jobs.finalize_evaluation(evaluation_id)


@shared_task(acks_late=True, ignore_result=True)
def verify_checkpoint(truth_result_id: int) -> None:
    truth_id = verification.verify_checkpoint(truth_result_id)
    if truth_id is not None:
        finalize_truth.apply_async((truth_id,), queue="gpu")


@shared_task(acks_late=True, ignore_result=True)
def finalize_truth(truth_id: int) -> None:
    verification.finalize_truth(truth_id)


@shared_task(acks_late=True, ignore_result=True)
def transfer_knowledge(transfer_id: int) -> None:
    transfers.transfer_knowledge(transfer_id)


@shared_task(acks_late=True, ignore_result=True)
def ingest_dataset(dataset_id: int) -> None:
    ingest.ingest_upload(dataset_id)


@shared_task(acks_late=True, ignore_result=True)
def make_thumbnails(dataset_id: int) -> None:
    ingest.make_thumbnails(dataset_id)


@shared_task(acks_late=True, ignore_result=True)
def validate_checkpoints(checkpoint_ids: list[int]) -> None:
    from zoo.models import Checkpoint
    from zoo.validation import validate_checkpoint

    for checkpoint in Checkpoint.objects.filter(pk__in=checkpoint_ids).order_by("name"):
        validate_checkpoint(checkpoint)


@shared_task(acks_late=True, ignore_result=True)
def prefetch_checkpoints(checkpoint_ids: list[int]) -> None:
    """Hub weights into this worker's cache ahead of use (the admin's "Prefetch")."""
    from zoo.models import Checkpoint
    from zoo.validation import prefetch_checkpoint

    for checkpoint in Checkpoint.objects.filter(pk__in=checkpoint_ids).order_by("name"):
        prefetch_checkpoint(checkpoint)
