import numpy as np
import pytest

from transferability.probes import (
    holdout_probe_accuracy,
    make_probe,
    out_of_fold_predictions,
    probe_correctness,
    source_head_correctness,
)


def separable(n_per_class=30, n_classes=3, dim=5, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    means = np.eye(n_classes, dim) * 20
    x = means[y] + rng.normal(size=(y.size, dim))
    if labels is not None:
        y = np.asarray(labels)[y]
    return x, y


def test_out_of_fold_probe_on_separable_data_is_right_everywhere():
    x, y = separable()
    assert probe_correctness(x, y).mean() == 1.0


def test_predictions_keep_the_original_label_values():
    x, y = separable(labels=["cat", "dog", "emu"])
    predictions = out_of_fold_predictions(x, y)
    assert predictions.dtype == y.dtype
    assert list(predictions) == list(y)


def test_every_sample_is_predicted_by_a_probe_that_did_not_see_it():
    # More dimensions than samples: a probe that saw a sample memorises its random label.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 300))
    y = rng.integers(0, 3, size=120)
    assert 0.15 < probe_correctness(x, y, C=100.0).mean() < 0.55
    seen = make_probe(C=100.0).fit(x, y)
    assert np.mean(seen.predict(x) == y) == 1.0


def test_folds_shrink_to_the_smallest_class():
    x, y = separable()
    x = np.vstack([x, [[0, 0, 0, 20, 0], [0, 0, 0, 21, 0]]])
    y = np.concatenate([y, [3, 3]])
    assert probe_correctness(x, y, folds=10).mean() > 0.9


def test_it_refuses_classes_a_split_cannot_hold():
    x, y = separable()
    with pytest.raises(ValueError, match=r"fewer: \[7\]"):
        out_of_fold_predictions(np.vstack([x, x[:1]]), np.concatenate([y, [7]]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        out_of_fold_predictions(x, np.zeros(len(y)))
    with pytest.raises(ValueError, match="labels"):
        out_of_fold_predictions(x, y[:-1])
    with pytest.raises(ValueError, match="folds"):
        out_of_fold_predictions(x, y, folds=1)


def test_predictions_depend_only_on_the_seed():
    from transferability import probes

    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 4))
    y = np.repeat([0, 1], 30)
    first = out_of_fold_predictions(x, y, seed=1)
    probes._REMEMBERED.clear()  # fit again rather than answer from memory
    assert np.array_equal(first, out_of_fold_predictions(x, y, seed=1))
    assert not np.array_equal(first, out_of_fold_predictions(x, y, seed=2))


def test_predictions_are_remembered_by_content_not_by_identity():
    from transferability import probes

    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 3))
    y = np.repeat([0, 1], 20)
    probes._REMEMBERED.clear()
    out_of_fold_predictions(x, y)
    out_of_fold_predictions(x.copy(), y.copy())  # same content: no second fit
    assert len(probes._REMEMBERED) == 1
    out_of_fold_predictions(x + 1.0, y)
    assert len(probes._REMEMBERED) == 2


def test_source_head_correctness_by_hand():
    logits = np.array([
        [0.0, 5.0, 0.0, 1.0],  # argmax 1
        [0.0, 0.0, 0.0, 9.0],  # argmax 3
        [3.0, 1.0, 0.0, 0.0],  # argmax 0
        [2.0, 0.0, 0.0, 1.0],  # argmax 0
    ])
    labels = np.array(["ant", "bee", "ant", "cow"])
    mapping = {"ant": 1, "bee": 3, "cow": 0}
    assert source_head_correctness(logits, labels, mapping).tolist() == [True, True, False, True]


def test_source_head_correctness_accepts_numpy_integer_labels():
    logits = np.eye(3)
    correct = source_head_correctness(logits, np.array([10, 20, 30]), {10: 0, 20: 2, 30: 1})
    assert correct.tolist() == [True, False, False]


def test_source_head_correctness_names_labels_without_a_source_index():
    with pytest.raises(ValueError, match=r"\['bee', 'cow'\]"):
        source_head_correctness(np.eye(3), ["ant", "bee", "cow"], {"ant": 0})
    with pytest.raises(ValueError, match="outside"):
        source_head_correctness(np.eye(3), ["ant", "bee", "cow"], {"ant": 0, "bee": 1, "cow": 3})


def test_holdout_probe_accuracy_separates_signal_from_noise():
    x, y = separable(n_per_class=40)
    assert holdout_probe_accuracy(x, y) == 1.0
    rng = np.random.default_rng(1)
    noise = rng.normal(size=(150, 200))
    labels = rng.integers(0, 3, size=150)
    assert holdout_probe_accuracy(noise, labels) < 0.6
