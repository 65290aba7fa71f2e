"""LEEP and NCE read the source head's softmax in cache-sized blocks: same values, no copies."""

import tracemalloc

import numpy as np
import pytest

from transferability import metrics
from transferability.metrics._validation import _map_labels, check_source_probs


def softmax_head(n, n_source, n_classes, seed=0, dtype=np.float64):
    rng = np.random.default_rng([seed, n, n_source, n_classes])
    y = rng.integers(0, n_classes, size=n)
    logits = rng.standard_normal((n, n_source)) * 2.0
    logits[np.arange(n), y % n_source] += 3.0
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (P / P.sum(axis=1, keepdims=True)).astype(dtype), y


def leep_by_definition(P, labels):
    """Nguyen et al. 2020 on renormalised float64 rows, with dense one-hot products."""
    P = P.astype(np.float64) / P.astype(np.float64).sum(axis=1, keepdims=True)
    y = np.unique(labels, return_inverse=True)[1]
    joint = np.eye(y.max() + 1)[y].T @ P / len(y)
    conditional = joint / joint.sum(axis=0)
    return np.mean(np.log((P @ conditional.T)[np.arange(len(y)), y]))


def nce_by_definition(P, labels):
    """Tran et al. 2019: -H(Y | Z) with Z the source argmax, from the dense joint."""
    y = np.unique(labels, return_inverse=True)[1]
    joint = np.zeros((y.max() + 1, P.shape[1]))
    np.add.at(joint, (y, np.argmax(P, axis=1)), 1.0 / len(y))
    nonzero = joint > 0
    marginal = np.broadcast_to(joint.sum(axis=0), joint.shape)
    return np.sum(joint[nonzero] * np.log(joint[nonzero] / marginal[nonzero]))


CASES = {
    "more classes than rows in a block": dict(n=2000, n_source=50, n_classes=300),
    "a head wider than a block": dict(n=300, n_source=5000, n_classes=4),
    "classes spanning several blocks": dict(n=3000, n_source=100, n_classes=2),
    "float32 head": dict(n=1000, n_source=200, n_classes=10, dtype=np.float32),
}


@pytest.mark.parametrize("name", CASES)
def test_leep_and_nce_equal_their_definitions(name):
    P, y = softmax_head(**CASES[name])
    assert metrics.leep(P, y) == pytest.approx(leep_by_definition(P, y), rel=1e-11)
    assert metrics.nce(P, y) == pytest.approx(nce_by_definition(P, y), rel=1e-12)


def test_rows_off_by_rounding_are_renormalised_in_float64():
    P, y = softmax_head(800, 30, 6, seed=1)
    P = P * (1.0 + np.random.default_rng(2).uniform(-5e-4, 5e-4, size=(800, 1)))
    assert metrics.leep(P, y) == pytest.approx(leep_by_definition(P, y), rel=1e-11)
    named = np.array([f"class {v * 7}" for v in y])  # names, in another sorted order
    assert metrics.leep(P, named) == pytest.approx(leep_by_definition(P, named), rel=1e-11)
    assert metrics.nce(P, named) == pytest.approx(nce_by_definition(P, named), rel=1e-12)


@pytest.mark.parametrize("metric", [metrics.leep, metrics.nce], ids=["leep", "nce"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_copy_of_the_head_is_made(metric, dtype):
    """The checks and the metric work in blocks: far less memory than one N x Z copy."""
    P, y = softmax_head(4000, 1000, 20, dtype=dtype)
    metric(P, y)  # first-call allocations (imports, caches) out of the measure
    tracemalloc.start()
    try:
        metric(P, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < P.nbytes / 4


def test_the_checks_hand_back_the_head_as_given_with_its_argmax():
    P, y = softmax_head(500, 40, 5, dtype=np.float32)
    P[7, [3, 9]] = P[7].max() + 0.01  # a tie: the first index wins
    P[7] /= P[7].sum()
    checked, mapped, n_classes, argmax = check_source_probs(P, y, argmax=True)
    assert checked is P and n_classes == 5
    assert np.array_equal(argmax, np.argmax(P, axis=1)) and argmax[7] == 3
    assert check_source_probs(np.eye(3, dtype=int), [0, 1, 2])[0].dtype == np.float64


def test_the_checks_keep_their_order_and_messages():
    P, y = softmax_head(60, 8, 3)
    with_nan = P.copy()
    with_nan[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):  # before the labels are looked at
        check_source_probs(with_nan, y[:-1])
    huge = np.full((4, 3), 3e38, dtype=np.float32)  # finite entries, float32 sums overflow
    with pytest.raises(ValueError, match=r"sum to 1.*\[9e\+38, 9e\+38\]"):
        check_source_probs(huge, [0, 1, 0, 1])
    with pytest.raises(ValueError, match="negative"):
        check_source_probs(np.log(P), y)


@pytest.mark.parametrize("labels", [
    np.array([3, 3, 9, 0, 9, 4]),
    np.array([3, 3, 9, 0, 9, 4], dtype=np.uint8),
    np.array([-2, 5, 5, -2, 7]),
    np.array([10**12, 4, 4, 10**12]),
    np.array([True, False, True]),
])
def test_labels_map_to_the_same_indices_as_np_unique(labels):
    mapped, n_classes = _map_labels(labels, len(labels), "source_probs")
    classes, expected = np.unique(labels, return_inverse=True)
    assert n_classes == classes.size and np.array_equal(mapped, expected)
    assert mapped.dtype == np.intp
