"""N-LEEP: LEEP through a Gaussian mixture fitted on the features instead of a source head.

Li, Jia, Sang, Zhu, Green, Wang & Gong, "Ranking Neural Checkpoints", CVPR 2021,
arXiv 2011.11200.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from ._validation import check_positive_int, require_finite
from .leep import leep_from_probs
from .mixture import diagonal_mixture_posteriors
from .sampling import stratified_subsample
from .statistics import statistics_of

__all__ = ["nleep", "NLEEP_SAMPLE_LIMIT"]

# Above this many samples the mixture is fitted on a stratified subsample.
NLEEP_SAMPLE_LIMIT = 10_000
COVARIANCE_TYPES = ("diag", "full", "spherical", "tied")


def _n_distinct_rows(Z: np.ndarray) -> int:
    rows = np.ascontiguousarray(Z)
    return int(np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))).size)


def nleep(
    features,
    labels=None,
    variance: float = 0.8,
    components_per_class: int = 5,
    covariance_type: str = "diag",
    random_state: int = 123,
    max_iter: int = 100,
    max_samples: int = NLEEP_SAMPLE_LIMIT,
) -> float:
    """N-LEEP (Li et al., CVPR 2021, arXiv 2011.11200). Higher is better; N-LEEP <= 0.

    Follows google-research ``stable_transfer/transferability/nleep.py``: the features are
    reduced by PCA to the fewest components that keep ``variance`` (80 %) of the variance
    (scikit-learn's rule), a Gaussian mixture with ``components_per_class * C`` components
    (5 C, ``random_state`` = 123) is fitted on them, and its
    posterior memberships play the role of the source head in LEEP (log of the expected
    empirical prediction, see :func:`~.leep.leep`).

    Stated departures:

    - diagonal covariances by default. The released code fits full covariances
      (``covariance_type="full"`` gives that), which costs O(5C d^3) per EM round and is out
      of reach when 80 % of the variance needs hundreds of dimensions;
    - above ``max_samples`` (10,000) samples the mixture is fitted on a class-stratified
      subsample; the posteriors and the score use every sample;
    - the mixture starts from k-means++ seeds rather than a full k-means run (the k-means
      run cost more than the EM itself; the optimum reached differs at the level at which
      the value moves with the random state anyway);
    - ``reg_covar`` = 1e-6 times the mean PCA-component variance (scale-free, so the score
      does not change when the features are rescaled), and the number of components is
      capped at the number of distinct PCA rows.

    Features whose rows are all identical carry no information: one component, and N-LEEP
    equals the log class prior averaged over samples. The value moves with the random state
    at about the 1e-2 level (EM finds a local optimum).

    When the statistics live on a torch device (a GPU worker) the diagonal mixture is fitted
    there by :func:`~.mixture.diagonal_mixture_posteriors`, which repeats scikit-learn's
    steps in float64 and gives the same posteriors to rounding; other covariance types
    always use scikit-learn.

    Args:
        features: ``N x D`` features, or a :class:`~.statistics.FeatureStatistics`.
        labels: length-N labels of any type (at least 2 classes).
    """
    check_positive_int(components_per_class, "components_per_class")
    max_samples = check_positive_int(max_samples, "max_samples")
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, "
                         f"got {covariance_type!r}")
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance must be in (0, 1], got {variance!r}")
    stats = statistics_of(features, labels)
    stats.require_classes(2)
    y, n_classes = stats.y, stats.n_classes
    if stats.is_constant:
        membership = np.ones((stats.n, 1))
    else:
        Z = stats.pca_scores(stats.components_for_variance(variance))
        fit_rows = Z[stratified_subsample(y, max_samples, random_state)] \
            if stats.n > max_samples else Z
        n_components = min(components_per_class * n_classes, _n_distinct_rows(fit_rows))
        reg = 1e-6 * max(float(np.mean(np.var(Z, axis=0))), np.finfo(np.float64).tiny)
        device = getattr(stats.backend, "device", None)
        if device is not None and covariance_type == "diag":
            membership = diagonal_mixture_posteriors(
                fit_rows, Z, n_components, reg_covar=reg, max_iter=max_iter,
                random_state=random_state, device=device)
        else:
            gmm = GaussianMixture(n_components=n_components, covariance_type=covariance_type,
                                  reg_covar=reg, max_iter=max_iter, random_state=random_state,
                                  init_params="k-means++")
            with warnings.catch_warnings():
                # Not converging within max_iter still gives a usable mixture for ranking.
                warnings.simplefilter("ignore", ConvergenceWarning)
                gmm.fit(fit_rows)
            membership = gmm.predict_proba(Z)
    return require_finite(leep_from_probs(membership, y, n_classes), "N-LEEP")
