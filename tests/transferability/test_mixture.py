"""The torch diagonal mixture (N-LEEP on a device) repeats scikit-learn's steps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.cluster import kmeans_plusplus
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from transferability.metrics.mixture import diagonal_mixture_posteriors, kmeans_plusplus_indices


def blobs(n_per=80, d=6, c=5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((c, d)) * 3
    return np.repeat(centres, n_per, axis=0) + rng.standard_normal((n_per * c, d))


@pytest.mark.parametrize("k", [1, 7, 25])
def test_kmeans_plusplus_seeds_equal_scikit_learn(k):
    Z = blobs(seed=k)
    _, expected = kmeans_plusplus(Z, k, random_state=np.random.RandomState(123))
    ours = kmeans_plusplus_indices(torch.as_tensor(Z), k, np.random.RandomState(123))
    assert ours.tolist() == expected.tolist()


@pytest.mark.parametrize("max_iter", [1, 3, 100])
def test_posteriors_equal_scikit_learn(max_iter):
    Z = blobs(seed=4)
    fit_rows = Z[::2]
    gmm = GaussianMixture(n_components=15, covariance_type="diag", reg_covar=1e-6,
                          max_iter=max_iter, random_state=123, init_params="k-means++")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(fit_rows)
    ours = diagonal_mixture_posteriors(fit_rows, Z, 15, reg_covar=1e-6, max_iter=max_iter,
                                       random_state=123)
    assert ours.shape == (Z.shape[0], 15)
    np.testing.assert_allclose(ours, gmm.predict_proba(Z), atol=1e-8)
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-12)


def test_a_different_seed_gives_a_different_mixture():
    Z = blobs(seed=5)
    a = diagonal_mixture_posteriors(Z, Z, 12, reg_covar=1e-6, random_state=1)
    b = diagonal_mixture_posteriors(Z, Z, 12, reg_covar=1e-6, random_state=2)
    assert not np.allclose(a, b)

