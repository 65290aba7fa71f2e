"""Celery tasks: thin wrappers that pass primary keys to ``workers.jobs``."""

from celery import shared_task

from . import jobs


@shared_task(acks_late=True, ignore_result=True)
def evaluate_checkpoint(result_id: int) -> None:
    evaluation_id = jobs.evaluate_checkpoint(result_id)
    if evaluation_id is not None:
        finalize_evaluation.apply_async((evaluation_id,), queue="gpu")


@shared_task(acks_late=True, ignore_result=True)
def finalize_evaluation(evaluation_id: int) -> None:
    jobs.finalize_evaluation(evaluation_id)
