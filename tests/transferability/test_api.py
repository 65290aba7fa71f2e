"""The REST API without a worker: uploads, validation, permissions, submission."""

import pytest

from tests.builders import image_folder_zip, saved_checkpoint
from transferability.metrics.baselines import KNN_SAMPLE_LIMIT
from transferability.models import CheckpointResult, Evaluation, MetricScore, TargetDataset
from transferability.datasets import datasets_root
from workers.ingest import ingest_upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(api, tmp_path, sent_tasks, django_capture_on_commit_callbacks):
    archive = image_folder_zip(tmp_path / "d.zip", {"a": 4, "b": 4})
    with django_capture_on_commit_callbacks(execute=True), open(archive, "rb") as f:
        response = api.post("/api/datasets/", {"name": "ab", "file": f}, format="multipart")
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "ingesting" and body["num_images"] == 0
    # WSGI servers accept only plain str header values (DRF's Hyperlink is a subclass).
    assert type(response["Location"]) is str
    assert response["Location"].endswith(f"/api/datasets/{body['id']}/")
    # The ingest goes to a worker on the cpu queue; here the job runs in this process.
    assert sent_tasks == [("workers.tasks.ingest_dataset", (body["id"],), "cpu")]
    assert ingest_upload(body["id"]) == "ready"
    sent_tasks.clear()
    return TargetDataset.objects.get(pk=body["id"])


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


def test_it_refuses_a_bad_zip_and_keeps_nothing(api, tmp_path, sent_tasks):
    archive = image_folder_zip(tmp_path / "one.zip", {"only": 3})
    before = set(datasets_root().glob("*")) if datasets_root().exists() else set()
    with open(archive, "rb") as f:
        response = api.post("/api/datasets/", {"name": "one", "file": f}, format="multipart")
    assert response.status_code == 202
    assert ingest_upload(response.json()["id"]) == "refused"
    body = api.get(response["Location"]).json()
    assert body["state"] == "refused" and "at least 2 class folders" in body["message"]
    after = set(datasets_root().glob("*")) if datasets_root().exists() else set()
    assert after == before


def test_it_refuses_what_is_not_a_zip_at_once(api, tmp_path):
    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_bytes(b"plain text, not a zip archive")
    with open(not_a_zip, "rb") as f:
        response = api.post("/api/datasets/", {"name": "notes", "file": f}, format="multipart")
    assert response.status_code == 400
    assert response.json()["file"] == ["the file is not a zip archive"]
    assert TargetDataset.objects.count() == 0


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
    assert listed["count"] == 1 and listed["next"] is None
    assert [(e["id"], e["url"], e["status"]) for e in listed["results"]] == [
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
    metrics = api.get("/api/metrics/").json()["results"]
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


# Discoverability: the root, the browsable API's forms, pagination.

def test_the_root_lists_every_collection_by_absolute_url(api):
    from rest_framework.test import APIClient

    assert APIClient().get("/api/").status_code == 401
    root = api.get("/api/").json()
    assert list(root) == ["datasets", "evaluations", "transfers", "checkpoints", "metrics",
                          "schema", "docs"]
    for name, url in root.items():
        assert url.startswith("http://testserver/api/"), (name, url)
        response = api.get(url, {"format": "json"} if name == "schema" else {})
        assert response.status_code == 200, (name, url, response.status_code)


def test_the_browsable_api_uploads_a_dataset_from_its_form(client, owner, tmp_path):
    client.force_login(owner)
    page = client.get("/api/datasets/", HTTP_ACCEPT="text/html").content.decode()
    form = page[page.index('enctype="multipart/form-data"'):]
    assert '<input name="file"  type="file"' in form
    assert 'name="class_names"' not in page  # no server-side fields to fill in
    archive = image_folder_zip(tmp_path / "f.zip", {"a": 3, "b": 3})
    with open(archive, "rb") as f:  # what the form sends
        response = client.post("/api/datasets/", {"name": "from-form", "file": f},
                               HTTP_ACCEPT="text/html")
    assert response.status_code == 202
    assert TargetDataset.objects.get().name == "from-form"


@pytest.mark.parametrize("url", ["/api/evaluations/", "/api/transfers/"])
def test_the_browsable_api_forms_post_the_submission_fields(client, owner, url):
    client.force_login(owner)
    page = client.get(url, HTTP_ACCEPT="text/html").content.decode()
    assert page.count('name="evaluation"' if "transfers" in url else 'name="checkpoints"') >= 1
    assert 'name="progress"' not in page


def _transfer(owner, evaluation, teacher, student):
    from transferability.models import Transfer

    return Transfer.objects.create(owner=owner, evaluation=evaluation, teacher=teacher,
                                   student=student)


def test_evaluations_and_transfers_are_paginated_newest_first(api, owner, dataset, monkeypatch,
                                                              outsider_api):
    monkeypatch.setattr("rest_framework.pagination.PageNumberPagination.page_size", 2)
    a, b = saved_checkpoint("ck-a"), saved_checkpoint("ck-b", "test_vit")
    made = [api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": "all"},
                     format="json").json()["id"] for _ in range(3)]
    transfers = [_transfer(owner, Evaluation.objects.get(pk=pk), a, b).pk for pk in made]

    for url, ids in (("/api/evaluations/", made), ("/api/transfers/", transfers)):
        first = api.get(url).json()
        assert set(first) == {"count", "next", "previous", "results"}
        assert first["count"] == 3 and first["previous"] is None
        assert [e["id"] for e in first["results"]] == ids[::-1][:2]
        second = api.get(first["next"]).json()
        assert [e["id"] for e in second["results"]] == ids[:1]
        assert second["next"] is None and second["previous"]
        assert outsider_api.get(url).json()["count"] == 0

    metrics = api.get("/api/metrics/").json()
    assert metrics["count"] > 2 and len(metrics["results"]) == 2


