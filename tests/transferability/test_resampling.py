"""How sure a ranking is: resampled images, P(first) and rank intervals. Pure numpy."""

import numpy as np
import pytest

from transferability.metrics import REGISTRY
from transferability.metrics.resampling import (NOT_RESAMPLED, consensus_confidence,
                                                rank_confidence, resample_indices,
                                                resampled_scores)


def test_resamples_keep_each_class_in_proportion_without_duplicates():
    labels = np.array(["a"] * 50 + ["b"] * 20 + ["c"] * 4)
    sets = resample_indices(labels, resamples=5)
    assert len(sets) == 5
    for index in sets:
        assert np.unique(index).size == index.size  # no image twice
        kept = labels[index]
        assert (kept == "a").sum() == 32 and (kept == "b").sum() == 13  # ceil(0.632 n_c)
        assert (kept == "c").sum() == 4  # at least 5, at most all
    assert not np.array_equal(sets[0], sets[1])
    again = resample_indices(list(labels), resamples=5)
    assert all(np.array_equal(x, y) for x, y in zip(sets, again))  # the same for every checkpoint


def test_a_clear_winner_is_first_in_every_resample_and_a_coin_flip_in_about_half():
    values = {"best": [10.0] * 30, "mid": [5.0] * 30, "low": [1.0] * 30}
    conf = rank_confidence(values)
    assert conf["resamples"] == 30 and conf["p_first"]["best"] == 1.0
    assert conf["rank_interval"] == {"best": [1, 1], "mid": [2, 2], "low": [3, 3]}
    rng = np.random.default_rng(0)
    coin = {"x": list(rng.normal(0, 1, 400)), "y": list(rng.normal(0, 1, 400))}
    p = rank_confidence(coin)["p_first"]
    assert p["x"] == pytest.approx(0.5, abs=0.08) and p["x"] + p["y"] == pytest.approx(1.0)
    assert rank_confidence({"a": [1.0, 2.0]}, higher_is_better=False)["p_first"]["a"] == 1.0
    # A tie for first is shared: P(first) sums to 1.
    tied = rank_confidence({"a": [2.0, 2.0], "b": [2.0, 1.0], "c": [0.0, 0.0]})["p_first"]
    assert tied == {"a": 0.75, "b": 0.25, "c": 0.0}


def test_resamples_where_a_checkpoint_has_no_value_are_left_out():
    conf = rank_confidence({"a": [2.0, None, 2.0], "b": [1.0, 3.0, 1.0]})
    assert conf["resamples"] == 2 and conf["p_first"]["a"] == 1.0


def test_the_consensus_ranks_the_mean_rank_per_resample():
    per_metric = {"m1": {"a": [3.0, 3.0], "b": [2.0, 1.0], "c": [1.0, 2.0]},
                  "m2": {"a": [1.0, 1.0], "b": [3.0, 3.0], "c": [2.0, 2.0]},
                  "loss": {"a": [0.1, 0.1], "b": [0.3, 0.3], "c": [0.2, 0.2]}}
    conf = consensus_confidence(per_metric, {"m1": True, "m2": False, "loss": True})
    # resample 0: m1 a1 b2 c3; m2 (lower better) a1 b3 c2; loss (higher better) b1 c2 a3
    # means a 5/3, b 2, c 7/3 -> a first. resample 1: m1 a1 c2 b3 -> a 5/3, b 7/3, c 2.
    assert conf["p_first"] == {"a": 1.0, "b": 0.0, "c": 0.0}
    assert conf["rank_interval"]["b"] == [2, 3]


def test_the_panel_is_resampled_except_the_costly_metrics():
    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    X = rng.normal(size=(3, 8))[y] * 3 + rng.normal(size=(120, 8))
    specs = [REGISTRY[n] for n in ("tmi", "logme", "knn_accuracy", "probe_accuracy", "parc")]
    values = resampled_scores(X, y, specs, indices=resample_indices(y, resamples=4))
    assert set(values) == {"tmi", "logme", "knn_accuracy"}
    assert all(len(v) == 4 and all(np.isfinite(v)) for v in values.values())
    assert values["tmi"][0] == pytest.approx(REGISTRY["tmi"].func(
        X[resample_indices(y, 4)[0]], y[resample_indices(y, 4)[0]]))
    assert {"probe_accuracy", "parc", "nleep", "ncti"} == set(NOT_RESAMPLED)
