"""Fair queueing: each user's checkpoints go to the workers in turn, a few at a time.

Submitting an evaluation creates its checkpoint rows ``pending`` and *waiting* (``queued_at``
empty); :func:`dispatch` then sends tasks to the ``gpu`` queue so that no user has more than
``ZOORANK_USER_IN_FLIGHT`` checkpoints queued or running at once, releasing one row per
user per round (round-robin, the user with the oldest waiting row first). It runs after
every submission and retry, after every checkpoint a worker finishes, and in every sweep
(workers/healing.py), so one user's hundred checkpoints wait behind their own first few,
while another user's single checkpoint is queued at once and runs after at most that many.

A row is released by a conditional update of ``queued_at`` (and its heartbeat, from which
the stall limit counts): two dispatchers never send one row twice. Two dispatchers at the
same instant may each release up to the cap, so a user can briefly have up to twice the cap
in flight; the order stays fair. Ground-truth rows and transfers are queued directly.
"""

import logging
from collections import deque

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone

from .models import CheckpointResult, Evaluation, Status

log = logging.getLogger(__name__)

EVALUATE_CHECKPOINT = "workers.tasks.evaluate_checkpoint"
OPEN_EVALUATION = (Status.PENDING, Status.RUNNING)


def in_flight_cap() -> int:
    return max(1, int(settings.ZOORANK_USER_IN_FLIGHT))


def waiting():
    """Checkpoint rows held back by the dispatcher, oldest first."""
    return CheckpointResult.objects.filter(
        status=Status.PENDING, queued_at__isnull=True,
        evaluation__status__in=OPEN_EVALUATION).order_by("pk")


def in_flight():
    """Checkpoint rows sent to the queue and not finished."""
    return CheckpointResult.objects.filter(
        status__in=(Status.PENDING, Status.RUNNING), queued_at__isnull=False,
        evaluation__status__in=OPEN_EVALUATION)


def plan(cap: int | None = None) -> list[int]:
    """The rows to release now, in the order to send them (round-robin over users)."""
    cap = cap or in_flight_cap()
    busy = dict(in_flight().values("evaluation__owner").annotate(n=Count("pk"))
                .values_list("evaluation__owner", "n"))
    owners = (waiting().values("evaluation__owner").annotate(first=Min("pk"))
              .order_by("first").values_list("evaluation__owner", flat=True))
    queues = []
    for owner in owners:
        room = cap - busy.get(owner, 0)
        if room > 0:
            queue = deque(waiting().filter(evaluation__owner=owner)
                          .values_list("pk", flat=True)[:room])
            if queue:  # another dispatcher may have released them since the first query
                queues.append(queue)
    order = []
    while queues:
        for queue in list(queues):
            order.append(queue.popleft())
            if not queue:
                queues.remove(queue)
    return order


def dispatch(cap: int | None = None) -> list[int]:
    """Send the tasks that fair queueing allows now; returns the rows sent."""
    from config.celery import app

    sent = []
    for result_id in plan(cap):
        now = timezone.now()
        if not CheckpointResult.objects.filter(pk=result_id, queued_at__isnull=True).update(
                queued_at=now, heartbeat_at=now):
            continue  # another dispatcher sent it
        try:
            app.send_task(EVALUATE_CHECKPOINT, args=(result_id,), queue="gpu")
        except Exception as exc:  # the broker is unreachable: say so instead of waiting
            log.exception("could not queue checkpoint result %s", result_id)
            _fail_unreachable(result_id, exc)
            break
        sent.append(result_id)
    return sent


def _fail_unreachable(result_id: int, exc: Exception) -> None:
    """Failed, not pending: a retry (page or API) queues them again once it is back."""
    message = f"the task queue could not be reached: {exc}"
    evaluation_id = (CheckpointResult.objects.filter(pk=result_id)
                     .values_list("evaluation_id", flat=True).first())
    now = timezone.now()
    CheckpointResult.objects.filter(evaluation_id=evaluation_id, status=Status.PENDING).update(
        status=Status.FAILED, finished_at=now, message=message)
    Evaluation.objects.filter(pk=evaluation_id).update(status=Status.FAILED, finished_at=now,
                                                       message=message)
