"""Self-healing: silent work queued again by the sweep, final steps finished, time limits."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.builders import image_folder_zip, saved_checkpoint
from transferability.datasets import create_target_dataset
from transferability.models import (CheckpointResult, Evaluation, GroundTruth, Status,
                                    Transfer, TruthResult)
from transferability.submission import submit_evaluation
from workers import healing, jobs

pytestmark = pytest.mark.django_db

EVALUATE = "workers.tasks.evaluate_checkpoint"


@pytest.fixture
def evaluation(owner, tmp_path, settings):
    settings.ZOORANK_STALL_MINUTES = 5
    archive = image_folder_zip(tmp_path / "c.zip", {"a": 4, "b": 4}, seed=2)
    dataset = create_target_dataset(owner, "ab", archive)
    checkpoints = [saved_checkpoint("ck-1", seed=1), saved_checkpoint("ck-2", seed=2)]
    return submit_evaluation(owner, dataset, checkpoints, metrics=["tmi"], enqueue_work=False)


def silent(minutes: float):
    return timezone.now() - timedelta(minutes=minutes)


def test_a_silent_checkpoint_is_queued_again_once(evaluation, sent_tasks):
    dead, alive = evaluation.results.order_by("pk")
    CheckpointResult.objects.filter(pk=dead.pk).update(status=Status.RUNNING, attempts=1,
                                                       heartbeat_at=silent(6))
    CheckpointResult.objects.filter(pk=alive.pk).update(status=Status.RUNNING, attempts=1,
                                                        heartbeat_at=silent(1))
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Status.RUNNING)

    first = healing.sweep()
    assert first["checkpoints"] == [dead.pk]
    assert sent_tasks == [(EVALUATE, (dead.pk,), "gpu")]
    assert healing.sweep()["checkpoints"] == []  # its heartbeat was stamped: not twice
    assert len(sent_tasks) == 1

    # The queued task runs on a new worker: the row finishes, scored once.
    jobs.evaluate_checkpoint(dead.pk)
    row = CheckpointResult.objects.get(pk=dead.pk)
    assert row.status == Status.DONE and row.attempts == 2 and row.scores.count() == 1


def test_a_checkpoint_that_keeps_killing_its_worker_ends_failed(evaluation, sent_tasks):
    row = evaluation.results.order_by("pk").first()
    CheckpointResult.objects.filter(pk=row.pk).update(status=Status.RUNNING,
                                                      attempts=jobs.MAX_ATTEMPTS,
                                                      heartbeat_at=silent(6))
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Status.RUNNING)
    assert healing.sweep()["checkpoints"] == [row.pk]
    jobs.evaluate_checkpoint(row.pk)
    row.refresh_from_db()
    assert row.status == Status.FAILED and "stopped while scoring" in row.message


def test_finished_rows_with_no_final_step_are_finished_by_the_sweep(evaluation, sent_tasks):
    for row in evaluation.results.all():
        jobs.evaluate_checkpoint(row.pk)  # the last one claims the final step...
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Status.RUNNING)  # ...then died
    done = healing.sweep()
    assert done["evaluations_finalized"] == [evaluation.pk]
    assert ("workers.tasks.finalize_evaluation", (evaluation.pk,), "gpu") in sent_tasks
    jobs.finalize_evaluation(evaluation.pk)
    assert Evaluation.objects.get(pk=evaluation.pk).status == Status.DONE
    assert healing.sweep()["evaluations_finalized"] == []


def test_a_final_step_left_half_done_runs_again_after_the_stall_limit(evaluation, sent_tasks):
    for row in evaluation.results.all():
        jobs.evaluate_checkpoint(row.pk)
    assert Evaluation.objects.get(pk=evaluation.pk).status == Status.FINALIZING
    assert healing.sweep()["evaluations_finalized"] == []  # it may still be running
    CheckpointResult.objects.filter(evaluation=evaluation).update(finished_at=silent(6))
    assert healing.sweep()["evaluations_finalized"] == [evaluation.pk]


def test_silent_truth_rows_and_transfers_are_queued_again(evaluation, owner, sent_tasks):
    jobs.run_inline(evaluation.pk)
    ck1, ck2 = [r.checkpoint for r in evaluation.results.order_by("pk")]
    truth = GroundTruth.objects.create(evaluation=evaluation, status=Status.RUNNING)
    row = TruthResult.objects.create(truth=truth, checkpoint=ck1, status=Status.RUNNING,
                                     heartbeat_at=silent(9))
    transfer = Transfer.objects.create(owner=owner, evaluation=evaluation, teacher=ck1,
                                       student=ck2, status=Status.RUNNING,
                                       heartbeat_at=silent(9))
    done = healing.sweep()
    assert done["truth_rows"] == [row.pk] and done["transfers"] == [transfer.pk]
    assert ("workers.tasks.verify_checkpoint", (row.pk,), "gpu") in sent_tasks
    assert ("workers.tasks.transfer_knowledge", (transfer.pk,), "gpu") in sent_tasks


def test_a_task_over_its_time_limit_is_recorded_as_failed_and_the_others_finish(
        evaluation, settings):
    settings.ZOORANK_TASK_TIME_LIMIT_MINUTES = 0  # every heartbeat is past the limit
    slow, other = evaluation.results.order_by("pk")
    jobs.evaluate_checkpoint(slow.pk)
    slow.refresh_from_db()
    assert slow.status == Status.FAILED
    assert "over the task time limit of 0 s" in slow.message
    settings.ZOORANK_TASK_TIME_LIMIT_MINUTES = 60
    assert jobs.evaluate_checkpoint(other.pk) == evaluation.pk
    jobs.finalize_evaluation(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE and "1 of 2 checkpoints failed" in evaluation.message


def test_a_checkpoint_cancelled_while_its_worker_scores_it_stays_cancelled(evaluation,
                                                                            monkeypatch):
    from transferability.api.cancellation import cancel_evaluation

    real = jobs.score_features

    def cancelled_meanwhile(result, features):
        real(result, features)
        cancel_evaluation(Evaluation.objects.get(pk=evaluation.pk))

    monkeypatch.setattr(jobs, "score_features", cancelled_meanwhile)
    row = evaluation.results.order_by("pk").first()
    jobs.evaluate_checkpoint(row.pk)
    row.refresh_from_db()
    assert row.status == Status.FAILED and "cancelled" in row.message
