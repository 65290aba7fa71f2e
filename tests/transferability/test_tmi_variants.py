"""TMI's floor diagnostics and its scale-aware forms (docs/science.md, section 2).

Pure numpy: no Django.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import digamma

from transferability import metrics
from transferability.metrics import REGISTRY, score_panel


def classes(seed=0, n=240, d=12, c=4, spread=3.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    return rng.standard_normal((c, d))[y] * spread + rng.standard_normal((n, d)), y


def reference_x():
    """The second TMI reference input of docs/science.md section 2."""
    i, j = np.meshgrid(np.arange(30), np.arange(6), indexing="ij")
    return ((i * (j + 3)) % 11) * 0.5, np.arange(30) % 3


def test_the_floor_share_counts_distances_under_min_dist():
    X, y = classes()
    X = X * 0.4  # k-th neighbour distances on both sides of the floor
    eps = np.concatenate([
        np.sort(np.max(np.abs(X[y == c][:, None] - X[y == c][None]), axis=2), axis=1)[:, 3]
        for c in range(4)])
    diag = metrics.tmi_floor_diagnostics(X, y)
    assert diag["floored_share"] == pytest.approx(np.mean(eps < 1.0))
    assert diag["median_distance"] == pytest.approx(np.median(eps))
    assert 0.0 < diag["floored_share"] < 1.0
    # Shrunk tenfold, every distance is under the floor: TMI then only counts d.
    assert metrics.tmi_floor_diagnostics(X * 0.01, y)["floored_share"] == 1.0
    assert metrics.tmi_floor_diagnostics(X * 100, y)["floored_share"] == 0.0


def test_published_tmi_is_unchanged_by_the_shared_distances():
    X, y = reference_x()
    assert metrics.tmi(X, y) == pytest.approx(3.8050010219914316, rel=1e-9)
    stats = metrics.FeatureStatistics(X, y)
    assert metrics.tmi(stats) == pytest.approx(3.8050010219914316, rel=1e-9)
    # The distances are computed once for TMI, its forms and its diagnostics.
    metrics.tmi_standardized(stats)
    metrics.tmi_floor_diagnostics(stats)
    assert [key for key in stats._cache if key[0] == "class_kth_chebyshev"] == [
        ("class_kth_chebyshev", 3)]


def test_floored_tmi_measures_width_and_the_scale_aware_forms_do_not():
    """Two checkpoints with the same geometry, one twice as wide (its coordinates
    repeated) and both small: published TMI prefers the wide one for its width alone."""
    X, y = classes(d=8)
    small = X * 0.05
    wide = np.hstack([small, small])
    assert metrics.tmi(wide, y) > metrics.tmi(small, y)
    assert metrics.tmi_floor_diagnostics(wide, y)["floored_share"] == 1.0
    assert metrics.knn_mutual_information(wide, y) == pytest.approx(
        metrics.knn_mutual_information(small, y), rel=1e-9)  # same neighbours


@pytest.mark.parametrize("name", ["tmi_standardized", "tmi_per_dimension",
                                  "knn_mutual_information"])
def test_scale_aware_forms_ignore_the_feature_scale(name):
    X, y = classes()
    func = REGISTRY[name].func
    for factor in (1e-3, 0.5, 7.0, 1e4):
        assert func(X * factor, y) == pytest.approx(func(X, y), rel=1e-9)
    assert metrics.tmi(X * 1e-3, y) != pytest.approx(metrics.tmi(X, y), rel=1e-3)


def test_per_dimension_is_standardised_over_d_and_relative_floor_catches_duplicates_only():
    X, y = classes(d=10)
    assert metrics.tmi_per_dimension(X, y) == pytest.approx(metrics.tmi_standardized(X, y) / 10)
    rms = np.sqrt(np.mean((X - X.mean(axis=0)) ** 2))
    assert metrics.tmi_standardized(X, y) == pytest.approx(metrics.tmi(X / rms, y), rel=1e-12)
    # No distance is near 1 % of the median: the relative floor changes nothing, the
    # published value with no floor at all.
    assert metrics.tmi_relative_floor(X, y) == pytest.approx(metrics.tmi(X, y, min_dist=0.0),
                                                             rel=1e-12)
    duplicated = np.vstack([X, X[:4]])
    with_dups = np.concatenate([y, y[:4]])
    assert np.isfinite(metrics.tmi_relative_floor(duplicated, with_dups))


def brute_force_ross(X, y, k=3):
    """Ross (2014), eq. (2), written out sample by sample."""
    n = len(y)
    dist = np.sqrt(((X[:, None] - X[None]) ** 2).sum(axis=2))
    np.fill_diagonal(dist, np.inf)
    terms = []
    for i in range(n):
        same = np.flatnonzero((y == y[i]) & (np.arange(n) != i))
        r = np.sort(dist[i, same])[k - 1]
        m = np.count_nonzero(dist[i] <= r)
        terms.append(digamma(np.sum(y == y[i])) + digamma(m))
    return digamma(n) + digamma(k) - np.mean(terms)


def test_knn_mutual_information_is_ross_estimator():
    X, y = classes(n=90, d=5, spread=1.0)
    assert metrics.knn_mutual_information(X, y) == pytest.approx(brute_force_ross(X, y),
                                                                 rel=1e-12)
    # scikit-learn's one-feature estimator is the same formula (its own code, 1-D).
    from sklearn.feature_selection._mutual_info import _compute_mi_cd
    x1 = X[:, 0]
    assert metrics.knn_mutual_information(x1[:, None], y) == pytest.approx(
        _compute_mi_cd(x1, y, 3), rel=1e-9)


def test_knn_mutual_information_separates_structure_from_noise():
    X, y = classes(n=400, c=4, spread=4.0)
    informative = metrics.knn_mutual_information(X, y)
    assert informative == pytest.approx(np.log(4), abs=0.15)
    shuffled = np.random.default_rng(1).permutation(y)
    assert abs(metrics.knn_mutual_information(X, shuffled)) < 0.15


def test_the_panel_stores_tmis_floor_share_beside_its_value():
    X, y = classes()
    (score,) = score_panel(X * 0.05, y, [REGISTRY["tmi"]])
    assert score.details["diagnostics"]["floored_share"] == 1.0
    assert score.details["diagnostics"]["floor"] == 1.0
