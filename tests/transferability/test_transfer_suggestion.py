"""The transfer the evaluation page suggests: its expected gain, and none when that gain is
not positive."""

from types import SimpleNamespace

import pytest

from tests.builders import saved_checkpoint
from transferability.models import Evaluation, Status, TargetDataset, Transfer
from transferability.transfers import GAIN_HISTORY, realised_share, suggest_pair

pytestmark = pytest.mark.django_db


def pair(a, b, positive, negative):
    return {"a": a, "b": b, "positive_flips": positive, "negative_flips": negative}


def report(*pairs):
    return SimpleNamespace(complementarity={"names": [], "accuracy": [], "pairs": list(pairs)})


def test_without_history_only_a_more_accurate_teacher_is_suggested():
    # "weak" beats the student on 9 % of the images but loses on 12 %: a weaker teacher.
    evaluation = report(pair("weak", "student", 9.0, 12.0), pair("strong", "student", 6.0, 2.0))
    suggestion = suggest_pair(evaluation, [], "student")
    assert suggestion["teacher"] == "strong" and suggestion["expected_gain"] is None
    assert "not estimated yet: 0 of the 3 measured transfers" in suggestion["basis"]
    assert "4.0 points more accurate" in suggestion["basis"]
    assert suggest_pair(report(pair("weak", "student", 9.0, 12.0)), [], "student") is None


def measured_transfers(owner, deltas):
    dataset = TargetDataset.objects.create(owner=owner, name="d", store_dir="d")
    evaluation = Evaluation.objects.create(owner=owner, dataset=dataset)
    a, b = saved_checkpoint("t-a", "test_resnet"), saved_checkpoint("t-b", "test_vit", seed=2)
    for delta in deltas:
        Transfer.objects.create(owner=owner, evaluation=evaluation, teacher=a, student=b,
                                status=Status.DONE, delta={"delta_accuracy": delta},
                                flips_before={"positive": 3.0, "negative": 10.0})


def test_the_expected_gain_comes_from_the_transfers_measured_here(owner):
    measured_transfers(owner, [2.0, 3.0, 4.0])
    assert realised_share() == (0.3, GAIN_HISTORY)
    suggestion = suggest_pair(report(pair("weak", "student", 9.0, 12.0)), [], "student")
    assert suggestion["expected_gain"] == pytest.approx(2.7)
    assert "30 % of the flips on offer, the median kept by the 3 transfers" in suggestion["basis"]


def test_no_suggestion_when_transfers_here_lost_accuracy(owner):
    measured_transfers(owner, [-0.78, -1.0, 0.5])
    assert realised_share()[0] < 0
    assert suggest_pair(report(pair("strong", "student", 6.0, 2.0)), [], "student") is None
