"""Ground truth as a measurement: ties within noise, stability across seeds, agreement
against the mean with intervals, and the answer that names a tie."""

import pytest

from tests.transferability.test_answer_exports import with_truth
from tests.transferability.test_pages import finished_evaluation
from transferability.models import TruthResult
from transferability.recommendation import recommend
from transferability.results import ranked_rows
from transferability.verification import stability, tied_with_best, truth_payload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def test_ties_are_within_the_combined_standard_error():
    accuracy = {"a": 90.0, "b": 88.0, "c": 80.0}
    errors = {"a": 1.5, "b": 1.5, "c": 1.0}
    # a - b = 2.0 <= hypot(1.5, 1.5) = 2.12: tied; a - c = 10: not.
    assert tied_with_best(accuracy, errors) == ["b"]
    assert tied_with_best(accuracy, {"a": 1.0, "b": 1.0}) == []  # 2.0 > 1.41
    assert tied_with_best({"a": 90.0}, errors) == []


def measured_over_seeds(evaluation, per_seed):
    """A finished truth whose checkpoints carry per-seed accuracies and their SE."""
    import numpy as np

    means = {name: float(np.mean(values)) for name, values in per_seed.items()}
    truth = with_truth(evaluation, means)
    truth.seeds = 3
    truth.save()
    for row in TruthResult.objects.filter(truth=truth).select_related("checkpoint"):
        values = per_seed[row.checkpoint.name]
        row.details = {"test": 400, "seeds": 3,
                       "standard_error": float(np.std(values, ddof=1) / np.sqrt(3)),
                       "per_seed": [{"seed": s, "accuracy": v} for s, v in enumerate(values)],
                       "runs": [{"seed": s, "learning_rate": 1e-3, "epochs": 2,
                                 "val_accuracy": v, "test_accuracy": v}
                                for s, v in enumerate(values)],
                       "chosen": {"learning_rate": 1e-3, "epochs": 2}, "at_edge": False}
        row.save()
    return truth


def test_a_tie_within_noise_is_named_and_counts_as_a_right_pick(owner):
    evaluation = finished_evaluation(owner)
    # mid-net and zeta-net within noise of each other; seed 0 puts zeta-net first.
    measured_over_seeds(evaluation, {"mid-net": [86.0, 90.0, 88.0],
                                     "zeta-net": [87.0, 89.5, 86.0],
                                     "alpha-net": [70.0, 71.0, 72.0]})
    rows = ranked_rows(evaluation)
    truth = truth_payload(evaluation, rows)
    assert truth["best"] == "mid-net" and truth["tied"] == ["zeta-net"]
    # Seeds 1 and 2 agree (tau 1); each against seed 0: 1/3.
    assert truth["seeds"] == 3 and truth["stability"] == pytest.approx(5 / 9)
    assert truth["results"][0]["chosen"] == {"learning_rate": 1e-3, "epochs": 2}
    # TMI puts zeta-net first: within noise of the best, so its pick counts as right.
    assert truth["agreement"]["tmi"]["pick"] == "zeta-net"
    assert truth["agreement"]["tmi"]["top1_relative_accuracy"] == 1.0
    rec = recommend(rows, evaluation.dataset.class_counts, truth, lead=rows.lead)
    assert rec.checkpoint.name == "mid-net" and rec.tied_with == ["zeta-net"]
    assert rec.basis == "tied first by true accuracy within noise with zeta-net"
    assert rec.separation.startswith("its mean is 0.5 points higher, within the noise")
    assert "zeta-net 87.5 ± 1.0 %" in rec.margin


def test_the_stability_is_the_kendall_tau_between_seeds(owner):
    evaluation = finished_evaluation(owner)
    truth = measured_over_seeds(evaluation, {"mid-net": [90.0, 80.0, 90.0],
                                             "zeta-net": [80.0, 90.0, 80.0],
                                             "alpha-net": [70.0, 70.0, 70.0]})
    # Seeds 0 and 2 agree (tau 1); each disagrees with seed 1 on the top two (tau 1/3).
    assert stability(truth.results.select_related("checkpoint")) == pytest.approx(5 / 9)
    assert stability([]) is None


def test_a_finished_truth_gives_agreement_intervals(owner):
    from transferability.models import CheckpointResult, MetricScore
    from tests.transferability.test_pages import checkpoint

    evaluation = finished_evaluation(owner)
    for i, name in enumerate(["beta-net", "gamma-net"]):
        result = CheckpointResult.objects.create(
            evaluation=evaluation, status="done", feature_dim=32,
            checkpoint=checkpoint(name, feature_dim=32))
        MetricScore.objects.create(result=result, metric="logme", value=0.1 * i)
        MetricScore.objects.create(result=result, metric="tmi", value=0.5 * i)
    measured_over_seeds(evaluation, {"mid-net": [88.0, 89.0, 90.0],
                                     "zeta-net": [80.0, 81.0, 79.0],
                                     "alpha-net": [70.0, 71.0, 72.0],
                                     "beta-net": [60.0, 61.0, 62.0],
                                     "gamma-net": [65.0, 64.0, 66.0]})
    truth = truth_payload(evaluation, ranked_rows(evaluation))
    low, high = truth["agreement"]["logme"]["weighted_tau_interval"]
    assert -1.0 <= low <= truth["agreement"]["logme"]["weighted_tau"] <= high <= 1.0
