"""The exports carry the answer (true accuracy, consensus rank, what ranked, the
recommendation and its cautions), and the rank follows the predictor picked."""

import csv
import io
import json

import pytest
from django.urls import reverse

from tests.transferability.test_pages import RANKED, finished_evaluation
from transferability.models import GroundTruth, Status, TruthResult

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def alice(client, owner):
    client.force_login(owner)
    return client


def export(client, evaluation, fmt, query=""):
    response = client.get(reverse("evaluation-export", args=[evaluation.pk, fmt]) + query)
    assert response.status_code == 200
    if fmt == "json":
        return json.loads(response.content)
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def with_truth(evaluation, accuracies, status=Status.DONE):
    truth = GroundTruth.objects.create(evaluation=evaluation, status=status,
                                       mode=GroundTruth.Mode.PROBE)
    for result in evaluation.results.select_related("checkpoint"):
        accuracy = accuracies.get(result.checkpoint.name)
        TruthResult.objects.create(truth=truth, checkpoint=result.checkpoint,
                                   status=Status.DONE if accuracy is not None else Status.PENDING,
                                   accuracy=accuracy, details={"test": 400})
    return truth


def test_the_csv_says_what_rank_is_and_carries_the_answer(alice, owner):
    evaluation = finished_evaluation(owner)
    with_truth(evaluation, {"alpha-net": 71.0, "mid-net": 88.5, "zeta-net": 80.0})
    rows = {r["checkpoint"]: r for r in export(alice, evaluation, "csv")}
    assert [r["rank"] for r in export(alice, evaluation, "csv")] == ["1", "2", "3"]
    assert {r["ranked_by"] for r in rows.values()} == {"LogME"}
    assert rows["mid-net"]["consensus_rank"] == "1"
    assert float(rows["mid-net"]["true_accuracy"]) == 88.5
    # Binomial standard error over 400 test images: sqrt(0.885 * 0.115 / 400) = 1.595 points.
    assert float(rows["mid-net"]["true_accuracy_se"]) == pytest.approx(1.595, abs=0.001)
    assert rows["mid-net"]["recommended"] == "yes" and rows["zeta-net"]["recommended"] == ""
    assert rows["mid-net"]["recommendation"].startswith(
        "Take mid-net: best true accuracy, 88.5 %; 8.5 points above zeta-net")
    assert "a small dataset (12 images" in rows["mid-net"]["cautions"]


def test_the_json_carries_the_answer_per_checkpoint(alice, owner):
    evaluation = finished_evaluation(owner)
    with_truth(evaluation, {"mid-net": 88.5}, status=Status.RUNNING)
    body = export(alice, evaluation, "json")
    assert body["ranked_by"] == {"name": "logme", "label": "LogME", "picked": False}
    results = {r["checkpoint"]["name"]: r for r in body["results"]}
    assert results["mid-net"]["true_accuracy"]["mean"] == 88.5
    assert results["alpha-net"]["true_accuracy"] is None
    assert results["mid-net"]["consensus_rank"] == 1
    answer = body["recommendation"]
    assert answer["checkpoint"] == "mid-net" and answer["basis"].startswith("first by LogME")
    assert answer["truth_note"].startswith("true accuracy: 1 of 3 measured")


def test_the_rank_follows_the_predictor_picked_on_page_and_export(alice, owner):
    evaluation = finished_evaluation(owner)
    # By TMI (higher better): zeta 3.125, mid 2.5, alpha 1.25.
    rows = export(alice, evaluation, "csv", "?rank=tmi")
    assert [r["checkpoint"] for r in rows] == ["zeta-net", "mid-net", "alpha-net"]
    assert {r["ranked_by"] for r in rows} == {"TMI"}
    body = export(alice, evaluation, "json", "?rank=tmi")
    assert body["ranked_by"]["picked"] is True
    assert body["recommendation"]["checkpoint"] == "mid-net"  # the answer stays with the lead
    page = alice.get(evaluation.get_absolute_url() + "?rank=tmi").content.decode()
    assert page.index('data-checkpoint="zeta-net"') < page.index('data-checkpoint="mid-net"')
    assert 'id="rank-picked"' in page and "Ranked by TMI, as picked" in page
    assert '<option value="tmi" selected>' in page
    assert "export.csv?rank=tmi" in page
    default = alice.get(evaluation.get_absolute_url()).content.decode()
    assert [default.index(f'data-checkpoint="{n}"') for n in RANKED] == sorted(
        default.index(f'data-checkpoint="{n}"') for n in RANKED)
    assert 'id="rank-picked"' not in default
    # Something that is not a predictor of this evaluation ranks by the lead.
    assert [r["checkpoint"] for r in export(alice, evaluation, "csv", "?rank=bogus")] == RANKED


def second_evaluation(first, logme):
    """Another evaluation of the same checkpoints and dataset, with these LogME scores."""
    from transferability.models import CheckpointResult, Evaluation, MetricScore

    second = Evaluation.objects.create(owner=first.owner, dataset=first.dataset,
                                       metrics=["tmi", "logme"], status=Status.DONE)
    for result in first.results.select_related("checkpoint"):
        copy = CheckpointResult.objects.create(evaluation=second, checkpoint=result.checkpoint,
                                               status=Status.DONE, feature_dim=64)
        for score in result.scores.all():
            value = logme[result.checkpoint.name] if score.metric == "logme" else score.value
            MetricScore.objects.create(result=copy, metric=score.metric, value=value)
    return second


def test_compare_ranks_by_the_lead_and_shows_truth_beside_it(alice, owner):
    first = finished_evaluation(owner)
    # LogME, the lead, reverses its order in the second; TMI (feature width here) does not.
    second = second_evaluation(first, {"alpha-net": 0.9, "zeta-net": 0.5, "mid-net": 0.1})
    with_truth(first, {"alpha-net": 71.0, "mid-net": 88.5, "zeta-net": 80.0})
    with_truth(second, {"alpha-net": 90.0, "mid-net": 60.0, "zeta-net": 75.0})
    html = alice.get(reverse("evaluation-compare") + f"?ids={first.pk},{second.pk}"
                     ).content.decode()
    assert html.count(">True acc. %</th>") == 2 and html.count(">LogME</th>") == 2
    agreement = html[html.index('id="ranking-agreement"'):]
    # Ranks by the lead: mid, zeta, alpha against alpha, zeta, mid: tau -1; the truths too.
    cells = agreement.split("</tr>")[1]
    assert "<td>-1.00</td>" in cells and '<td class="truth-tau">-1.00</td>' in cells
    by_tmi = alice.get(reverse("evaluation-compare") + f"?ids={first.pk},{second.pk}&rank=tmi"
                       ).content.decode()
    assert by_tmi.count(">TMI</th>") == 2
    assert "<td>1.00</td>" in by_tmi[by_tmi.index('id="ranking-agreement"'):]
