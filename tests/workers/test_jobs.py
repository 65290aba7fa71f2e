"""The work behind the tasks, called in-process: stages, idempotency, the rank command."""

import json
from pathlib import Path
import math

import pytest
from django.core.management import CommandError, call_command

from tests.builders import image_folder_zip, saved_checkpoint
from transferability.datasets import create_target_dataset
from transferability.models import CheckpointResult, Evaluation, MetricScore, Status
from transferability.submission import submit_evaluation
from workers import jobs
from zoo.models import Checkpoint

pytestmark = pytest.mark.django_db

DIGITS = [str(i) for i in range(10)]


@pytest.fixture
def dataset(owner, tmp_path):
    archive = image_folder_zip(tmp_path / "d.zip", {"0": 8, "1": 8, "2": 8}, seed=11)
    return create_target_dataset(owner, "digits-ish", archive)


def test_it_scores_every_stage_and_names_the_best(owner, dataset):
    checkpoint = saved_checkpoint("ck-stages", "test_resnet")
    evaluation = submit_evaluation(owner, dataset, [checkpoint], metrics=["tmi", "logme"],
                                   score_stages=True, enqueue_work=False)
    jobs.run_inline(evaluation.pk)

    result = CheckpointResult.objects.get(evaluation=evaluation)
    assert result.status == Status.DONE, result.message
    layers = set(MetricScore.objects.filter(result=result).values_list("layer", flat=True))
    assert {"pre_logits", "layer1", "layer4"} <= layers
    # The best stage by the lead: without ground truth on the site, the demo study's best
    # predictor scored here, LogME (TMI would pick the widest stage).
    logme = dict(MetricScore.objects.filter(result=result, metric="logme")
                 .values_list("layer", "value"))
    assert result.best_stage == max(logme, key=logme.get)


