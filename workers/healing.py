"""Self-healing: work whose worker fell silent is queued again, with nobody pressing Retry.

Every worker process runs :func:`sweep` every ``ZOORANK_SWEEP_SECONDS`` on a daemon thread
(started when the worker is ready), so the loss of any one process, a worker or the
broker's copy of a message, loses no work while one worker lives. A sweep:

- queues again every unfinished checkpoint, ground-truth row and transfer whose heartbeat is
  older than ``ZOORANK_STALL_MINUTES`` (workers beat after every batch and every metric).
  The row's heartbeat is stamped by a conditional update first, so two sweepers never queue
  the same row twice; the claim rules of the jobs (at most ``MAX_ATTEMPTS`` claims, then the
  row is recorded as failed) keep a checkpoint that kills its worker from looping;
- queues again, on the ``cpu`` queue, uploads whose ingest fell silent (its worker died, or
  the web process died between storing the upload and queueing it);
- finishes evaluations and ground truths whose rows are all finished but whose final step
  never ran (its worker died between the last row and the final task), and runs again a
  final step that has been ``finalizing`` for longer than the stall limit;
- releases the checkpoints that fair queueing allows (transferability/dispatch.py), in case
  the worker that should have released them died first. Rows still waiting their turn were
  never sent, so they are never taken for stalled.

A task also has a time limit (``ZOORANK_TASK_TIME_LIMIT_MINUTES``): the heartbeats check it
and a task over it stops with a message and is recorded as failed, so the others finish.
The Redis visibility timeout is set above that limit (config/settings.py), so a healthy
long task is never delivered twice while it runs.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

log = logging.getLogger(__name__)

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline",
                                                                        default=None)


class TimeLimitExceeded(RuntimeError):
    """The task ran past ``ZOORANK_TASK_TIME_LIMIT_MINUTES``."""


def time_limit_seconds() -> float:
    return float(settings.ZOORANK_TASK_TIME_LIMIT_MINUTES) * 60.0


class deadline:
    """``with deadline():`` around a task's work: :func:`check_deadline` raises past it."""

    def __enter__(self):
        self.token = _deadline.set(time.monotonic() + time_limit_seconds())
        return self

    def __exit__(self, *exc):
        _deadline.reset(self.token)
        return False


def check_deadline() -> None:
    """Called at every heartbeat: stop a task that is over its time limit."""
    limit = _deadline.get()
    if limit is not None and time.monotonic() > limit:
        minutes = float(settings.ZOORANK_TASK_TIME_LIMIT_MINUTES)
        limit_text = f"{minutes:g} minutes" if minutes >= 1 else f"{minutes * 60:.0f} s"
        raise TimeLimitExceeded(f"stopped: over the task time limit of {limit_text} "
                                f"(ZOORANK_TASK_TIME_LIMIT_MINUTES)")


# A checkpoint row that fair queueing has not sent yet (transferability/dispatch.py).
WAITING = Q(status="pending", queued_at__isnull=True)


def stall_cutoff():
    return timezone.now() - timedelta(minutes=float(settings.ZOORANK_STALL_MINUTES))


def _requeue(silent, task: str, queue: str = "gpu") -> list[int]:
    """Stamp and queue again the rows of ``silent`` (a queryset of rows fallen silent)."""
    from config.celery import app

    queued = []
    for pk, beat in silent.values_list("pk", "heartbeat_at"):
        # Only the sweeper whose update wins queues it.
        if silent.model.objects.filter(pk=pk, heartbeat_at=beat).update(
                heartbeat_at=timezone.now()):
            app.send_task(task, args=(pk,), queue=queue)
            queued.append(pk)
    return queued


def sweep() -> dict[str, list[int]]:
    """One pass; returns what it queued or finished, by kind."""
    from config.celery import app
    from transferability.dispatch import dispatch
    from transferability.models import (CheckpointResult, Evaluation, GroundTruth, Status,
                                        TargetDataset, Transfer, TruthResult)

    from . import jobs, verification

    cutoff = stall_cutoff()
    running = (Status.PENDING, Status.RUNNING)
    silent = Q(status__in=running, heartbeat_at__lt=cutoff)  # unfinished, no sign of life
    done = {
        # Rows still waiting their turn were never sent: the dispatcher's, not stalled.
        "checkpoints": _requeue(CheckpointResult.objects.filter(
            silent, evaluation__status__in=running).exclude(WAITING),
            "workers.tasks.evaluate_checkpoint"),
        "truth_rows": _requeue(TruthResult.objects.filter(silent, truth__status__in=running),
                               "workers.tasks.verify_checkpoint"),
        "transfers": _requeue(Transfer.objects.filter(silent), "workers.tasks.transfer_knowledge"),
        # Uploads whose ingest fell silent (its worker died, or the web process died before
        # queueing it).
        "ingests": _requeue(TargetDataset.objects.filter(
            state=TargetDataset.State.INGESTING, heartbeat_at__lt=cutoff),
            "workers.tasks.ingest_dataset", queue="cpu"),
        "evaluations_finalized": [],
        "truths_finalized": [],
    }
    # Every row finished but no final step claimed, or a final step left half done.
    for evaluation in Evaluation.objects.filter(status__in=running + (Status.FINALIZING,)):
        if evaluation.status == Status.FINALIZING:
            last = (evaluation.results.order_by("-finished_at")
                    .values_list("finished_at", flat=True).first())
            if last is None or last >= cutoff:
                continue  # a final step that may still be running
        elif not jobs.claim_final_step(evaluation.pk):
            continue
        app.send_task("workers.tasks.finalize_evaluation", args=(evaluation.pk,), queue="gpu")
        done["evaluations_finalized"].append(evaluation.pk)
    for truth in GroundTruth.objects.filter(status__in=running):
        if verification.claim_truth_final(truth.pk):
            app.send_task("workers.tasks.finalize_truth", args=(truth.pk,), queue="gpu")
            done["truths_finalized"].append(truth.pk)
    done["dispatched"] = dispatch()  # in case a worker died before releasing the next ones
    if any(v for k, v in done.items() if k != "dispatched"):
        log.warning("sweep queued again: %s", {k: v for k, v in done.items() if v})
    return done


_started = threading.Event()


def start_sweeping(interval: float | None = None) -> None:
    """Run :func:`sweep` every ``interval`` seconds on a daemon thread (once per process)."""
    if _started.is_set():
        return
    _started.set()
    interval = interval or float(settings.ZOORANK_SWEEP_SECONDS)

    def loop():
        while True:
            time.sleep(interval)
            try:
                close_old_connections()
                sweep()
            except Exception:  # a database or broker outage: try again next time
                log.exception("sweep failed; trying again in %.0f s", interval)
            finally:
                close_old_connections()

    threading.Thread(target=loop, name="zoorank-sweep", daemon=True).start()
