"""Datasets, evaluations, ground truths and transfers in the admin: look, re-run, delete."""

import uuid

import pytest
from django.urls import reverse

from transferability.models import (CheckpointResult, Evaluation, GroundTruth, Status,
                                    TargetDataset, Transfer, TruthResult)
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluation(admin_user):
    dataset = TargetDataset.objects.create(
        owner=admin_user, name="flowers", store_dir=uuid.uuid4().hex, class_names=["a", "b"],
        class_counts=[3, 4], num_images=12345, content_hash="ab" * 32, archive_bytes=2_500_000)
    evaluation = Evaluation.objects.create(owner=admin_user, dataset=dataset, status=Status.DONE)
    for name, status in (("ok-net", Status.DONE), ("broken-net", Status.FAILED)):
        checkpoint = Checkpoint.objects.create(name=name, architecture="resnet18",
                                               input_size=[3, 32, 32], mean=[0.5] * 3,
                                               std=[0.5] * 3)
        CheckpointResult.objects.create(evaluation=evaluation, checkpoint=checkpoint,
                                        status=status, message="no weights" if status ==
                                        Status.FAILED else "")
    return evaluation


def test_every_model_has_a_list_and_a_read_only_page(admin_client, evaluation):
    truth = GroundTruth.objects.create(evaluation=evaluation, status=Status.DONE)
    ok = Checkpoint.objects.get(name="ok-net")
    TruthResult.objects.create(truth=truth, checkpoint=ok, status=Status.DONE, accuracy=91.5)
    transfer = Transfer.objects.create(owner=evaluation.owner, evaluation=evaluation, teacher=ok,
                                       student=Checkpoint.objects.get(name="broken-net"),
                                       status=Status.DONE, delta={"delta_accuracy": 1.25})
    dataset_list = admin_client.get(reverse("admin:transferability_targetdataset_changelist"))
    assert "12,345" in dataset_list.content.decode() and "2.5 MB" in dataset_list.content.decode()
    refused = TargetDataset.objects.create(
        owner=evaluation.owner, name="broken", store_dir=uuid.uuid4().hex, state="refused",
        message="the file is not a zip archive", content_hash="")
    by_state = admin_client.get(reverse("admin:transferability_targetdataset_changelist"),
                                {"state__exact": "refused"}).content.decode()
    assert "broken" in by_state and "flowers" not in by_state
    detail = admin_client.get(reverse("admin:transferability_targetdataset_change",
                                      args=[refused.pk])).content.decode()
    assert "the file is not a zip archive" in detail
    listing = admin_client.get(reverse("admin:transferability_evaluation_changelist"))
    assert listing.status_code == 200 and "100 %" in listing.content.decode()
    page = admin_client.get(reverse("admin:transferability_evaluation_change",
                                    args=[evaluation.pk])).content.decode()
    assert "broken-net" in page and "no weights" in page
    assert 'name="status"' not in page  # what workers computed is not editable
    for name, obj in (("groundtruth", truth), ("transfer", transfer)):
        response = admin_client.get(reverse(f"admin:transferability_{name}_change",
                                            args=[obj.pk]))
        assert response.status_code == 200, name
    assert "+1.25" in admin_client.get(
        reverse("admin:transferability_transfer_changelist")).content.decode()
    assert admin_client.get(reverse("admin:transferability_targetdataset_add")).status_code == 403
    assert admin_client.get(reverse("admin:transferability_evaluation_add")).status_code == 403


def test_rerun_queues_the_failed_checkpoints(admin_client, evaluation, sent_tasks,
                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:transferability_evaluation_changelist"), {
            "action": "rerun", "_selected_action": [evaluation.pk]}, follow=True)
    [message] = [str(m) for m in response.context["messages"]]
    assert message == "1 checkpoint queued again."
    failed = CheckpointResult.objects.get(checkpoint__name="broken-net")
    assert sent_tasks == [("workers.tasks.evaluate_checkpoint", (failed.pk,), "gpu")]
    assert failed.__class__.objects.get(pk=failed.pk).status == Status.PENDING
    again = admin_client.post(reverse("admin:transferability_evaluation_changelist"), {
        "action": "rerun", "_selected_action": [evaluation.pk]}, follow=True)
    [message] = [str(m) for m in again.context["messages"]]
    assert "Nothing to re-run in" in message and "still running" in message
