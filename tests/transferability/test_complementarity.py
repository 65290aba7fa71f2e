import json
import math

import numpy as np
import pytest

from transferability.complementarity import (
    accuracy,
    class_breakdown,
    complementarity_report,
    oracle_accuracy,
    positive_flips,
)

# Three models on four samples; flips counted by hand.
CORRECT = np.array([
    [1, 1, 0, 1],  # A: 75 %
    [1, 0, 1, 0],  # B: 50 %
    [0, 0, 1, 1],  # C: 50 %
], dtype=bool)


def test_it_computes_positive_flips_by_hand():
    expected = np.array([
        [0, 50, 50],  # A right & B wrong: samples 1, 3; A right & C wrong: 0, 1
        [25, 0, 25],  # B over A: sample 2; B over C: sample 0
        [25, 25, 0],  # C over A: sample 2; C over B: sample 3
    ], dtype=float)
    np.testing.assert_array_equal(positive_flips(CORRECT), expected)


def test_it_computes_oracle_accuracy_by_hand():
    expected = np.array([
        [75, 100, 100],
        [100, 50, 75],
        [100, 75, 50],
    ], dtype=float)
    np.testing.assert_array_equal(oracle_accuracy(CORRECT), expected)


@pytest.mark.parametrize("n", [1, 7, 100, 333, 1001])
def test_accuracy_difference_equals_flip_difference_on_random_matrices(n):
    rng = np.random.default_rng(n)
    correct = rng.random((5, n)) < rng.random((5, 1))
    acc = accuracy(correct)
    flips = positive_flips(correct)
    if 100 % n == 0:  # every percentage is an exact float: equality holds exactly
        np.testing.assert_array_equal(acc[:, None] - acc[None, :], flips - flips.T)
    np.testing.assert_allclose(acc[:, None] - acc[None, :], flips - flips.T, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.diag(flips), 0)


def test_it_matches_the_matrix_formula_and_pairwise_definition():
    rng = np.random.default_rng(1)
    correct = rng.random((4, 37)) < 0.5
    flips = positive_flips(correct)
    k = correct.astype(float)
    np.testing.assert_allclose(flips, 100 / 37 * k @ (1 - k).T, atol=1e-12)
    for i in range(4):
        for j in range(4):
            assert flips[i, j] == pytest.approx(100 * np.mean(correct[i] & ~correct[j]))
            assert oracle_accuracy(correct)[i, j] == pytest.approx(
                100 * np.mean(correct[i] | correct[j])
            )


def test_it_accepts_zero_one_integers_and_refuses_other_values():
    np.testing.assert_array_equal(positive_flips(CORRECT.astype(int)), positive_flips(CORRECT))
    with pytest.raises(ValueError, match="0/1"):
        positive_flips(np.array([[0, 2], [1, 0]]))
    with pytest.raises(ValueError, match="2-D"):
        positive_flips(np.array([True, False]))
    with pytest.raises(ValueError, match="no samples"):
        positive_flips(np.zeros((2, 0), dtype=bool))
    with pytest.raises(ValueError, match="boolean"):
        positive_flips(np.array([["a", "b"]]))


LABELS = np.array(["cat", "cat", "cat", "dog", "dog", "emu", "emu", "emu"])
A = np.array([1, 1, 1, 1, 0, 0, 1, 0], dtype=bool)
B = np.array([0, 0, 1, 0, 1, 1, 1, 0], dtype=bool)


def test_class_breakdown_by_hand():
    # A right, B wrong: samples 0, 1 (cat) and 3 (dog).
    breakdown = class_breakdown(A, B, LABELS)
    assert breakdown.classes.tolist() == ["cat", "dog", "emu"]
    assert breakdown.counts.tolist() == [2, 1, 0]
    assert breakdown.total == 3
    np.testing.assert_allclose(breakdown.shares, [2 / 3, 1 / 3, 0])
    assert breakdown.entropy == pytest.approx(math.log(3) - 2 / 3 * math.log(2), abs=1e-12)
    assert breakdown.max_entropy == pytest.approx(math.log(3))
    assert breakdown.top_p == {2: 1, 5: 1, 20: 1, 50: 1}


def test_class_breakdown_of_the_reverse_pair_by_hand():
    # B right, A wrong: samples 4 (dog) and 5 (emu); one class holds exactly 50 %.
    breakdown = class_breakdown(B, A, LABELS)
    assert breakdown.counts.tolist() == [0, 1, 1]
    assert breakdown.entropy == pytest.approx(math.log(2))
    assert breakdown.top_p == {2: 1, 5: 1, 20: 1, 50: 1}


