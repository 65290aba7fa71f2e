"""Reading results back: ranks, ties, the ranking metric, progress."""

import pytest

from tests.builders import image_folder_zip, saved_checkpoint
from transferability.datasets import create_target_dataset
from transferability.models import CheckpointResult, Evaluation, MetricScore, Status
from transferability.results import metric_columns, ranked_rows, rows_ranking_metric

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluation(owner, tmp_path, settings):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    dataset = create_target_dataset(owner, "d", image_folder_zip(tmp_path / "d.zip",
                                                                 {"a": 2, "b": 2}))
    return Evaluation.objects.create(owner=owner, dataset=dataset, status=Status.RUNNING)


def add_result(evaluation, name, status=Status.DONE, **scores):
    result = CheckpointResult.objects.create(evaluation=evaluation, status=status,
                                             checkpoint=saved_checkpoint(name))
    for metric, value in scores.items():
        MetricScore.objects.create(result=result, metric=metric, value=value)
    return result


def test_ties_share_a_rank_and_another_metric_ranks_when_tmi_was_not_scored(evaluation):
    add_result(evaluation, "a", logme=1.0)
    add_result(evaluation, "b", logme=1.0)
    add_result(evaluation, "c", logme=0.0)
    rows = ranked_rows(evaluation)
    assert rows_ranking_metric(rows) == "logme"
    assert [(r.checkpoint.name, r.rank) for r in rows] == [("a", 1), ("b", 1), ("c", 3)]
    assert [s.name for s in metric_columns(rows)] == ["logme"]


def test_unfinished_checkpoints_are_not_ranked(evaluation):
    add_result(evaluation, "done", tmi=1.0)
    add_result(evaluation, "busy", status=Status.RUNNING, tmi=9.0)
    rows = ranked_rows(evaluation)
    assert [(r.checkpoint.name, r.rank) for r in rows] == [("done", 1), ("busy", None)]


def test_progress_counts_images_while_running(evaluation):
    add_result(evaluation, "done")
    CheckpointResult.objects.create(evaluation=evaluation, status=Status.RUNNING,
                                    checkpoint=saved_checkpoint("busy"), images_done=5,
                                    images_total=12)
    assert evaluation.progress == pytest.approx((1.0 + 0.9 * 5 / 12) / 2)
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Status.DONE)
    evaluation.refresh_from_db()
    assert evaluation.progress == 1.0


def test_rows_carry_the_notes_of_their_pre_logits_scores(evaluation):
    from transferability.results import approximation_notes

    a = add_result(evaluation, "a", tmi=1.0)
    b = add_result(evaluation, "b", tmi=2.0)
    for result in (a, b):
        MetricScore.objects.create(result=result, metric="knn_accuracy", value=0.5,
                                   details={"note": "k-NN on 5 of 9 samples"})
    MetricScore.objects.create(result=a, metric="nleep", layer="layer1", value=0.5,
                               details={"note": "only a stage"})
    rows = ranked_rows(evaluation)
    assert {r.checkpoint.name: r.notes for r in rows} == {
        "a": {"knn_accuracy": "k-NN on 5 of 9 samples"},
        "b": {"knn_accuracy": "k-NN on 5 of 9 samples"}}
    assert [(spec.name, note) for spec, note in approximation_notes(rows)] == [
        ("knn_accuracy", "k-NN on 5 of 9 samples")]


@pytest.mark.parametrize("metrics, relative", [
    ([], ["ncti"]), (["ncti", "tmi"], ["ncti"]), (["tmi"], []),
])
def test_an_evaluation_names_its_metrics_relative_to_the_set(evaluation, metrics, relative):
    from transferability.results import relative_to_set

    evaluation.metrics = metrics
    assert relative_to_set(evaluation) == relative
