"""Ground truth on request: the jobs in-process, the API, and the agreement it reports."""

import numpy as np
import pytest

from tests.builders import colours_dataset, evaluated, saved_checkpoint
from transferability.models import GroundTruth, Status, TruthResult
from transferability.results import ranked_rows
from transferability.submission import SubmissionError
from transferability.verification import REFERENCES, submit_truth, truth_payload
from workers import verification

pytestmark = pytest.mark.django_db

MEASURES = {"weighted_tau", "kendall_tau", "top1_relative_accuracy"}


@pytest.fixture
def evaluation(owner, tmp_path):
    checkpoints = [saved_checkpoint("ck-resnet", "test_resnet", num_classes=10, seed=1,
                                    source_top1=91.0,
                                    source_classes=[str(i) for i in range(10)]),
                   saved_checkpoint("ck-convnext", "test_convnext", seed=2, source_top1=80.0),
                   saved_checkpoint("ck-vit", "test_vit", seed=3, source_top1=70.0)]
    return evaluated(owner, colours_dataset(owner, tmp_path), checkpoints,
                     metrics=["tmi", "logme", "knn_accuracy", "probe_accuracy"])


def test_probe_truth_measures_every_checkpoint_and_judges_every_metric(evaluation, api):
    truth = submit_truth(evaluation, mode="probe", enqueue_work=False)
    verification.run_truth_inline(truth.pk)
    truth.refresh_from_db()
    assert truth.status == Status.DONE, truth.message

    body = api.get(f"/api/evaluations/{evaluation.pk}/").json()["truth"]
    assert body["status"] == "done" and body["mode"] == "probe"
    assert set(body["accuracy"]) == {"ck-resnet", "ck-convnext", "ck-vit"}
    assert all(0.0 <= a <= 100.0 for a in body["accuracy"].values())
    # Every metric and baseline that was scored, and the three references.
    expected = {"tmi", "logme", "knn_accuracy", "probe_accuracy"} | {r.name for r in REFERENCES}
    assert set(body["agreement"]) == expected
    for name, entry in body["agreement"].items():
        assert MEASURES <= set(entry), name
        assert entry["checkpoints"] == 3
        assert entry["top1_relative_accuracy"] is not None
        assert 0.0 < entry["top1_relative_accuracy"] <= 1.0
    assert body["spread"]["range"] == pytest.approx(
        max(body["accuracy"].values()) - min(body["accuracy"].values()))
    assert body["agreement"]["source_accuracy"]["kind"] == "reference"


def test_the_agreement_follows_the_truth(evaluation, api):
    """With accuracies set in the order of source accuracy, that reference agrees fully."""
    truth = submit_truth(evaluation, mode="probe", enqueue_work=False)
    for row in truth.results.select_related("checkpoint"):
        row.status, row.accuracy = Status.DONE, row.checkpoint.source_top1 / 2
        row.save()
    GroundTruth.objects.filter(pk=truth.pk).update(status=Status.DONE)
    agreement = api.get(f"/api/evaluations/{evaluation.pk}/").json()["truth"]["agreement"]
    assert agreement["source_accuracy"]["kendall_tau"] == pytest.approx(1.0)
    assert agreement["source_accuracy"]["weighted_tau"] == pytest.approx(1.0)
    assert agreement["source_accuracy"]["top1_relative_accuracy"] == 1.0


def test_finetune_truth_chooses_on_validation_and_repeats_over_seeds(evaluation):
    truth = submit_truth(evaluation, checkpoints=["ck-resnet", "ck-vit"], enqueue_work=False,
                         seeds=2)
    assert truth.mode == "finetune" and truth.seeds == 2
    verification.run_truth_inline(truth.pk)
    rows = {r.checkpoint.name: r for r in TruthResult.objects.filter(truth=truth)}
    assert set(rows) == {"ck-resnet", "ck-vit"}
    for row in rows.values():
        assert row.status == Status.DONE, row.message
        details = row.details
        assert details["test"] == 11 and details["seeds"] == 2  # ceil(30 % of 36)
        assert [s["seed"] for s in details["per_seed"]] == [0, 1]
        assert row.accuracy == pytest.approx(np.mean([s["accuracy"]
                                                      for s in details["per_seed"]]))
        assert {r["seed"] for r in details["runs"]} == {0, 1}
        # At least the grid, plus a step beyond an edge that won.
        assert len({(r["seed"], r["learning_rate"]) for r in details["runs"]}) >= 4
        assert isinstance(details["at_edge"], bool) and "learning_rate" in details["chosen"]
    payload = truth_payload(evaluation, ranked_rows(evaluation))
    assert payload["seeds"] == 2
    assert payload["stability"] is None or -1.0 <= payload["stability"] <= 1.0
    result = payload["results"][0]
    assert result["runs"] and set(result["runs"][0]) >= {"seed", "learning_rate", "epochs",
                                                           "val_accuracy", "test_accuracy"}
    # A redelivered task changes nothing.
    before = rows["ck-vit"].accuracy
    assert verification.verify_checkpoint(rows["ck-vit"].pk) is None
    assert TruthResult.objects.get(pk=rows["ck-vit"].pk).accuracy == before