def test_top_p_counts_classes_at_exact_share_boundaries():
    # 60 classes, one flip in each of the first 50: every share is exactly 2 %.
    labels = np.repeat(np.arange(60), 2)
    correct_a = np.zeros(120, dtype=bool)
    correct_a[0:100:2] = True
    breakdown = class_breakdown(correct_a, np.zeros(120, dtype=bool), labels)
    assert breakdown.total == 50
    assert breakdown.top_p == {2: 1, 5: 3, 20: 10, 50: 25}
    assert breakdown.entropy == pytest.approx(math.log(50))
    assert breakdown.max_entropy == pytest.approx(math.log(60))


def test_top_p_takes_the_largest_classes_first():
    # Counts 1, 6, 3 over three classes: 50 % needs only the class with 6 of 10.
    labels = np.array([0] * 1 + [1] * 6 + [2] * 3)
    breakdown = class_breakdown(np.ones(10, bool), np.zeros(10, bool), labels)
    assert breakdown.counts.tolist() == [1, 6, 3]
    assert breakdown.top_p[50] == 1
    labels = np.array([0] * 4 + [1] * 3 + [2] * 3)
    assert class_breakdown(np.ones(10, bool), np.zeros(10, bool), labels).top_p[50] == 2


def test_class_breakdown_without_flips_is_all_zero():
    breakdown = class_breakdown(A, A, LABELS)
    assert breakdown.total == 0
    assert breakdown.counts.tolist() == [0, 0, 0]
    assert breakdown.shares.tolist() == [0.0, 0.0, 0.0]
    assert breakdown.entropy == 0.0
    assert breakdown.top_p == {2: 0, 5: 0, 20: 0, 50: 0}


def test_class_breakdown_validates_inputs():
    with pytest.raises(ValueError, match="labels"):
        class_breakdown(A, B, LABELS[:-1])
    with pytest.raises(ValueError, match="samples"):
        class_breakdown(A, B[:-1], LABELS[:-1])
    with pytest.raises(ValueError, match="1-D"):
        class_breakdown(A[None], B, LABELS)


def test_class_breakdown_to_dict_is_json_friendly():
    data = class_breakdown(A, B, np.array([0, 0, 0, 1, 1, 5, 5, 5])).to_dict()
    assert json.loads(json.dumps(data)) == {
        "classes": [0, 1, 5],
        "counts": [2, 1, 0],
        "shares": [2 / 3, 1 / 3, 0.0],
        "total": 3,
        "entropy": pytest.approx(math.log(3) - 2 / 3 * math.log(2)),
        "max_entropy": pytest.approx(math.log(3)),
        "top_p": {"2": 1, "5": 1, "20": 1, "50": 1},
    }


def test_report_holds_matrices_and_every_ordered_pair():
    labels = np.array([0, 0, 1, 1])
    report = complementarity_report(CORRECT, labels, ["A", "B", "C"])
    assert json.loads(json.dumps(report)) == report
    assert report["names"] == ["A", "B", "C"]
    assert report["n_samples"] == 4 and report["n_classes"] == 2
    assert report["accuracy"] == [75.0, 50.0, 50.0]
    assert report["positive_flips"] == positive_flips(CORRECT).tolist()
    assert report["oracle"] == oracle_accuracy(CORRECT).tolist()
    pairs = {(p["a"], p["b"]): p for p in report["pairs"]}
    assert set(pairs) == {(a, b) for a in "ABC" for b in "ABC" if a != b}
    a_over_b = pairs[("A", "B")]
    assert a_over_b["positive_flips"] == 50.0
    assert a_over_b["negative_flips"] == 25.0
    assert a_over_b["oracle"] == 100.0
    # A right, B wrong on samples 1 (class 0) and 3 (class 1).
    assert a_over_b["breakdown"]["counts"] == [1, 1]


def test_report_validates_names_and_labels():
    with pytest.raises(ValueError, match="names"):
        complementarity_report(CORRECT, [0, 0, 1, 1], ["A", "B"])
    with pytest.raises(ValueError, match="distinct"):
        complementarity_report(CORRECT, [0, 0, 1, 1], ["A", "B", "A"])
    with pytest.raises(ValueError, match="labels"):
        complementarity_report(CORRECT, [0, 0, 1], ["A", "B", "C"])
