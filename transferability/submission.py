"""Creating an evaluation and putting its work on the queue."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from zoo.models import Checkpoint

from .dispatch import dispatch
from .metrics import get_metric
from .models import CheckpointResult, Evaluation, MetricScore, Status, TargetDataset


class SubmissionError(ValueError):
    """The evaluation cannot be made as asked; the message says why."""


class Conflict(SubmissionError):
    """The request is fine but clashes with work in progress (HTTP 409)."""


def submit_evaluation(owner, dataset: TargetDataset, checkpoints, metrics=None,
                      correctness_source: str = Evaluation.CorrectnessSource.TARGET,
                      score_stages: bool = False, enqueue_work: bool = True,
                      truth_on_finish: str = "") -> Evaluation:
    """Create the evaluation and one result row per checkpoint; enqueue after commit.

    With ``enqueue_work=False`` nothing goes to the queue: the caller runs the work itself
    (``workers.jobs.run_inline``).
    """
    if dataset.owner_id != owner.pk:
        raise SubmissionError("that dataset is not yours")
    if not dataset.is_ready:
        raise SubmissionError(f"the dataset is {dataset.get_state_display().lower()}, not "
                              f"ready: " + (dataset.message or "its archive is still being "
                                            "checked and unpacked; try again when it is ready"))
    checkpoints = list({c.pk: c for c in checkpoints}.values())  # each once
    if not checkpoints:
        raise SubmissionError("choose at least one checkpoint")
    others = [c.name for c in checkpoints if c.owner_id not in (None, owner.pk)]
    if others:
        raise SubmissionError(f"these checkpoints are not yours: {', '.join(others)}")
    disabled = [c.name for c in checkpoints if not c.enabled]
    if disabled:
        raise SubmissionError(f"these checkpoints are disabled: {', '.join(disabled)}")
    metrics = list(dict.fromkeys(metrics or []))
    for name in metrics:
        try:
            get_metric(name)
        except ValueError as exc:
            raise SubmissionError(str(exc)) from None
    if correctness_source not in Evaluation.CorrectnessSource.values:
        raise SubmissionError(f"correctness source must be one of "
                              f"{', '.join(Evaluation.CorrectnessSource.values)}")
    if correctness_source == Evaluation.CorrectnessSource.SOURCE:
        _check_source_classes(dataset, checkpoints)
    if truth_on_finish:
        from .models import GroundTruth
        if truth_on_finish not in GroundTruth.Mode.values:
            raise SubmissionError(f"truth_on_finish must be one of "
                                  f"{', '.join(GroundTruth.Mode.values)}")
        require_a_held_out_split(dataset)
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            owner=owner, dataset=dataset, metrics=metrics,
            correctness_source=correctness_source, score_stages=score_stages,
            truth_on_finish=truth_on_finish,
        )
        CheckpointResult.objects.bulk_create(
            CheckpointResult(evaluation=evaluation, checkpoint=c,
                             images_total=dataset.num_images)
            for c in checkpoints
        )
        if enqueue_work:
            transaction.on_commit(lambda: enqueue(evaluation.pk))
    return evaluation


def enqueue(evaluation_id: int, result_ids: list[int] | None = None) -> None:
    """Its checkpoints wait their turn; the dispatcher sends what fair queueing allows now
    (one task per checkpoint, sent by name: the web process never imports torch)."""
    dispatch()


def require_a_held_out_split(dataset: TargetDataset) -> None:
    """Ground truth and transfers train on part of each class and test on the rest."""
    few = [name for name, count in zip(dataset.class_names, dataset.class_counts) if count < 2]
    if few:
        raise SubmissionError("every class needs at least 2 images (one to train on, one to "
                              f"test on); classes with fewer: {', '.join(few[:10])}")


def _check_source_classes(dataset: TargetDataset, checkpoints: list[Checkpoint]) -> None:
    for checkpoint in checkpoints:
        missing = [c for c in dataset.class_names if c not in checkpoint.source_classes]
        if not checkpoint.has_source_head or missing:
            raise SubmissionError(
                f"{checkpoint.name} cannot judge correctness with its own head: "
                + ("it has no source head" if not checkpoint.has_source_head else
                   f"classes {', '.join(missing[:5])} are not among its source classes")
            )


def stalled_results(evaluation: Evaluation):
    """Unfinished checkpoints with no sign of life for ZOORANK_STALL_MINUTES.

    A worker killed mid-task (or a message lost with the on-disk broker) leaves its
    checkpoint pending or running for ever; workers beat at least after every batch and
    every metric, so silence this long means nobody is on it.
    """
    cutoff = timezone.now() - timedelta(minutes=settings.ZOORANK_STALL_MINUTES)
    # Rows waiting their turn (transferability.dispatch) are not stalled: nobody sent them.
    unfinished = CheckpointResult.objects.filter(
        evaluation=evaluation, status__in=(Status.PENDING, Status.RUNNING)).exclude(
        status=Status.PENDING, queued_at__isnull=True)
    return unfinished.filter(Q(heartbeat_at__lt=cutoff)
                             | Q(heartbeat_at__isnull=True, evaluation__created_at__lt=cutoff))


def retry(evaluation: Evaluation) -> int:
    """Queue again the checkpoints that need it; returns how many.

    A finished evaluation: its failed checkpoints (say, once their weights are there).
    A running one: its stalled checkpoints. The final step runs again afterwards.
    """
    with transaction.atomic():
        evaluation = Evaluation.objects.select_for_update().get(pk=evaluation.pk)
        if evaluation.is_finished:
            chosen = CheckpointResult.objects.filter(evaluation=evaluation, status=Status.FAILED)
            nothing = "no checkpoint of this evaluation failed"
        else:
            chosen = stalled_results(evaluation)
            nothing = (f"the evaluation is still running; a checkpoint is retried after "
                       f"{settings.ZOORANK_STALL_MINUTES} minutes without progress")
        ids = list(chosen.values_list("pk", flat=True))
        if not ids:
            raise SubmissionError(nothing)
        CheckpointResult.objects.filter(pk__in=ids).update(
            status=Status.PENDING, attempts=0, message="", images_done=0, started_at=None,
            finished_at=None, heartbeat_at=timezone.now(), queued_at=None)
        MetricScore.objects.filter(result__in=ids).delete()
        Evaluation.objects.filter(pk=evaluation.pk).update(
            status=Status.RUNNING, message="", finished_at=None)
        transaction.on_commit(lambda: enqueue(evaluation.pk, result_ids=ids))
    return len(ids)
