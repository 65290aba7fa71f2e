"""Knowledge transfer (KL+DP) from an evaluation: requests, the job, the new checkpoint."""

import re

import pytest

from tests.builders import image_folder_zip, saved_checkpoint
from transferability.datasets import create_target_dataset
from transferability.models import CheckpointResult, Status, Transfer
from transferability.submission import submit_evaluation
from workers import jobs, transfers
from zoo.loading import build_model
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluation(owner, tmp_path):
    archive = image_folder_zip(tmp_path / "c.zip", {"red": 12, "green": 12, "blue": 12}, seed=6)
    dataset = create_target_dataset(owner, "colours", archive)
    checkpoints = [saved_checkpoint("teacher-resnet", "test_resnet", num_classes=10, seed=1,
                                    source_classes=[str(i) for i in range(10)]),
                   saved_checkpoint("student-vit", "test_vit", seed=3)]
    evaluation = submit_evaluation(owner, dataset, checkpoints, metrics=["tmi"],
                                   enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE, evaluation.message
    return evaluation


def test_a_transfer_reports_delta_and_flips_and_saves_the_student(evaluation, owner, api,
                                                                  sent_tasks,
                                                                  django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/transfers/", {"evaluation": evaluation.pk,
                                                "teacher": "teacher-resnet",
                                                "student": "student-vit"}, format="json")
    assert response.status_code == 202, response.content
    transfer_id = response.json()["id"]
    assert sent_tasks == [("workers.tasks.transfer_knowledge", (transfer_id,), "gpu")]
    assert api.get(response["Location"]).json()["status"] == "pending"

    transfers.transfer_knowledge(transfer_id)
    body = api.get(response["Location"]).json()
    assert body["status"] == "done", body["message"]
    delta = body["delta"]
    assert delta["n_samples"] == 11  # the ground truth's held-out split
    assert delta["delta_accuracy"] == pytest.approx(delta["accuracy_after"]
                                                    - delta["accuracy_before"])
    assert set(body["flips_before"]) == set(body["flips_after"]) == {"positive", "negative"}
    new = Checkpoint.objects.get(pk=body["checkpoint"])
    assert new.owner == owner  # made from alice's data: hers, not the shared zoo's
    lineage = new.recipe["lineage"]
    assert (lineage["teacher"], lineage["student"], lineage["dataset"]) == (
        "teacher-resnet", "student-vit", "colours")
    assert new.architecture == "test_vit" and new.source_classes == ["blue", "green", "red"]
    # Its held-out accuracy on the dataset it was made on is a target accuracy, kept in the
    # lineage with the dataset it names (transferability.leakage), not a source top-1.
    assert new.source_top1 is None
    assert lineage["target_top1"] == pytest.approx(delta["accuracy_after"], abs=0.01)
    dataset = evaluation.dataset
    assert lineage["trained_on"] == [{"id": dataset.pk, "name": "colours",
                                      "content_hash": dataset.content_hash}]
    assert new.trained_on(dataset) is not None
    build_model(new)  # it loads like any other checkpoint...

    again = submit_evaluation(owner, evaluation.dataset, [new], metrics=["tmi", "leep"],
                              enqueue_work=False)
    jobs.run_inline(again.pk)  # ...and is evaluated like any other, head included
    result = CheckpointResult.objects.get(evaluation=again)
    assert result.status == Status.DONE, result.message
    assert set(result.scores.values_list("metric", flat=True)) == {"tmi", "leep"}


def test_the_unsupervised_variant_runs_too(evaluation, owner):
    from transferability.transfers import submit_transfer

    transfer = submit_transfer(owner, evaluation, "student-vit", "teacher-resnet",
                               variant="unsupervised", enqueue_work=False)
    transfers.transfer_knowledge(transfer.pk)
    transfer.refresh_from_db()
    assert transfer.status == Status.DONE, transfer.message
    assert transfer.details["supervised"] is False
    transfers.transfer_knowledge(transfer.pk)  # a redelivery changes nothing
    assert Checkpoint.objects.filter(recipe__lineage__transfer=transfer.pk).count() == 1


@pytest.mark.parametrize("body, code, message", [
    ({"teacher": "student-vit", "student": "student-vit"}, 400, "cannot be one of its teachers"),
    ({"teacher": "nope", "student": "student-vit"}, 400, "teacher nope is not a finished"),
    ({"teacher": 2**70, "student": "student-vit"}, 400, "is not a finished"),
    ({"teacher": [1], "student": "student-vit"}, 400, "checkpoint id or name"),
    ({"teacher": "teacher-resnet", "student": "student-vit", "variant": "x"}, 400, "valid choice"),
])
def test_bad_transfer_requests_say_why(evaluation, api, sent_tasks, body, code, message):
    response = api.post("/api/transfers/", {"evaluation": evaluation.pk, **body}, format="json")
    assert response.status_code == code
    assert message in response.content.decode()
    assert not Transfer.objects.exists()


def test_transfers_are_private_and_wait_for_the_evaluation(evaluation, api, outsider_api,
                                                           sent_tasks):
    request = {"evaluation": evaluation.pk, "teacher": "teacher-resnet", "student": "student-vit"}
    refused = outsider_api.post("/api/transfers/", request, format="json")
    assert refused.status_code == 400 and "of yours" in refused.content.decode()
    created = api.post("/api/transfers/", request, format="json").json()
    assert outsider_api.get(created["url"]).status_code == 404
    assert outsider_api.get("/api/transfers/").json()["results"] == []
    evaluation.status = Status.RUNNING
    evaluation.save()
    assert api.post("/api/transfers/", request, format="json").status_code == 409


def test_the_page_suggests_a_pair_and_lists_transfers(evaluation, owner, client, sent_tasks):
    client.force_login(owner)
    page = client.get(f"/evaluations/{evaluation.pk}/").content.decode()
    assert 'id="transfer-form"' in page and 'id="transfer-suggestion"' in page
    # A teacher is suggested only when it is more accurate than the student (no transfer
    # measured on this site yet to estimate the gain from).
    recommended = re.search(r'Take <a href="[^"]+"><strong>([^<]+)</strong>', page).group(1)
    stronger = any(p["positive_flips"] > p["negative_flips"]
                   for p in evaluation.complementarity["pairs"] if p["b"] == recommended)
    assert ("Suggested:" in page) == stronger and ("No transfer is suggested" in page) != stronger
    response = client.post(f"/evaluations/{evaluation.pk}/transfer/",
                           {"teacher": "teacher-resnet", "student": "student-vit"})
    assert response.status_code == 302
    transfer = Transfer.objects.get()
    assert response["Location"] == transfer.get_absolute_url()
    own_page = client.get(response["Location"]).content.decode()
    assert 'id="transfer-steps"' in own_page and "teacher-resnet" in own_page
    page = client.get(f"/evaluations/{evaluation.pk}/").content.decode()
    assert 'id="transfers"' in page and "teacher-resnet" in page
    refused = client.post(f"/evaluations/{evaluation.pk}/transfer/",
                          {"teacher": "teacher-resnet", "student": "teacher-resnet"}, follow=True)
    assert "Transfer not started: the student cannot be one of its teachers" in \
        refused.content.decode()
