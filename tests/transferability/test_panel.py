"""The panel over shared statistics: one pass, either backend, stated approximations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import NearestNeighbors

from transferability import metrics
from transferability.metrics import REGISTRY, FeatureStatistics, score_panel
from transferability.metrics.hscore import ledoit_wolf_shrinkage
from transferability.metrics.sampling import stratified_subsample


def classes(n, d, c, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % c)
    return rng.standard_normal((c, d))[y] * 1.5 + rng.standard_normal((n, d)), y


def source_probs(y, seed=0, n_source=12):
    logits = np.random.default_rng(seed).standard_normal((y.size, n_source))
    logits[np.arange(y.size), y % n_source] += 2.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("n,d", [(300, 20), (60, 90)], ids=["N>D", "D>N"])
def test_torch_path_equals_numpy_path_for_every_metric(n, d):
    """The device path run on CPU tensors: every metric within 1e-6, TMI within 1e-9."""
    X, y = classes(n, d, 5)
    specs = list(REGISTRY.values())
    probs = source_probs(y)
    on_numpy = score_panel(X, y, specs, source_probs=probs)
    on_torch = score_panel(X, y, specs, source_probs=probs, device="cpu")
    for a, b in zip(on_numpy, on_torch):
        assert a.name == b.name and a.error == b.error
        if a.value is None:
            assert a.details["components"] == pytest.approx(b.details["components"], rel=1e-6)
        else:
            rel = 1e-9 if a.name == "tmi" else 1e-6
            assert b.value == pytest.approx(a.value, rel=rel, abs=1e-12), a.name


def test_panel_equals_the_metric_functions_called_alone():
    X, y = classes(200, 12, 4, seed=3)
    for score in score_panel(X, y, list(REGISTRY.values()), source_probs=source_probs(y)):
        spec = REGISTRY[score.name]
        inputs = source_probs(y) if spec.needs == "source_probs" else X
        alone = spec.func(inputs, y)
        if spec.relative_to_set:
            assert score.value is None and score.details["components"] == pytest.approx(alone)
        else:
            assert score.value == pytest.approx(alone, rel=1e-12), score.name
        assert score.seconds >= 0.0 and not score.error


def test_shared_statistics_are_computed_once(monkeypatch):
    X, y = classes(200, 12, 4)
    stats = FeatureStatistics(X, y)
    calls = []
    real = stats.backend.gram
    monkeypatch.setattr(stats.backend, "gram", lambda A: calls.append(A.shape) or real(A))
    for name in ("hscore", "shrinkage_hscore", "gbc", "parc", "transrate", "logme"):
        getattr(metrics, name)(stats)
    # One D x D scatter for all of them (TransRate adds one small Gram per class).
    assert calls.count((200, 12)) == 1
    assert len(calls) == 1 + 4


@pytest.mark.parametrize("n,d", [(300, 20), (40, 90)])
def test_ledoit_wolf_shrinkage_from_statistics_equals_scikit_learn(n, d):
    X, y = classes(n, d, 3, seed=5)
    expected = LedoitWolf().fit(X).shrinkage_
    assert ledoit_wolf_shrinkage(FeatureStatistics(X, y)) == pytest.approx(expected, rel=1e-9)


def test_knn_accuracy_above_the_limit_uses_a_stratified_subsample_of_queries():
    X, y = classes(600, 8, 3, seed=2)
    queries = stratified_subsample(y, 150, random_state=0)
    assert queries.size == 150
    assert np.bincount(y[queries]).tolist() == [50, 50, 50]
    _, index = NearestNeighbors(n_neighbors=2).fit(X).kneighbors(X[queries])
    expected = np.mean(y[index[:, 1]] == y[queries])  # nearest other sample, among all
    assert metrics.knn_accuracy(X, y, k=1, max_samples=150) == pytest.approx(expected)
    assert metrics.knn_accuracy(X, y, k=1, max_samples=150, random_state=1) != expected


def test_panel_states_approximations_and_set_level_components(monkeypatch):
    import dataclasses

    X, y = classes(120, 6, 3)
    knn = dataclasses.replace(REGISTRY["knn_accuracy"], sample_limit=100)
    scores = {s.name: s for s in score_panel(X, y, [knn, REGISTRY["ncti"], REGISTRY["tmi"]])}
    assert scores["knn_accuracy"].details["note"] == "k-NN on 100 of 120 samples"
    assert scores["ncti"].value is None
    assert set(scores["ncti"].details["components"]) == {"seli", "ncc", "vc"}
    # TMI says how much of it the floor decides.
    assert set(scores["tmi"].details) == {"diagnostics"}
    assert set(scores["tmi"].details["diagnostics"]) == {"floored_share", "median_distance",
                                                         "floor", "k"}


def test_a_source_metric_without_a_head_is_explained():
    X, y = classes(60, 4, 3)
    [score] = score_panel(X, y, [REGISTRY["leep"]])
    assert score.value is None and "no source head" in score.error
