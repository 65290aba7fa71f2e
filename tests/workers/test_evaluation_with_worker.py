"""The whole path through a real Celery worker process: upload, submit, poll, rank."""

import math

import numpy as np
import pytest

from tests.builders import image_folder_zip, saved_checkpoint
from tests.conftest import wait_for
from zoo.models import Checkpoint

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def upload(api, tmp_path, classes=None, name="colours", seed=0):
    archive = image_folder_zip(tmp_path / f"{name}.zip",
                               classes or {"red": 10, "green": 10, "blue": 10}, seed=seed)
    with open(archive, "rb") as f:
        response = api.post("/api/datasets/", {"name": name, "file": f}, format="multipart")
    assert response.status_code == 202, response.content
    # The worker ingests it from the cpu queue.
    return wait_for(lambda: (body := api.get(response["Location"]).json())["state"] != "ingesting"
                    and body, timeout=120)


def run_evaluation(api, dataset_id, checkpoints="all", **extra):
    response = api.post("/api/evaluations/", {"dataset": dataset_id, "checkpoints": checkpoints,
                                              **extra}, format="json")
    assert response.status_code == 202, response.content
    location = response["Location"]
    finished = wait_for(
        lambda: (body := api.get(location).json())["status"] in ("done", "failed") and body,
        timeout=300, what="the evaluation to finish",
    )
    return finished


def test_it_takes_a_zip_from_upload_to_a_ranked_evaluation(api, tmp_path, worker_process):
    saved_checkpoint("tiny-resnet", "test_resnet", num_classes=10, seed=1,
                     source_classes=[str(i) for i in range(10)])
    saved_checkpoint("tiny-convnext", "test_convnext", seed=2)
    saved_checkpoint("tiny-vit", "test_vit", seed=3)
    dataset = upload(api, tmp_path)

    body = run_evaluation(api, dataset["id"])

    assert body["status"] == "done", body["message"]
    assert body["progress"] == 1.0
    results = body["results"]
    assert sorted(r["checkpoint"]["name"] for r in results) == ["tiny-convnext", "tiny-resnet", "tiny-vit"]
    for r in results:
        assert r["status"] == "done"
        assert math.isfinite(r["scores"]["tmi"])
        assert r["images_done"] == r["images_total"] == 30
        assert r["checkpoint"]["feature_dim"] > 0
        assert set(r["score_seconds"]) == set(r["scores"])  # what each metric cost
    assert sorted(r["rank"] for r in results) == [1, 2, 3]
    by_rank = sorted(results, key=lambda r: r["rank"])
    # Ranked by the lead predictor (the demo study's consensus without truth on the site).
    assert body["recommendation"]["lead"].startswith("consensus:")
    assert by_rank[0]["lead_score"] >= by_rank[1]["lead_score"] >= by_rank[2]["lead_score"]
    assert body["recommendation"]["checkpoint"] == by_rank[0]["checkpoint"]["name"]
    # Source-head metrics only for the checkpoint that has a head.
    with_head = next(r for r in results if r["checkpoint"]["name"] == "tiny-resnet")
    assert "leep" in with_head["scores"] and "nce" in with_head["scores"]
    assert all("leep" not in r["scores"] for r in results if r is not with_head)
    # Complementarity over all three, consistent with their accuracies.
    report = body["complementarity"]
    assert sorted(report["names"]) == sorted(r["checkpoint"]["name"] for r in results)
    flips, acc = np.array(report["positive_flips"]), np.array(report["accuracy"])
    np.testing.assert_allclose(acc[:, None] - acc[None, :], flips - flips.T, atol=1e-9)


def test_one_failing_checkpoint_does_not_fail_the_others(api, tmp_path, worker_process):
    saved_checkpoint("tiny-resnet", "test_resnet", seed=1)
    Checkpoint.objects.create(
        name="test_resnet.r160_in1k", architecture="test_resnet", pretrained_tag="r160_in1k",
        hub_id="timm/test_resnet.r160_in1k", input_size=[3, 32, 32], mean=[0.5] * 3,
        std=[0.5] * 3, num_classes=1000,
    )
    dataset = upload(api, tmp_path)

    body = run_evaluation(api, dataset["id"], metrics=["tmi", "logme"])

    assert body["status"] == "done"
    by_name = {r["checkpoint"]["name"]: r for r in body["results"]}
    assert by_name["tiny-resnet"]["status"] == "done"
    assert set(by_name["tiny-resnet"]["scores"]) == {"tmi", "logme"}
    failed = by_name["test_resnet.r160_in1k"]
    assert failed["status"] == "failed"
    # The suite's hub (tests/hub.py) has no such repository.
    assert "not on the hub: timm/test_resnet.r160_in1k" in failed["message"]
    assert failed["rank"] is None
    assert "1 of 2 checkpoints failed" in body["message"]


def test_a_second_identical_evaluation_extracts_nothing(api, tmp_path, worker_process):
    saved_checkpoint("tiny-resnet", "test_resnet", seed=1)
    saved_checkpoint("tiny-vit", "test_vit", seed=3)
    dataset = upload(api, tmp_path, seed=7)  # content no other test has cached

    first = run_evaluation(api, dataset["id"], metrics=["tmi"])
    second = run_evaluation(api, dataset["id"], metrics=["tmi", "knn_accuracy"])

    assert all(not r["features_cached"] for r in first["results"])
    assert all(r["features_cached"] and r["extraction_seconds"] == 0 for r in second["results"])
    tmi_first = {r["checkpoint"]["name"]: r["scores"]["tmi"] for r in first["results"]}
    tmi_second = {r["checkpoint"]["name"]: r["scores"]["tmi"] for r in second["results"]}
    assert tmi_first == tmi_second
    assert all("knn_accuracy" in r["scores"] for r in second["results"])


def test_ground_truth_is_measured_by_the_worker_and_judges_the_metrics(api, tmp_path,
                                                                       worker_process):
    saved_checkpoint("tiny-resnet", "test_resnet", seed=1, source_top1=90.0)
    saved_checkpoint("tiny-vit", "test_vit", seed=3, source_top1=60.0)
    dataset = upload(api, tmp_path)
    body = run_evaluation(api, dataset["id"], metrics=["tmi", "knn_accuracy"])
    assert body["status"] == "done", body["message"]

    response = api.post(f"/api/evaluations/{body['id']}/truth/", {}, format="json")
    assert response.status_code == 202, response.content
    truth = wait_for(
        lambda: (t := api.get(response["Location"]).json()["truth"])["status"]
        in ("done", "failed") and t,
        timeout=300, what="the ground truth to finish",
    )
    assert truth["status"] == "done", truth["message"]
    assert truth["mode"] == "finetune"
    assert set(truth["accuracy"]) == {"tiny-resnet", "tiny-vit"}
    # Chosen on validation from a search that tried the grid and, at a winning edge, beyond.
    assert all(len({run["learning_rate"] for run in r["runs"]}) >= 2 and r["chosen"]
               for r in truth["results"])
    assert {"tmi", "knn_accuracy", "source_accuracy", "param_count"} <= set(truth["agreement"])
