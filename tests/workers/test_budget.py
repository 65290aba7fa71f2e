"""How sure the answer is, and the best found with a few fine-tunes: the worker's side.

Real timm models (tiny, random), the real panel and fine-tuning, run in-process.
"""

import pytest

from tests.builders import colours_dataset, evaluated, saved_checkpoint
from transferability.metrics.resampling import RESAMPLES
from transferability.models import GroundTruth, Status, TruthResult
from transferability.submission import SubmissionError, submit_evaluation
from transferability.verification import submit_truth
from workers import jobs, verification

pytestmark = pytest.mark.django_db

METRICS = ["tmi", "logme", "gbc", "knn_accuracy", "probe_accuracy"]


@pytest.fixture
def dataset(owner, tmp_path):
    return colours_dataset(owner, tmp_path)


@pytest.fixture
def checkpoints():
    return [saved_checkpoint("ck-resnet", "test_resnet", seed=1, source_top1=91.0),
            saved_checkpoint("ck-convnext", "test_convnext", seed=2, source_top1=80.0),
            saved_checkpoint("ck-vit", "test_vit", seed=3, source_top1=70.0)]


@pytest.fixture
def evaluation(owner, dataset, checkpoints):
    return evaluated(owner, dataset, checkpoints, metrics=METRICS)


def test_the_recommendation_says_how_sure_it_is(evaluation, api):
    body = api.get(f"/api/evaluations/{evaluation.pk}/").json()
    rec = body["recommendation"]
    names = {"ck-resnet", "ck-convnext", "ck-vit"}
    # The default lead: the demo study's consensus, of the members scored here.
    assert rec["checkpoint"] in names and rec["lead"] == "consensus:gbc+logme"
    assert rec["resamples"] == RESAMPLES
    assert set(rec["p_first"]) == names and sum(rec["p_first"].values()) == pytest.approx(1.0)
    for name, (lo, hi) in rec["rank_interval"].items():
        assert 1 <= lo <= hi <= 3, name
    assert rec["confidence"].startswith(f"first in {round(100 * rec['p_first'][rec['checkpoint']])} % "
                                        f"of {RESAMPLES} resamples")
    assert set(rec["consensus_p_first"]) == names
    # Each resampled metric kept its values per resample; the probe was not resampled.
    result = evaluation.results.first()
    details = {s.metric: s.details for s in result.scores.all()}
    assert len(details["tmi"]["resamples"]) == RESAMPLES
    assert "resamples" not in details["probe_accuracy"]
    assert 0.0 <= details["tmi"]["diagnostics"]["floored_share"] <= 1.0


def test_halving_spends_the_budget_on_rungs_and_names_the_best_found(evaluation, owner, dataset,
                                                                     checkpoints):
    # A full fine-tuning truth of the same data on another evaluation, for the regret.
    full = evaluated(owner, dataset, checkpoints, metrics=METRICS)
    full_truth = submit_truth(full, enqueue_work=False)
    verification.run_truth_inline(full_truth.pk)

    truth = submit_truth(evaluation, budget=2, strategy="halving", enqueue_work=False)
    assert truth.plan["rungs"] == [{"epochs": 1, "checkpoints": 2}, {"epochs": 5, "checkpoints": 1}]
    order = truth.plan["order"]
    assert [r.checkpoint.name for r in truth.results.all()] == sorted(order[:2])
    verification.run_truth_inline(truth.pk)
    truth.refresh_from_db()
    assert truth.status == Status.DONE, truth.message

    rows = {r.checkpoint.name: r for r in TruthResult.objects.filter(truth=truth)}
    history = truth.plan["history"]
    short = {name: h[0]["accuracy"] for name, h in history.items()}
    winner = max(short, key=lambda n: (short[n], -order.index(n)))
    loser = next(n for n in short if n != winner)
    assert rows[winner].accuracy is not None and rows[winner].details["recipe"]["epochs"] == 5
    assert [h["epochs"] for h in history[winner]] == [1, 5]
    assert rows[loser].accuracy is None and "stopped after 1 epoch" in rows[loser].message

    from tests.conftest import _token_client
    body = _token_client(owner).get(f"/api/evaluations/{evaluation.pk}/").json()["truth"]
    full_accuracy = dict(full_truth.results.values_list("checkpoint__name", "accuracy"))
    assert body["budget"]["best_found"] == winner
    assert body["budget"]["regret"] == pytest.approx(max(full_accuracy.values())
                                                     - full_accuracy[winner])


def test_a_budget_never_replaces_a_full_fine_tuning_truth(evaluation):
    full = submit_truth(evaluation, enqueue_work=False)
    GroundTruth.objects.filter(pk=full.pk).update(status=Status.DONE)
    with pytest.raises(SubmissionError, match="has a full fine-tuning truth"):
        submit_truth(evaluation, budget=2, strategy="top", enqueue_work=False)
    assert GroundTruth.objects.get(evaluation=evaluation).pk == full.pk


def test_top_verifies_the_leads_best_and_a_budget_is_checked(evaluation):
    truth = submit_truth(evaluation, budget=1, strategy="top", enqueue_work=False)
    first = evaluation.results.get(checkpoint__name=truth.plan["order"][0]).checkpoint
    assert [r.checkpoint for r in truth.results.all()] == [first]
    assert truth.plan["rungs"] == [{"epochs": 5, "checkpoints": 1}]
    GroundTruth.objects.filter(pk=truth.pk).update(status=Status.DONE)
    for bad, message in (({"budget": 0, "strategy": "top"}, "budget must be"),
                         ({"budget": 2, "strategy": "grid"}, "strategy must be"),
                         ({"budget": 2, "mode": "probe"}, "needs mode 'finetune'"),
                         ({"budget": 2, "checkpoints": ["ck-vit"]}, "not both")):
        with pytest.raises(SubmissionError, match=message):
            submit_truth(evaluation, enqueue_work=False, **bad)


def test_truth_on_finish_is_queued_when_the_evaluation_finishes(
        owner, dataset, checkpoints, sent_tasks, django_capture_on_commit_callbacks):
    evaluation = submit_evaluation(owner, dataset, checkpoints[:2], metrics=["tmi"],
                                   enqueue_work=False, truth_on_finish="finetune")
    assert not GroundTruth.objects.filter(evaluation=evaluation).exists()
    with django_capture_on_commit_callbacks(execute=True):
        jobs.run_inline(evaluation.pk)
    truth = GroundTruth.objects.get(evaluation=evaluation)
    assert truth.mode == "finetune" and truth.results.count() == 2
    assert [name for name, _, _ in sent_tasks].count("workers.tasks.verify_checkpoint") == 2
    # Finished again (a retry of a failed checkpoint, say): the truth is not started anew.
    from workers.jobs import claim_final_step, finalize_evaluation
    from transferability.models import Evaluation
    Evaluation.objects.filter(pk=evaluation.pk).update(status=Status.RUNNING)
    assert claim_final_step(evaluation.pk)
    finalize_evaluation(evaluation.pk)
    assert GroundTruth.objects.get(evaluation=evaluation).pk == truth.pk
    with pytest.raises(SubmissionError, match="truth_on_finish must be one of"):
        submit_evaluation(owner, dataset, checkpoints[:2], truth_on_finish="guess",
                          enqueue_work=False)
