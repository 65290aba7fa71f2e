"""The REST API without a worker: uploads, validation, permissions, submission."""

import pytest

from tests.builders import image_folder_zip, saved_checkpoint
from transferability.metrics.baselines import KNN_SAMPLE_LIMIT
from transferability.models import CheckpointResult, Evaluation, MetricScore, TargetDataset
from transferability.datasets import datasets_root

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(api, tmp_path):
    archive = image_folder_zip(tmp_path / "d.zip", {"a": 4, "b": 4})
    with open(archive, "rb") as f:
        response = api.post("/api/datasets/", {"name": "ab", "file": f}, format="multipart")
    assert response.status_code == 201
    dataset_id = response.json()["id"]
    # WSGI servers accept only plain str header values (DRF's Hyperlink is a subclass).
    assert type(response["Location"]) is str
    assert response["Location"].endswith(f"/api/datasets/{dataset_id}/")
    return TargetDataset.objects.get(pk=dataset_id)


def test_it_needs_a_token():
    from rest_framework.test import APIClient

    assert APIClient().get("/api/evaluations/").status_code == 401
    assert APIClient().post("/api/datasets/", {}).status_code == 401


def test_it_creates_a_dataset_from_a_zip(api, dataset):
    assert dataset.class_names == ["a", "b"]
    assert dataset.class_counts == [4, 4]
    assert dataset.archive_bytes > 0
    assert dataset.root.is_dir()
    listed = api.get("/api/datasets/").json()
    assert [d["name"] for d in listed["results"]] == ["ab"]


def test_it_refuses_a_bad_zip_and_keeps_nothing(api, tmp_path):
    archive = image_folder_zip(tmp_path / "one.zip", {"only": 3})
    before = set(datasets_root().glob("*")) if datasets_root().exists() else set()
    with open(archive, "rb") as f:
        response = api.post("/api/datasets/", {"name": "one", "file": f}, format="multipart")
    assert response.status_code == 400
    assert "at least 2 class folders" in response.json()["file"][0]
    assert TargetDataset.objects.count() == 0
    after = set(datasets_root().glob("*")) if datasets_root().exists() else set()
    assert after == before


def test_it_submits_an_evaluation_after_commit_and_answers_202(api, dataset, sent_tasks,
                                                               django_capture_on_commit_callbacks):
    a = saved_checkpoint("ck-a")
    b = saved_checkpoint("ck-b", "test_vit")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": [a.pk, "ck-b"]},
                            format="json")
    assert response.status_code == 202
    evaluation = Evaluation.objects.get()
    assert response["Location"].endswith(f"/api/evaluations/{evaluation.pk}/")
    assert len(callbacks) == 1
    result_ids = set(CheckpointResult.objects.filter(evaluation=evaluation).values_list("pk", flat=True))
    assert {args[0] for _, args, _ in sent_tasks} == result_ids
    assert {(name, queue) for name, _, queue in sent_tasks} == {
        ("workers.tasks.evaluate_checkpoint", "gpu")}
    body = api.get(response["Location"]).json()
    assert body["status"] == "pending"
    listed = api.get("/api/evaluations/").json()
    assert [(e["id"], e["url"], e["status"]) for e in listed] == [
        (evaluation.pk, response["Location"], "pending")]
    assert {r["checkpoint"]["name"] for r in body["results"]} == {a.name, b.name}


@pytest.mark.parametrize("payload, message", [
    ({"checkpoints": []}, "list of checkpoint ids"),
    ({"checkpoints": ["nope"]}, "Unknown or disabled checkpoints: nope"),
    ({"checkpoints": "all", "metrics": ["bogus"]}, "bogus"),
    ({"checkpoints": "all", "correctness_source": "source"}, "no source head"),
])
def test_it_refuses_bad_submissions_with_a_reason(api, dataset, payload, message):
    saved_checkpoint("ck-a")
    response = api.post("/api/evaluations/", {"dataset": dataset.pk, **payload}, format="json")
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Evaluation.objects.count() == 0


def test_all_means_every_enabled_checkpoint(api, dataset, monkeypatch):
    saved_checkpoint("ck-a")
    saved_checkpoint("ck-off", enabled=False)
    response = api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": "all"},
                        format="json")
    assert response.status_code == 202
    assert [r["checkpoint"]["name"] for r in response.json()["results"]] == ["ck-a"]


def test_others_cannot_see_or_use_my_dataset_and_evaluations(api, outsider_api, dataset):
    saved_checkpoint("ck-a")
    response = api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": "all"},
                        format="json")
    location = response["Location"]
    assert outsider_api.get(location).status_code == 404
    assert outsider_api.get(f"/api/datasets/{dataset.pk}/").status_code == 404
    stolen = outsider_api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": "all"},
                               format="json")
    assert stolen.status_code == 400
    assert "No dataset" in stolen.content.decode()


