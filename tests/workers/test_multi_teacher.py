"""Several teachers into one student (sequential, parallel, soup), through the API and the
worker's job: steps, lineage, cancel, a worker that died, a soup whose run failed."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from tests.builders import image_folder_zip, saved_checkpoint
from transferability.datasets import create_target_dataset
from transferability.models import Status, Transfer, TransferStep
from transferability.submission import submit_evaluation
from transferability.transfers import cancel_transfer, submit_transfer
from workers import healing, jobs, transfers
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db
TEACHERS = ["t-resnet-1", "t-resnet-2", "t-vit"]
FAST = {"epochs": 1, "learning_rate": 1e-3}


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def evaluation(owner, tmp_path):
    archive = image_folder_zip(tmp_path / "c.zip", {"red": 10, "green": 10, "blue": 10}, seed=6)
    dataset = create_target_dataset(owner, "colours", archive)
    checkpoints = [saved_checkpoint("t-resnet-1", "test_resnet", seed=1),
                   saved_checkpoint("t-resnet-2", "test_resnet", seed=2),
                   saved_checkpoint("t-vit", "test_vit", seed=4),
                   saved_checkpoint("student-vit", "test_vit", seed=3)]
    evaluation = submit_evaluation(owner, dataset, checkpoints, metrics=["tmi"],
                                   enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE, evaluation.message
    return evaluation


def distilled_files() -> list[str]:
    folder = Path(settings.MEDIA_ROOT) / "weights" / "distilled"
    return sorted(p.name for p in folder.glob("*")) if folder.exists() else []


@pytest.mark.parametrize("mode, steps", [("sequential", 3), ("parallel", 3), ("soup", 4)])
def test_each_form_runs_through_the_api_with_a_step_per_teacher(evaluation, api, sent_tasks,
                                                                mode, steps):
    response = api.post("/api/transfers/", {
        "evaluation": evaluation.pk, "teachers": TEACHERS, "student": "student-vit",
        "mode": mode, **FAST}, format="json")
    assert response.status_code == 202, response.content
    transfers.transfer_knowledge(response.json()["id"])
    body = api.get(response["Location"]).json()
    assert body["status"] == "done", body["message"]
    assert body["mode"] == mode and body["recipe"] == {"epochs": 1, "learning_rate": 1e-3,
                                                       "temperature": 1.0}
    assert len(body["steps"]) == steps and sorted(body["teachers"]) == sorted(TEACHERS)
    for step in body["steps"]:
        assert step["status"] == "done"
        if mode != "parallel" or step["index"] == 0:
            assert set(step["flips"]) == set(TEACHERS), step
            assert step["delta"]["n_samples"] == body["delta"]["n_samples"]
    if mode == "soup":
        assert body["steps"][-1]["teacher"] is None and body["steps"][-1]["label"].startswith(
            "soup")
    if mode == "parallel":
        guided = body["steps"][0]["details"]["guided"]
        assert guided["candidates"] == ["initial student"] + TEACHERS
    if mode == "sequential":  # ascending held-out accuracy, the paper's default
        accuracy = body["details"]["teacher_accuracy"]
        assert [accuracy[t] for t in body["teachers"]] == sorted(accuracy.values())
    new = Checkpoint.objects.get(pk=body["checkpoint"])
    lineage = new.recipe["lineage"]
    assert sorted(lineage["teachers"]) == sorted(TEACHERS) and lineage["mode"] == mode
    assert lineage["target_top1"] == pytest.approx(body["delta"]["accuracy_after"], abs=0.01)


def test_the_recipe_is_steered_and_checked(evaluation, api, sent_tasks):
    for field, value, message in (("epochs", 0, "greater than or equal to 1"),
                                  ("learning_rate", 1.0, "less than or equal to 0.1"),
                                  ("temperature", 0, "greater than or equal to 0.1")):
        response = api.post("/api/transfers/", {"evaluation": evaluation.pk,
                                                "teacher": "t-vit", "student": "student-vit",
                                                field: value}, format="json")
        assert response.status_code == 400 and message in response.json()[field][0]
    both = api.post("/api/transfers/", {"evaluation": evaluation.pk, "teacher": "t-vit",
                                        "teachers": ["t-vit"], "student": "student-vit"},
                    format="json")
    assert both.status_code == 400 and "either teacher or teachers" in both.json()["detail"]
    assert not Transfer.objects.exists()


def test_a_cancelled_transfer_stops_at_the_next_batch_and_saves_nothing(
        evaluation, owner, monkeypatch):
    transfer = submit_transfer(owner, evaluation, TEACHERS, "student-vit", mode="sequential",
                               enqueue_work=False, **FAST)
    real, batches = transfers.Runs.progress, []

    def cancel_in_the_second_step(self, index, done, total):
        batches.append(index)
        if index == 1:
            cancel_transfer(transfer)
        return real(self, index, done, total)

    monkeypatch.setattr(transfers.Runs, "progress", cancel_in_the_second_step)
    transfers.transfer_knowledge(transfer.pk)
    transfer.refresh_from_db()
    assert transfer.status == Status.FAILED and transfer.message == "cancelled by its owner"
    assert batches.count(1) == 1  # not one more batch after the cancel
    assert transfer.result_checkpoint is None and distilled_files() == []
    statuses = list(transfer.steps.order_by("index").values_list("status", flat=True))
    assert statuses == ["done", "failed", "failed"]


def test_a_worker_killed_mid_transfer_is_healed_by_the_sweep(evaluation, owner, sent_tasks):
    transfer = submit_transfer(owner, evaluation, TEACHERS[:2], "student-vit", mode="soup",
                               enqueue_work=False, **FAST)
    # A worker claimed it, finished one run and died: the row is running, silent.
    assert jobs.claim(Transfer, transfer.pk, "gave up")
    TransferStep.objects.filter(transfer=transfer, index=0).update(status=Status.DONE,
                                                                    accuracy=1.0)
    Transfer.objects.filter(pk=transfer.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1))
    healing.sweep()
    assert ("workers.tasks.transfer_knowledge", (transfer.pk,), "gpu") in sent_tasks
    transfers.transfer_knowledge(transfer.pk)  # the redelivered task, on a live worker
    transfer.refresh_from_db()
    assert transfer.status == Status.DONE and transfer.attempts == 2, transfer.message
    assert transfer.steps.count() == 3 and not transfer.steps.exclude(status="done").exists()
    assert Checkpoint.objects.filter(recipe__lineage__transfer=transfer.pk).count() == 1


def test_a_soup_whose_single_teacher_run_failed_fails_and_leaves_no_checkpoint(evaluation,
                                                                               owner):
    transfer = submit_transfer(owner, evaluation, TEACHERS, "student-vit", mode="soup",
                               enqueue_work=False, **FAST)
    Path(Checkpoint.objects.get(name="t-resnet-2").weights_path).unlink()
    transfers.transfer_knowledge(transfer.pk)
    transfer.refresh_from_db()
    assert transfer.status == Status.FAILED
    assert transfer.message.startswith("the single-teacher run from t-resnet-2 failed, so "
                                       "there is no soup"), transfer.message
    failed = transfer.steps.get(teacher__name="t-resnet-2")
    assert failed.status == Status.FAILED and failed.message
    assert transfer.result_checkpoint is None and distilled_files() == []


def test_the_pages_propose_teachers_run_a_soup_and_show_its_steps(evaluation, owner, client,
                                                                 sent_tasks):
    client.force_login(owner)
    page = client.get(evaluation.get_absolute_url()).content.decode()
    assert 'name="teachers" multiple' in page and "Teachers for student-vit" in page
    assert 'class="secondary small use-proposal"' in page or "has anything to teach it" in page
    response = client.post(f"/evaluations/{evaluation.pk}/transfer/", {
        "teachers": TEACHERS[:2], "student": "student-vit", "mode": "soup", "epochs": "1",
        "learning_rate": "0.001", "temperature": ""})
    transfer = Transfer.objects.get()
    assert response["Location"] == transfer.get_absolute_url()
    assert (transfer.mode, transfer.epochs, transfer.learning_rate, transfer.temperature) == (
        "soup", 1, 1e-3, 1.0)
    pending = client.get(transfer.get_absolute_url()).content.decode()
    assert 'id="transfer-cancel-form"' in pending and "The charts appear as the steps" in pending
    transfers.transfer_knowledge(transfer.pk)
    done = client.get(transfer.get_absolute_url()).content.decode()
    assert done.count('<tr data-step=') == 3 and "soup of the runs above" in done
    assert 'id="transfer-accuracy"' in done and 'id="transfer-flips"' in done
    assert 'id="transfer-cancel-form"' not in done
    # Refused values say why, and nothing is made.
    refused = client.post(f"/evaluations/{evaluation.pk}/transfer/", {
        "teachers": ["t-vit"], "student": "student-vit", "epochs": "0"}, follow=True)
    assert "Transfer not started: epochs must be from 1 to 50, not 0" in refused.content.decode()
    assert Transfer.objects.count() == 1


def test_the_page_cancels_a_transfer_and_the_parallel_page_shows_who_guided(
        evaluation, owner, client, sent_tasks):
    client.force_login(owner)
    first = submit_transfer(owner, evaluation, TEACHERS, "student-vit", mode="parallel",
                            enqueue_work=False, **FAST)
    client.post(f"/transfers/{first.pk}/cancel/")
    first.refresh_from_db()
    assert first.status == Status.FAILED and first.message == "cancelled by its owner"
    transfers.transfer_knowledge(first.pk)  # its task arrives later: nothing to claim
    assert Checkpoint.objects.filter(recipe__lineage__transfer=first.pk).count() == 0
    again = client.post(f"/transfers/{first.pk}/cancel/", follow=True).content.decode()
    assert "not cancelled: the transfer has already finished" in again
    parallel = submit_transfer(owner, evaluation, TEACHERS, "student-vit", mode="parallel",
                               enqueue_work=False, **FAST)
    transfers.transfer_knowledge(parallel.pk)
    page = client.get(parallel.get_absolute_url()).content.decode()
    assert 'id="transfer-guidance"' in page and "Who guided each class" in page
