"""Fair queueing (transferability/dispatch.py): users take turns, a few checkpoints each."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from transferability.dispatch import dispatch, plan
from transferability.models import CheckpointResult, Evaluation, Status, TargetDataset
from transferability.submission import retry, stalled_results, submit_evaluation
from workers import healing
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def zoo():
    return [Checkpoint.objects.create(name=f"ck-{i}", architecture="test_resnet",
                                      family="resnet") for i in range(6)]


def dataset_of(user) -> TargetDataset:
    return TargetDataset.objects.create(owner=user, name="d", store_dir=uuid.uuid4().hex,
                                        class_names=["a", "b"], class_counts=[3, 3],
                                        num_images=6, content_hash="h")


def submit(user, checkpoints, **kw) -> list[int]:
    evaluation = submit_evaluation(user, dataset_of(user), checkpoints, **kw)
    return list(evaluation.results.order_by("pk").values_list("pk", flat=True))


def sent_ids(sent_tasks) -> list[int]:
    assert {(name, queue) for name, _, queue in sent_tasks} <= {
        ("workers.tasks.evaluate_checkpoint", "gpu")}
    return [args[0] for _, args, _ in sent_tasks]


def finish(result_id: int) -> None:
    CheckpointResult.objects.filter(pk=result_id).update(status=Status.DONE,
                                                         finished_at=timezone.now())


def test_one_users_hundred_checkpoints_do_not_starve_anothers_one(
        owner, outsider, zoo, sent_tasks, settings, django_capture_on_commit_callbacks):
    settings.ZOORANK_USER_IN_FLIGHT = 2
    with django_capture_on_commit_callbacks(execute=True):
        many = submit(owner, zoo)
    assert sent_ids(sent_tasks) == many[:2]  # the rest wait their turn

    with django_capture_on_commit_callbacks(execute=True):
        one = submit(outsider, zoo[:1])
    assert sent_ids(sent_tasks) == many[:2] + one  # queued at once, behind only two

    finish(many[0])
    dispatch()
    assert sent_ids(sent_tasks) == many[:2] + one + many[2:3]
    assert CheckpointResult.objects.filter(queued_at__isnull=True).count() == 3


def test_users_take_turns_when_both_wait(owner, outsider, zoo, sent_tasks):
    a = submit(owner, zoo[:3], enqueue_work=False)
    b = submit(outsider, zoo[:3], enqueue_work=False)

    assert plan(cap=2) == [a[0], b[0], a[1], b[1]]
    assert dispatch(cap=2) == [a[0], b[0], a[1], b[1]]
    assert dispatch(cap=2) == []  # each row is sent once, and the cap holds
    assert sent_ids(sent_tasks) == [a[0], b[0], a[1], b[1]]


def test_a_cancelled_evaluation_frees_its_places(owner, zoo, sent_tasks, settings):
    settings.ZOORANK_USER_IN_FLIGHT = 1
    first = submit(owner, zoo[:2], enqueue_work=False)
    second = submit(owner, zoo[2:3], enqueue_work=False)
    assert dispatch() == first[:1]
    Evaluation.objects.filter(results__pk=first[0]).update(status=Status.FAILED)

    assert dispatch() == second  # the cancelled one's waiting row is never sent


def test_a_waiting_row_is_neither_stalled_nor_swept(owner, zoo, sent_tasks, settings):
    settings.ZOORANK_USER_IN_FLIGHT = 1
    rows = submit(owner, zoo[:3], enqueue_work=False)
    dispatch()
    long_ago = timezone.now() - timedelta(hours=3)
    CheckpointResult.objects.update(heartbeat_at=long_ago)
    Evaluation.objects.update(created_at=long_ago)
    evaluation = Evaluation.objects.get()

    assert list(stalled_results(evaluation).values_list("pk", flat=True)) == rows[:1]
    swept = healing.sweep()
    assert swept["checkpoints"] == rows[:1] and swept["dispatched"] == []
    assert sent_ids(sent_tasks) == [rows[0], rows[0]]  # sent, then queued again once


def test_a_retry_waits_its_turn_like_a_submission(owner, zoo, sent_tasks, settings,
                                                  django_capture_on_commit_callbacks):
    settings.ZOORANK_USER_IN_FLIGHT = 1
    rows = submit(owner, zoo[:2], enqueue_work=False)
    CheckpointResult.objects.update(status=Status.FAILED, queued_at=timezone.now())
    Evaluation.objects.update(status=Status.FAILED)
    evaluation = Evaluation.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        assert retry(evaluation) == 2
    assert sent_ids(sent_tasks) == rows[:1]
    assert CheckpointResult.objects.get(pk=rows[1]).queued_at is None


def test_rows_released_by_another_dispatcher_meanwhile_are_skipped(owner, outsider, zoo,
                                                                  sent_tasks, monkeypatch):
    from transferability import dispatch as dispatcher

    a = submit(owner, zoo[:2], enqueue_work=False)
    b = submit(outsider, zoo[:1], enqueue_work=False)
    real_waiting = dispatcher.waiting
    calls = []

    def waiting_then_released():
        calls.append(1)
        if len(calls) == 2:  # after the users were listed, before their rows are read
            CheckpointResult.objects.filter(pk__in=a).update(queued_at=timezone.now())
        return real_waiting()

    monkeypatch.setattr(dispatcher, "waiting", waiting_then_released)

    assert plan(cap=2) == b