# One error format: a JSON object with a "detail" everywhere.

def test_every_error_is_json_with_a_detail(api, dataset, tmp_path, outsider_api):
    from rest_framework.test import APIClient

    def error(response, code):
        assert response.status_code == code, response.content
        assert response["Content-Type"].startswith("application/json")
        body = response.json()
        assert isinstance(body["detail"], str) and body["detail"]
        return body

    saved_checkpoint("ck-a")
    error(APIClient().get("/api/evaluations/"), 401)
    error(api.get("/api/evaluations/999999/"), 404)
    error(api.get("/api/no-such-thing/"), 404)  # outside DRF's views
    error(api.put(f"/api/datasets/{dataset.pk}/", {}), 405)
    error(api.post("/api/evaluations/", "{", content_type="application/json"), 400)

    body = error(api.post("/api/datasets/", {"name": "x"}, format="multipart"), 400)
    assert body == {"detail": "file: No file was submitted.",
                    "file": ["No file was submitted."]}
    body = error(api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": "all",
                                                "metrics": ["bogus"]}, format="json"), 400)
    assert body["detail"].startswith("metrics.0: ") and "bogus" in body["detail"]
    assert "bogus" in str(body["metrics"])
    body = error(api.post("/api/transfers/", {"evaluation": 999, "teacher": 1, "student": 2},
                          format="json"), 400)
    assert body == {"detail": "evaluation: No evaluation 999 of yours.",
                    "evaluation": ["No evaluation 999 of yours."]}
    not_a_zip = tmp_path / "one.zip"
    not_a_zip.write_bytes(b"not a zip")
    with open(not_a_zip, "rb") as f:
        body = error(api.post("/api/datasets/", {"name": "one", "file": f},
                              format="multipart"), 400)
    assert body == {"detail": "file: the file is not a zip archive",
                    "file": ["the file is not a zip archive"]}


def test_a_server_error_in_the_api_answers_json(owner, monkeypatch):
    from rest_framework.test import APIClient

    from transferability.api import views

    def broken(self, request, pk):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.EvaluationDetail, "get", broken)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(owner)
    response = client.get("/api/evaluations/1/")
    assert response.status_code == 500
    assert response.json() == {"detail": "Server error: the request could not be completed."}


# Cancelling and deleting an evaluation.

@pytest.fixture
def pending(api, dataset, sent_tasks, django_capture_on_commit_callbacks):
    saved_checkpoint("ck-a")
    saved_checkpoint("ck-b", "test_vit")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": "all"},
                            format="json")
    assert response.status_code == 202
    return Evaluation.objects.get(pk=response.json()["id"])


def test_cancelling_fails_the_unfinished_checkpoints_and_queued_tasks_find_nothing(
        api, outsider_api, pending, sent_tasks):
    from workers import jobs

    done = pending.results.order_by("pk").first()
    CheckpointResult.objects.filter(pk=done.pk).update(status="done")
    url = f"/api/evaluations/{pending.pk}/cancel/"
    assert outsider_api.post(url).status_code == 404
    response = api.post(url)
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["message"]) == ("failed", "cancelled")
    by_id = {r.pk: r for r in pending.results.all()}
    assert by_id.pop(done.pk).status == "done"  # finished work stays
    assert [(r.status, r.message) for r in by_id.values()] == [
        ("failed", "cancelled by its owner")]

    # The tasks already on the queue arrive: nothing is claimed, nothing is scored.
    for _, (result_id,), _ in sent_tasks:
        assert jobs.evaluate_checkpoint(result_id) is None
    cancelled = CheckpointResult.objects.get(pk=next(iter(by_id)))
    assert (cancelled.status, cancelled.message, cancelled.attempts) == (
        "failed", "cancelled by its owner", 0)
    pending.refresh_from_db()
    assert (pending.status, pending.message) == ("failed", "cancelled")

    again = api.post(url)
    assert again.status_code == 409
    assert again.json() == {"detail": "the evaluation has already finished (failed)"}