def test_the_metric_registry_is_served(api):
    metrics = api.get("/api/metrics/").json()
    names = [m["name"] for m in metrics]
    assert names[0] == "tmi"
    assert {"logme", "leep", "knn_accuracy", "probe_accuracy"} <= set(names)
    assert next(m for m in metrics if m["name"] == "leep")["needs"] == "source_probs"
    by_name = {m["name"]: m for m in metrics}
    assert [n for n, m in by_name.items() if m["relative_to_set"]] == ["ncti"]
    assert by_name["knn_accuracy"]["sample_limit"] == KNN_SAMPLE_LIMIT
    assert by_name["tmi"]["sample_limit"] is None


@pytest.mark.parametrize("metrics, relative", [
    (None, ["ncti"]), (["tmi", "ncti"], ["ncti"]), (["tmi", "knn_accuracy"], []),
])
def test_an_evaluation_says_which_scores_are_relative_to_its_set(api, dataset, metrics,
                                                                  relative):
    saved_checkpoint("ck-a")
    payload = {"dataset": dataset.pk, "checkpoints": "all"}
    if metrics:
        payload["metrics"] = metrics
    response = api.post("/api/evaluations/", payload, format="json")
    assert response.json()["relative_to_set"] == relative
    assert api.get(response["Location"]).json()["relative_to_set"] == relative


def test_an_evaluation_gives_each_checkpoints_approximation_notes(api, dataset):
    saved_checkpoint("ck-a")
    response = api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": "all"},
                        format="json")
    result = CheckpointResult.objects.get()
    MetricScore.objects.create(result=result, metric="knn_accuracy", value=0.5,
                               details={"note": "k-NN on 5 of 8 samples"})
    MetricScore.objects.create(result=result, metric="tmi", value=1.0)
    MetricScore.objects.create(result=result, metric="knn_accuracy", layer="layer1",
                               value=0.25, details={"note": "k-NN on 5 of 8 samples"})

    body = api.get(response["Location"]).json()

    (only,) = body["results"]
    assert only["notes"] == {"knn_accuracy": "k-NN on 5 of 8 samples"}
    assert only["scores"] == {"knn_accuracy": 0.5, "tmi": 1.0}


@pytest.mark.parametrize("ids", [[10**20], [-1], [0]])
def test_ids_that_cannot_exist_are_unknown_not_a_crash(api, dataset, ids):
    saved_checkpoint("ck-a")
    response = api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": ids},
                        format="json")
    assert response.status_code == 400
    assert "Unknown or disabled checkpoints" in response.content.decode()


def test_the_page_form_refuses_ids_that_cannot_exist(client, owner, dataset):
    saved_checkpoint("ck-a")
    client.force_login(owner)
    response = client.post(f"/datasets/{dataset.pk}/",
                           {"checkpoints": ["1e20"], "correctness_source": "target"})
    assert response.status_code == 200
    assert "not one of the available choices" in response.content.decode()
    response = client.post(f"/datasets/{dataset.pk}/",
                           {"checkpoints": [str(10**20)], "correctness_source": "target"})
    assert response.status_code == 200
    assert Evaluation.objects.count() == 0


def test_the_web_process_does_not_load_torch():
    # Pages and API never load a model: importing every URL's views must not pull in
    # torch (4 s and ~900 MB per web process).
    import subprocess
    import sys

    code = ("import django, os, sys; os.environ['DJANGO_SETTINGS_MODULE']='config.test_settings';"
            "django.setup(); import config.urls; from django.urls import get_resolver;"
            "get_resolver().url_patterns; from transferability import submission;"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


def test_an_unreachable_queue_fails_the_evaluation_with_a_reason_and_retry_recovers(
        api, dataset, monkeypatch, sent_tasks, django_capture_on_commit_callbacks):
    saved_checkpoint("ck-a")

    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    from config.celery import app

    capture = app.send_task  # sent_tasks' stand-in, for when the queue is back
    monkeypatch.setattr(app, "send_task", down)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": "all"},
                            format="json")
    body = api.get(response["Location"]).json()
    assert body["status"] == "failed"
    assert "the task queue could not be reached: broker down" in body["message"]
    assert [r["status"] for r in body["results"]] == ["failed"]

    monkeypatch.setattr(app, "send_task", capture)  # the queue is back
    with django_capture_on_commit_callbacks(execute=True):
        retried = api.post(f"{response['Location']}retry/")
    assert retried.status_code == 202
    assert [args[0] for _, args, _ in sent_tasks] == [CheckpointResult.objects.get().pk]
    assert retried.json()["results"][0]["status"] == "pending"


def test_deleting_a_dataset_removes_its_folder(api, dataset):
    root = dataset.root
    assert root.is_dir()
    assert api.delete(f"/api/datasets/{dataset.pk}/").status_code == 204
    assert not root.exists()
    assert TargetDataset.objects.count() == 0