def test_a_redelivered_task_changes_nothing(owner, dataset):
    checkpoint = saved_checkpoint("ck-a")
    evaluation = submit_evaluation(owner, dataset, [checkpoint], metrics=["tmi"],
                                   enqueue_work=False)
    result = evaluation.results.get()
    assert jobs.evaluate_checkpoint(result.pk) == evaluation.pk  # the last one claims the end
    first = list(MetricScore.objects.filter(result=result).values_list("pk", "value"))
    jobs.finalize_evaluation(evaluation.pk)
    assert jobs.evaluate_checkpoint(result.pk) is None  # finished and finalized: nothing
    assert list(MetricScore.objects.filter(result=result).values_list("pk", "value")) == first
    jobs.finalize_evaluation(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE
    assert evaluation.finished_at is not None


@pytest.mark.parametrize("died", ["before claiming the final step", "before enqueueing it"])
def test_a_worker_dying_before_the_final_step_does_not_strand_the_evaluation(owner, dataset,
                                                                             died):
    checkpoint = saved_checkpoint("ck-a")
    evaluation = submit_evaluation(owner, dataset, [checkpoint], metrics=["tmi"],
                                   enqueue_work=False)
    result = evaluation.results.get()
    jobs.evaluate_checkpoint(result.pk)
    if died == "before claiming the final step":
        Evaluation.objects.filter(pk=evaluation.pk).update(status=Status.RUNNING)

    # The task is delivered again: it must hand over the final step.
    assert jobs.evaluate_checkpoint(result.pk) == evaluation.pk
    jobs.finalize_evaluation(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE


def test_a_checkpoint_that_keeps_killing_its_worker_is_failed_after_two_attempts(owner,
                                                                                 dataset):
    a, b = saved_checkpoint("ck-a"), saved_checkpoint("ck-b", seed=1)
    evaluation = submit_evaluation(owner, dataset, [a, b], metrics=["tmi"], enqueue_work=False)
    killer, other = evaluation.results.order_by("checkpoint__name")
    jobs.evaluate_checkpoint(other.pk)
    # Two deliveries that died mid-work (claimed, never finished).
    CheckpointResult.objects.filter(pk=killer.pk).update(status=Status.RUNNING, attempts=2)

    assert jobs.evaluate_checkpoint(killer.pk) == evaluation.pk
    killer.refresh_from_db()
    assert killer.status == Status.FAILED
    assert "2 times" in killer.message
    jobs.finalize_evaluation(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE
    assert "1 of 2 checkpoints failed" in evaluation.message


def test_a_task_for_a_deleted_evaluation_does_nothing(owner, dataset):
    evaluation = submit_evaluation(owner, dataset, [saved_checkpoint("ck-a")], enqueue_work=False)
    result_id = evaluation.results.get().pk
    evaluation.delete()
    assert jobs.evaluate_checkpoint(result_id) is None


def test_an_evaluated_checkpoint_cannot_be_deleted(owner, dataset):
    from django.db.models import RestrictedError

    checkpoint = saved_checkpoint("ck-a")
    submit_evaluation(owner, dataset, [checkpoint], enqueue_work=False)
    with pytest.raises(RestrictedError):
        checkpoint.delete()


def test_a_user_with_an_evaluated_checkpoint_of_their_own_can_be_deleted(owner, dataset):
    # A distilled checkpoint belongs to its user; deleting the user takes their evaluations
    # with it, so nothing else holds on to the checkpoint.
    checkpoint = saved_checkpoint("ck-own", owner=owner)
    submit_evaluation(owner, dataset, [checkpoint], enqueue_work=False)

    owner.delete()

    assert not Checkpoint.objects.filter(pk=checkpoint.pk).exists()
    assert not Evaluation.objects.exists()


def test_stages_with_only_source_head_metrics_and_no_head_do_not_fail(owner, dataset):
    checkpoint = saved_checkpoint("ck-headless")
    evaluation = submit_evaluation(owner, dataset, [checkpoint], metrics=["leep"],
                                   score_stages=True, enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    result = evaluation.results.get()
    assert result.status == Status.DONE, result.message
    assert result.scores.count() == 0


def test_complementarity_can_come_from_the_checkpoints_own_heads(owner, dataset):
    a = saved_checkpoint("head-a", num_classes=10, source_classes=DIGITS, seed=1)
    b = saved_checkpoint("head-b", "test_vit", num_classes=10, source_classes=DIGITS, seed=2)
    evaluation = submit_evaluation(owner, dataset, [a, b], metrics=["leep", "nce"],
                                   correctness_source="source", enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE, evaluation.message
    report = evaluation.complementarity
    assert report["source"] == "source"
    assert report["names"] == ["head-a", "head-b"]
    assert report["n_samples"] == 24
    for result in evaluation.results.all():
        assert set(result.scores.values_list("metric", flat=True)) == {"leep", "nce"}


def test_the_rank_command_writes_json_through_the_same_path(tmp_path):
    saved_checkpoint("cli-a", "test_resnet", seed=1)
    saved_checkpoint("cli-b", "test_convnext", seed=2)
    archive = image_folder_zip(tmp_path / "cli.zip", {"x": 6, "y": 6}, seed=3)
    out = tmp_path / "out.json"
    call_command("rank", str(archive), "--checkpoint", "cli-a", "--checkpoint", "cli-b",
                 "--checkpoint", "cli-a", "--metrics", "tmi,logme,knn_accuracy", "--json", str(out))
    body = json.loads(out.read_text())
    assert body["status"] == "done"
    assert sorted(r["rank"] for r in body["results"]) == [1, 2]
    for r in body["results"]:
        assert set(r["scores"]) == {"tmi", "logme", "knn_accuracy"}
        assert all(math.isfinite(v) for v in r["scores"].values())
    assert sorted(body["complementarity"]["names"]) == ["cli-a", "cli-b"]
    assert Evaluation.objects.get().owner.username == "cli"


def test_the_rank_command_names_what_is_wrong(tmp_path):
    archive = image_folder_zip(tmp_path / "cli.zip", {"x": 3, "y": 3})
    with pytest.raises(CommandError, match="unknown checkpoints: ghost"):
        call_command("rank", str(archive), "--checkpoint", "ghost")
    saved_checkpoint("cli-a")
    with pytest.raises(CommandError, match="Unknown metric|unknown metric|bogus"):
        call_command("rank", str(archive), "--metrics", "bogus")
    bad = image_folder_zip(tmp_path / "bad.zip", {"only": 3})
    with pytest.raises(CommandError, match="at least 2 class folders"):
        call_command("rank", str(bad))


def test_the_evaluation_page_lists_stages_in_network_order(client, owner, dataset):
    checkpoint = saved_checkpoint("ck-byob-stages", "test_byobnet")
    evaluation = submit_evaluation(owner, dataset, [checkpoint], metrics=["tmi"],
                                   score_stages=True, enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    client.force_login(owner)

    page = client.get(f"/evaluations/{evaluation.pk}/").content.decode()

    section = page[page.index('id="stages"'):]
    # Network order, which sorting by name would break (final_conv < stages.0 < stem).
    names = ["stem", "stages.0", "stages.1", "stages.2", "final_conv", "pre-logits"]
    best = CheckpointResult.objects.get().best_stage
    label = "pre-logits" if best == "pre_logits" else best
    assert section.count('class="stage best"') == 1
    assert f'<span class="stage best">{label} ' in section
    positions = [section.index(f">{name} ") for name in names]
    assert positions == sorted(positions)


def test_failed_checkpoints_can_be_retried_once_their_weights_are_there(
        owner, dataset, api, sent_tasks, django_capture_on_commit_callbacks):
    good = saved_checkpoint("ck-good", seed=1)
    late = saved_checkpoint("ck-late", "test_vit", seed=2)
    weights = Path(late.weights_path)
    hidden = weights.with_suffix(".hidden")
    weights.rename(hidden)  # not there yet
    evaluation = submit_evaluation(owner, dataset, [good, late], metrics=["tmi"],
                                   enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE
    assert evaluation.results.get(checkpoint=late).status == Status.FAILED
    assert evaluation.complementarity is None  # one checkpoint finished: no pairs

    hidden.rename(weights)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/evaluations/{evaluation.pk}/retry/")
    assert response.status_code == 202
    retried = evaluation.results.get(checkpoint=late)
    # only the failed one goes back on the queue
    assert [args[0] for _, args, _ in sent_tasks] == [retried.pk]
    assert response.json()["status"] == "running"

    last = jobs.evaluate_checkpoint(retried.pk)
    assert last == evaluation.pk
    jobs.finalize_evaluation(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE and evaluation.message == ""
    assert sorted(evaluation.complementarity["names"]) == ["ck-good", "ck-late"]
    assert api.post(f"/api/evaluations/{evaluation.pk}/retry/").status_code == 409


def test_a_checkpoint_whose_worker_went_silent_can_be_retried(
        owner, dataset, api, sent_tasks, client, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    a, b = saved_checkpoint("ck-a"), saved_checkpoint("ck-b", seed=1)
    evaluation = submit_evaluation(owner, dataset, [a, b], metrics=["tmi"], enqueue_work=False)
    silent, busy = evaluation.results.order_by("checkpoint__name")
    long_ago = timezone.now() - timedelta(minutes=31)
    CheckpointResult.objects.filter(pk=silent.pk).update(status=Status.RUNNING, attempts=1,
                                                         heartbeat_at=long_ago)
    CheckpointResult.objects.filter(pk=busy.pk).update(status=Status.RUNNING, attempts=1,
                                                       heartbeat_at=timezone.now())
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Status.RUNNING)
    client.force_login(owner)
    assert "Retry 1 stalled checkpoint" in client.get(f"/evaluations/{evaluation.pk}/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/evaluations/{evaluation.pk}/retry/")

    assert response.status_code == 202
    # the one still beating is left alone
    assert [args[0] for _, args, _ in sent_tasks] == [silent.pk]
    silent.refresh_from_db()
    assert silent.status == Status.PENDING
    # The worker that picks it up scores it (a live worker beats as it goes).
    jobs.evaluate_checkpoint(silent.pk)
    silent.refresh_from_db()
    assert silent.status == Status.DONE and silent.heartbeat_at > long_ago
    assert api.post(f"/api/evaluations/{evaluation.pk}/retry/").status_code == 409


def test_an_evaluation_whose_every_checkpoint_failed_is_failed(owner, dataset):
    checkpoint = saved_checkpoint("ck-gone")
    Path(checkpoint.weights_path).unlink()
    evaluation = submit_evaluation(owner, dataset, [checkpoint], enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.FAILED
    assert "1 of 1 checkpoints failed" in evaluation.message
    assert "does not exist" in evaluation.results.get().message


def test_a_metric_that_cannot_apply_is_recorded_with_its_reason(owner, tmp_path):
    # One class has a single image: no stratified probe, so no probe baseline and no
    # complementarity, but every other metric is still scored.
    archive = image_folder_zip(tmp_path / "lonely.zip", {"0": 6, "1": 6, "2": 1}, seed=5)
    lonely = create_target_dataset(owner, "lonely", archive)
    a, b = saved_checkpoint("ck-a"), saved_checkpoint("ck-b", seed=1)
    evaluation = submit_evaluation(owner, lonely, [a, b], metrics=["tmi", "probe_accuracy"],
                                   enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE
    assert "complementarity could not be computed" in evaluation.message
    for result in evaluation.results.all():
        probe = result.scores.get(metric="probe_accuracy")
        assert probe.value is None and "fewer than 2 samples" in probe.error
        assert result.scores.get(metric="tmi").value is not None


def test_a_checkpoint_that_never_started_on_an_old_evaluation_counts_as_stalled(owner, dataset):
    from datetime import timedelta

    from django.utils import timezone

    from transferability.submission import stalled_results

    evaluation = submit_evaluation(owner, dataset, [saved_checkpoint("ck-a")],
                                   enqueue_work=False)
    Evaluation.objects.filter(pk=evaluation.pk).update(
        created_at=timezone.now() - timedelta(minutes=31))
    assert list(stalled_results(evaluation)) == []  # never sent: waiting its turn
    CheckpointResult.objects.update(queued_at=timezone.now())  # sent; its message was lost
    Evaluation.objects.filter(pk=evaluation.pk).update(created_at=timezone.now())
    assert list(stalled_results(evaluation)) == []  # just submitted: give it time
    Evaluation.objects.filter(pk=evaluation.pk).update(
        created_at=timezone.now() - timedelta(minutes=31))
    assert list(stalled_results(evaluation)) == [evaluation.results.get()]


# Metrics relative to the set of checkpoints (NCTI) ---------------------------------------

def features_of(result, layer="pre_logits"):
    from workers import caches

    return caches.features.load(result.feature_key, layer)


def ncti_values(evaluation, layer="pre_logits") -> dict:
    return {(s.result.checkpoint.name, s.layer): s.value for s in MetricScore.objects.filter(
        result__evaluation=evaluation, metric="ncti").select_related("result__checkpoint")
        if (s.layer == "pre_logits") == (layer == "pre_logits")}


def test_ncti_is_scored_against_the_other_checkpoints_of_the_evaluation(owner, dataset):
    from transferability.metrics import ncti_set

    checkpoints = [saved_checkpoint("ck-a"), saved_checkpoint("ck-b", seed=1),
                   saved_checkpoint("ck-c", "test_vit", seed=2)]
    evaluation = submit_evaluation(owner, dataset, checkpoints, metrics=["tmi", "ncti"],
                                   enqueue_work=False)
    jobs.run_inline(evaluation.pk)

    results = list(evaluation.results.order_by("checkpoint__name"))
    assert all(r.status == Status.DONE for r in results), [r.message for r in results]
    _, _, labels = jobs.dataset_samples(dataset)
    expected = ncti_set([features_of(r) for r in results], labels)
    got = ncti_values(evaluation)
    assert [got[(r.checkpoint.name, "pre_logits")] for r in results] == pytest.approx(
        expected, rel=1e-6, abs=1e-9)
    assert len(set(expected)) > 1  # the set ranks them: not one value for all
    for score in MetricScore.objects.filter(metric="ncti"):
        assert set(score.details["components"]) == {"seli", "ncc", "vc"}

    # The final step again (a redelivered task) gives the same values.
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Status.FINALIZING)
    jobs.finalize_evaluation(evaluation.pk)
    assert ncti_values(evaluation) == got


def test_ncti_of_a_checkpoint_alone_is_finite(owner, dataset):
    evaluation = submit_evaluation(owner, dataset, [saved_checkpoint("ck-a")],
                                   metrics=["ncti"], enqueue_work=False)
    jobs.run_inline(evaluation.pk)

    score = MetricScore.objects.get(metric="ncti")
    assert score.error == ""
    # Every component is the same for the whole set: none can rank, each contributes 0.
    assert score.value == 0.0


def test_stage_ncti_is_relative_to_every_stage_of_every_checkpoint(owner, dataset):
    from transferability.metrics import ncti_set

    checkpoints = [saved_checkpoint("ck-a"), saved_checkpoint("ck-b", seed=1)]
    evaluation = submit_evaluation(owner, dataset, checkpoints, metrics=["ncti", "knn_accuracy"],
                                   score_stages=True, enqueue_work=False)
    jobs.run_inline(evaluation.pk)

    _, _, labels = jobs.dataset_samples(dataset)
    results = list(evaluation.results.order_by("checkpoint__name"))
    stages = [(r, layer) for r in results for layer in jobs._cached_stage_names(r.feature_key)]
    assert len(stages) >= 4
    expected = ncti_set([features_of(r, layer) for r, layer in stages], labels)
    got = ncti_values(evaluation, layer="stages")
    assert [got[(r.checkpoint.name, layer)] for r, layer in stages] == pytest.approx(
        expected, rel=1e-6, abs=1e-9)
    pre_logits = ncti_set([features_of(r) for r in results], labels)
    assert [ncti_values(evaluation)[(r.checkpoint.name, "pre_logits")]
            for r in results] == pytest.approx(pre_logits, rel=1e-6, abs=1e-9)
    # The best stage comes from a metric with a value of its own (k-NN), not from NCTI,
    # which is registered first but has no value until the end.
    for result in results:
        layers = jobs._cached_stage_names(result.feature_key) + ["pre_logits"]
        knn = dict(result.scores.filter(metric="knn_accuracy").values_list("layer", "value"))
        assert result.best_stage == max(layers, key=knn.get)


def test_a_retry_scores_ncti_again_over_every_finished_checkpoint(
        owner, dataset, api, sent_tasks, django_capture_on_commit_callbacks):
    from transferability.metrics import ncti_set

    good = saved_checkpoint("ck-good", seed=1)
    late = saved_checkpoint("ck-late", "test_vit", seed=2)
    weights = Path(late.weights_path)
    hidden = weights.with_suffix(".hidden")
    weights.rename(hidden)
    evaluation = submit_evaluation(owner, dataset, [good, late], metrics=["ncti"],
                                   enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    assert ncti_values(evaluation) == {("ck-good", "pre_logits"): 0.0}  # alone in its set

    hidden.rename(weights)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"/api/evaluations/{evaluation.pk}/retry/").status_code == 202
    retried = evaluation.results.get(checkpoint=late)
    assert jobs.evaluate_checkpoint(retried.pk) == evaluation.pk
    jobs.finalize_evaluation(evaluation.pk)

    results = list(evaluation.results.order_by("checkpoint__name"))
    _, _, labels = jobs.dataset_samples(dataset)
    expected = ncti_set([features_of(r) for r in results], labels)
    got = ncti_values(evaluation)
    assert [got[(r.checkpoint.name, "pre_logits")] for r in results] == pytest.approx(
        expected, rel=1e-6, abs=1e-9)
    body = api.get(f"/api/evaluations/{evaluation.pk}/").json()
    assert body["relative_to_set"] == ["ncti"]
    assert sorted(r["scores"]["ncti"] for r in body["results"]) == pytest.approx(sorted(expected))


def test_a_metric_run_on_a_subsample_says_so(owner, dataset, monkeypatch):
    from dataclasses import replace

    from transferability.metrics import REGISTRY

    monkeypatch.setitem(REGISTRY, "knn_accuracy", replace(REGISTRY["knn_accuracy"],
                                                          sample_limit=5))
    evaluation = submit_evaluation(owner, dataset, [saved_checkpoint("ck-a")],
                                   metrics=["knn_accuracy", "tmi"], enqueue_work=False)
    jobs.run_inline(evaluation.pk)

    knn = MetricScore.objects.get(metric="knn_accuracy")
    assert knn.details["note"] == "k-NN on 5 of 24 samples"
    assert knn.value is not None
    tmi = MetricScore.objects.get(metric="tmi").details
    assert "note" not in tmi and set(tmi) == {"diagnostics", "resamples"}


def test_the_metrics_are_stored_before_the_baselines_are_fitted(owner, dataset, monkeypatch):
    """The cheap answer first: when the linear probe starts, the checkpoint's metric scores
    are already in the database for the page and the API to show."""
    from dataclasses import replace

    from transferability.metrics import REGISTRY

    seen = {}
    probe = REGISTRY["probe_accuracy"]

    def observed(features, labels, **kwargs):
        seen["stored"] = set(MetricScore.objects.values_list("metric", flat=True))
        return probe.func(features, labels, **kwargs)

    monkeypatch.setitem(REGISTRY, "probe_accuracy", replace(probe, func=observed))
    evaluation = submit_evaluation(owner, dataset, [saved_checkpoint("ck-cheap")],
                                   metrics=["tmi", "logme", "probe_accuracy"],
                                   enqueue_work=False)
    jobs.run_inline(evaluation.pk)

    assert seen["stored"] == {"tmi", "logme"}
    assert set(MetricScore.objects.values_list("metric", flat=True)) == {
        "tmi", "logme", "probe_accuracy"}
    assert MetricScore.objects.get(metric="probe_accuracy").value is not None