def test_deleting_an_evaluation_cancels_it_and_removes_its_results(api, outsider_api, pending,
                                                                   sent_tasks):
    from workers import jobs

    url = f"/api/evaluations/{pending.pk}/"
    assert outsider_api.delete(url).status_code == 404
    response = api.delete(url)
    assert response.status_code == 204 and not response.content
    assert not Evaluation.objects.exists() and not CheckpointResult.objects.exists()
    assert api.get(url).status_code == 404
    for _, (result_id,), _ in sent_tasks:  # queued before the delete: nothing to do
        assert jobs.evaluate_checkpoint(result_id) is None
    assert TargetDataset.objects.count() == 1  # the dataset stays


def test_an_evaluation_is_not_deleted_while_its_ground_truth_is_measured(api, pending):
    from transferability.models import GroundTruth

    Evaluation.objects.filter(pk=pending.pk).update(status="done")
    truth = GroundTruth.objects.create(evaluation=pending, status="running")
    response = api.delete(f"/api/evaluations/{pending.pk}/")
    assert response.status_code == 409
    assert "ground truth is being measured" in response.json()["detail"]
    assert Evaluation.objects.filter(pk=pending.pk).exists()
    GroundTruth.objects.filter(pk=truth.pk).update(status="done")
    assert api.delete(f"/api/evaluations/{pending.pk}/").status_code == 204


# The submission throttle.

@pytest.fixture
def submit_rate(settings):
    from django.core.cache import caches

    caches["limits"].clear()
    settings.ZOORANK_SUBMIT_RATE = "3/minute"
    yield
    caches["limits"].clear()


def test_submissions_beyond_the_rate_answer_429_with_when_to_retry(submit_rate, api,
                                                                   outsider_api, dataset,
                                                                   monkeypatch):
    import time

    from transferability.api.throttling import SubmissionThrottle

    now = time.time()
    monkeypatch.setattr(SubmissionThrottle, "timer", lambda self: now)
    saved_checkpoint("ck-a")
    evaluate = {"dataset": dataset.pk, "checkpoints": "all"}
    # The dataset upload was the first submission; any submit view counts.
    assert api.post("/api/evaluations/", evaluate, format="json").status_code == 202
    assert api.post("/api/transfers/", {}, format="json").status_code == 400
    refused = api.post("/api/evaluations/", evaluate, format="json")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "60"
    assert refused.json() == {
        "detail": "Too many submissions: at most 3 per minute, pages and API together. "
                  "Try again in 60 seconds.",
        "retry_after": 60}
    assert Evaluation.objects.count() == 1
    evaluation = Evaluation.objects.get()
    assert api.post(f"/api/evaluations/{evaluation.pk}/truth/", {}).status_code == 429
    # Reads, cancelling and other users go on.
    assert api.get("/api/evaluations/").status_code == 200
    assert api.post(f"/api/evaluations/{evaluation.pk}/cancel/").status_code == 200
    assert outsider_api.post("/api/transfers/", {}, format="json").status_code == 400
    # A minute later the user may submit again.
    monkeypatch.setattr(SubmissionThrottle, "timer", lambda self: now + 61)
    assert api.post("/api/evaluations/", evaluate, format="json").status_code == 202


def test_a_throttle_without_its_cache_lets_submissions_through(api, dataset, submit_rate,
                                                               monkeypatch):
    from django.core.cache import caches

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(caches["limits"], "get", down)
    saved_checkpoint("ck-a")
    for _ in range(4):
        response = api.post("/api/evaluations/", {"dataset": dataset.pk, "checkpoints": "all"},
                            format="json")
        assert response.status_code == 202


@pytest.mark.parametrize("url, body", [
    ("/api/evaluations/", {"checkpoints": ["ck-a", "a\x00b"]}),
    ("/api/transfers/", {"evaluation": 1, "teacher": "a\x00b", "student": "ck-a"}),
])
def test_a_nul_character_in_a_checkpoint_name_is_refused_not_a_server_error(api, dataset,
                                                                            sent_tasks, url,
                                                                            body):
    """Found by the fuzzer on PostgreSQL, which refuses NUL in a query parameter."""
    saved_checkpoint("ck-a")
    response = api.post(url, {"dataset": dataset.pk, **body}, format="json")
    assert response.status_code == 400, response.content
    assert "NUL characters" in response.content.decode()
    assert not sent_tasks
