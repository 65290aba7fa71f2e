"""A diagonal-covariance Gaussian mixture fitted by EM in torch, for N-LEEP on a device.

It follows scikit-learn's ``GaussianMixture(covariance_type="diag",
init_params="k-means++", n_init=1)`` step for step: k-means++ seeds drawn with the same
``RandomState`` calls as ``sklearn.cluster.kmeans_plusplus``, responsibilities that start
one-hot on the seeds, the M step of ``_estimate_gaussian_parameters`` (with the same
``10 * eps`` added to the component masses and ``reg_covar`` added to the variances), the E
step of ``_estimate_log_gaussian_prob``, and the stopping rule ``|change in the mean log
likelihood| < tol``. It agrees with scikit-learn to rounding (the tests check seeds and
posteriors), so N-LEEP has the same value on a GPU worker as on a CPU one.

It computes in float64 on purpose. The E step expands ``(x - mu)^2 / var`` into three
products, and a component that holds one sample has a variance of order ``reg_covar``: in
float32 the cancellation then costs tens of nats per sample and moved N-LEEP by 0.4 on a
10,000 x 705 x 500 fit (-2.90 against -3.29, whatever the seed).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["diagonal_mixture_posteriors", "kmeans_plusplus_indices"]


def _squared_distances(torch, A, B, B_sq):
    """Squared Euclidean distances between the rows of A and of B, clipped at 0."""
    A_sq = (A * A).sum(dim=1)
    return (A_sq[:, None] - 2.0 * (A @ B.T) + B_sq[None, :]).clamp_min_(0.0)


def kmeans_plusplus_indices(X, n_clusters: int, random_state: np.random.RandomState):
    """Row indices of greedy k-means++ seeds, as ``sklearn.cluster.kmeans_plusplus`` picks
    them (``2 + int(log k)`` candidates per step, the one that lowers the potential most).

    ``X`` is a torch tensor; ``random_state`` a NumPy ``RandomState``, drawn from in the same
    order as scikit-learn does, so that equal distances give equal seeds.
    """
    import torch

    n = X.shape[0]
    n_local_trials = 2 + int(np.log(n_clusters))
    X_sq = (X * X).sum(dim=1)
    indices = np.empty(n_clusters, dtype=np.int64)
    first = random_state.choice(n, p=np.full(n, 1.0 / n))
    indices[0] = first
    closest = _squared_distances(torch, X[first:first + 1], X, X_sq)[0]
    potential = float(closest.sum())
    for c in range(1, n_clusters):
        draws = random_state.uniform(size=n_local_trials) * potential
        cumulative = np.cumsum(closest.detach().cpu().numpy().astype(np.float64))
        candidates = np.minimum(np.searchsorted(cumulative, draws), n - 1)
        candidate_rows = torch.as_tensor(candidates, device=X.device)
        to_candidates = _squared_distances(torch, X[candidate_rows], X, X_sq)
        torch.minimum(to_candidates, closest[None, :], out=to_candidates)
        potentials = to_candidates.sum(dim=1)
        best = int(torch.argmin(potentials))
        potential = float(potentials[best])
        closest = to_candidates[best]
        indices[c] = candidates[best]
    return indices


def _m_step(torch, X, X2, resp, reg_covar, eps):
    mass = resp.sum(dim=0) + 10 * eps
    sums = resp.T @ X
    means = sums / mass[:, None]
    variances = (resp.T @ X2) / mass[:, None] - 2.0 * means * sums / mass[:, None] \
        + means * means + reg_covar
    if bool((variances <= 0).any()):
        raise ValueError("the mixture's variances collapsed; raise reg_covar")
    weights = mass / mass.sum()
    return weights, means, variances


def _log_posteriors(torch, X, X2, weights, means, variances):
    """Per-sample log normaliser and log responsibilities (scikit-learn's E step)."""
    precisions = 1.0 / variances
    d = X.shape[1]
    log_det = -0.5 * torch.log(variances).sum(dim=1)
    quadratic = (means * means * precisions).sum(dim=1)[None, :] \
        - 2.0 * (X @ (means * precisions).T) + X2 @ precisions.T
    weighted = -0.5 * (d * math.log(2 * math.pi) + quadratic) + log_det + torch.log(weights)
    norm = torch.logsumexp(weighted, dim=1)
    return norm, weighted - norm[:, None]


def diagonal_mixture_posteriors(
    fit_rows: np.ndarray,
    all_rows: np.ndarray,
    n_components: int,
    *,
    reg_covar: float,
    max_iter: int = 100,
    tol: float = 1e-3,
    random_state: int = 123,
    device="cpu",
) -> np.ndarray:
    """Fit a diagonal Gaussian mixture on ``fit_rows`` and return the posterior memberships
    of ``all_rows`` (N x n_components, float64).

    Not converging within ``max_iter`` still gives a usable mixture (as for scikit-learn,
    whose warning N-LEEP silences).
    """
    import torch

    dt = torch.float64
    eps = float(torch.finfo(dt).eps)
    rng = np.random.RandomState(random_state)
    X = torch.as_tensor(np.ascontiguousarray(fit_rows), device=device).to(dt)
    X2 = X * X
    seeds = kmeans_plusplus_indices(X, n_components, rng)
    resp = torch.zeros((X.shape[0], n_components), dtype=dt, device=X.device)
    resp[torch.as_tensor(seeds, device=X.device), torch.arange(n_components, device=X.device)] = 1
    weights, means, variances = _m_step(torch, X, X2, resp, reg_covar, eps)
    lower_bound = -math.inf
    for _ in range(max_iter):
        previous = lower_bound
        norm, log_resp = _log_posteriors(torch, X, X2, weights, means, variances)
        weights, means, variances = _m_step(torch, X, X2, torch.exp(log_resp), reg_covar, eps)
        lower_bound = float(norm.mean())
        if abs(lower_bound - previous) < tol:
            break
    del X, X2, resp
    out = np.empty((all_rows.shape[0], n_components), dtype=np.float64)
    step = max(1, (1 << 22) // n_components)
    for start in range(0, all_rows.shape[0], step):
        A = torch.as_tensor(np.ascontiguousarray(all_rows[start:start + step]),
                            device=device).to(dt)
        _, log_resp = _log_posteriors(torch, A, A * A, weights, means, variances)
        out[start:start + step] = torch.exp(log_resp).double().cpu().numpy()
    return out