def test_api_post_answers_202_then_409_while_running_and_replaces_when_finished(
        evaluation, api, sent_tasks, django_capture_on_commit_callbacks):
    url = f"/api/evaluations/{evaluation.pk}/truth/"
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url, {"mode": "probe"}, format="json")
    assert response.status_code == 202, response.content
    assert response["Location"].endswith(f"/api/evaluations/{evaluation.pk}/")
    assert response.json()["status"] == "pending"
    assert sorted(args[0] for name, args, queue in sent_tasks
                  if name == "workers.tasks.verify_checkpoint" and queue == "gpu") == sorted(
        TruthResult.objects.values_list("pk", flat=True))
    assert api.post(url, {}, format="json").status_code == 409
    GroundTruth.objects.update(status=Status.DONE)
    again = api.post(url, {"checkpoints": ["ck-vit"]}, format="json")
    assert again.status_code == 202
    assert GroundTruth.objects.get().mode == "finetune"
    assert list(TruthResult.objects.values_list("checkpoint__name", flat=True)) == ["ck-vit"]


@pytest.mark.parametrize("body, message", [
    ({"checkpoints": ["nope"]}, "not finished checkpoints of this evaluation: nope"),
    ({"mode": "guess"}, "is not a valid choice"),
    ({"checkpoints": [True]}, "ids or names"),
])
def test_api_refuses_bad_requests_with_a_reason(evaluation, api, sent_tasks, body, message):
    response = api.post(f"/api/evaluations/{evaluation.pk}/truth/", body, format="json")
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not GroundTruth.objects.exists() and not sent_tasks


def test_nobody_else_can_ask_for_or_read_the_truth(evaluation, outsider_api, sent_tasks):
    url = f"/api/evaluations/{evaluation.pk}/truth/"
    assert outsider_api.post(url, {}, format="json").status_code == 404
    assert not GroundTruth.objects.exists()


def test_a_running_evaluation_cannot_be_verified_yet(owner, evaluation):
    evaluation.status = Status.RUNNING
    evaluation.save()
    with pytest.raises(SubmissionError, match="still running"):
        submit_truth(evaluation)


def test_the_page_offers_the_measurement_then_shows_the_agreement(evaluation, owner, client,
                                                                   sent_tasks):
    client.force_login(owner)
    page = client.get(f"/evaluations/{evaluation.pk}/").content.decode()
    assert 'id="truth-form"' in page and "Measure true accuracy" in page

    response = client.post(f"/evaluations/{evaluation.pk}/truth/", {"mode": "probe"})
    assert response.status_code == 302 and response["Location"].endswith("#truth")
    truth = GroundTruth.objects.get(evaluation=evaluation)
    assert truth.mode == "probe"
    running = client.get(f"/evaluations/{evaluation.pk}/").content.decode()
    assert 'id="truth-progress"' in running and 'id="agreement"' not in running

    verification.run_truth_inline(truth.pk)
    page = client.get(f"/evaluations/{evaluation.pk}/").content.decode()
    assert 'id="agreement"' in page and 'id="chart-truth"' in page
    for label in ("TMI", "Source accuracy", "Parameter count", "Feature width d"):
        assert f"<td>{label}</td>" in page
    assert "True acc." in page and 'id="truth-spread"' in page
    again = client.post(f"/evaluations/{evaluation.pk}/truth/", {"mode": "guess"}, follow=True)
    assert "Ground truth not started: mode must be one of finetune, probe" in again.content.decode()
