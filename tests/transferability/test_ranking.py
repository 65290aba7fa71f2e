import numpy as np
import pytest

from transferability.ranking import (
    ConstantInputError,
    kendall_tau,
    ranking_summary,
    top_k_relative_accuracy,
    weighted_tau,
)

TRUTH = np.array([81.0, 62.5, 90.1, 70.0, 55.0, 77.7])


def test_weighted_tau_of_the_same_ranking_is_one():
    assert weighted_tau(TRUTH * 3 - 7, TRUTH) == pytest.approx(1.0)


def test_weighted_tau_of_the_reversed_ranking_is_minus_one():
    assert weighted_tau(-TRUTH, TRUTH) == pytest.approx(-1.0)


def test_lower_is_better_metrics_are_negated():
    assert weighted_tau(-TRUTH, TRUTH, higher_is_better=False) == pytest.approx(1.0)
    assert kendall_tau(-TRUTH, TRUTH, higher_is_better=False) == pytest.approx(1.0)
    assert top_k_relative_accuracy(-TRUTH, TRUTH, higher_is_better=False) == 1.0


def test_weighted_tau_weighs_mistakes_at_the_top_more():
    truth = np.arange(8.0)[::-1]  # model 0 is best
    top_swapped = truth.copy()
    top_swapped[[0, 1]] = top_swapped[[1, 0]]
    bottom_swapped = truth.copy()
    bottom_swapped[[6, 7]] = bottom_swapped[[7, 6]]
    assert kendall_tau(top_swapped, truth) == pytest.approx(kendall_tau(bottom_swapped, truth))
    assert weighted_tau(top_swapped, truth) < weighted_tau(bottom_swapped, truth) < 1


def test_kendall_tau_by_hand():
    # Pairs (0,1), (0,2) concordant, (1,2) discordant: (2 - 1) / 3.
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


def test_top_1_relative_accuracy_by_hand():
    scores = [0.1, 0.9, 0.5]
    truth = [80.0, 60.0, 70.0]
    assert top_k_relative_accuracy(scores, truth) == pytest.approx(60 / 80)
    assert top_k_relative_accuracy(scores, truth, k=2) == pytest.approx(70 / 80)
    assert top_k_relative_accuracy(scores, truth, k=3) == 1.0


def test_top_k_breaks_ties_against_the_metric_whatever_the_order():
    scores = np.array([1.0, 1.0, 0.0])
    truth = np.array([50.0, 100.0, 10.0])
    assert top_k_relative_accuracy(scores, truth) == 0.5
    assert top_k_relative_accuracy(scores[[1, 0, 2]], truth[[1, 0, 2]]) == 0.5
    assert top_k_relative_accuracy(scores, truth, k=2) == 1.0


@pytest.mark.parametrize("measure", [weighted_tau, kendall_tau, top_k_relative_accuracy])
def test_measures_refuse_bad_input(measure):
    with pytest.raises(ValueError, match="at least 2"):
        measure([1.0], [1.0])
    with pytest.raises(ValueError, match="ground-truth"):
        measure([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        measure([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        measure([1.0, 2.0], [np.nan, 2.0])


@pytest.mark.parametrize("measure", [weighted_tau, kendall_tau])
def test_tau_of_a_constant_vector_raises(measure):
    with pytest.raises(ConstantInputError, match="scores"):
        measure([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ConstantInputError, match="truth"):
        measure([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert issubclass(ConstantInputError, ValueError)


def test_top_k_refuses_bad_k_and_non_positive_truth():
    with pytest.raises(ValueError, match="k must"):
        top_k_relative_accuracy([1, 2], [1, 2], k=0)
    with pytest.raises(ValueError, match="k must"):
        top_k_relative_accuracy([1, 2], [1, 2], k=3)
    with pytest.raises(ValueError, match="positive"):
        top_k_relative_accuracy([1, 2], [0, 0])


def test_summary_reports_undefined_taus_as_none():
    summary = ranking_summary([1.0, 1.0, 1.0], [3.0, 2.0, 1.0])
    assert summary["weighted_tau"] is None and summary["kendall_tau"] is None
    assert summary["top_1_relative_accuracy"] == pytest.approx(1 / 3)
    assert summary["top_3_relative_accuracy"] == 1.0
    full = ranking_summary(TRUTH, TRUTH)
    assert full["weighted_tau"] == pytest.approx(1.0)
    assert full["top_1_relative_accuracy"] == 1.0
