"""TMI: transferability as the conditional entropy of features given the class.

Xu & Kang, "Fast and Accurate Transferability Measurement by Evaluating Intra-class Feature
Variance", ICCV 2023, arXiv 2308.05986. Implemented from docs/science.md section 2.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist
from scipy.special import digamma

from ._validation import check_features_labels, check_positive_int

__all__ = ["tmi"]

# Upper bound on the entries of one block of the brute-force distance matrix (float64):
# 2**23 entries = 64 MiB. Tests shrink it to exercise the chunking.
_BLOCK_ENTRIES = 1 << 23
# At or below this dimension a KD-tree (exact, Chebyshev metric) beats brute force.
_KDTREE_MAX_DIM = 16


def _kth_neighbour_chebyshev(Xc: np.ndarray, k: int) -> np.ndarray:
    """Chebyshev distance from every row of ``Xc`` to its k-th nearest *other* row.

    Requires ``k < len(Xc)``. The row itself is at distance exactly 0, so the k-th other
    neighbour is order statistic ``k`` (0-based) of the row's distances to all rows, self
    included; duplicates of the row are other samples at distance 0, as they should be.
    Brute force runs in row blocks so that memory stays at ``_BLOCK_ENTRIES`` floats
    whatever the class size (never ``n_c * n_c * d``).
    """
    n, d = Xc.shape
    if d <= _KDTREE_MAX_DIM:
        distances, _ = cKDTree(Xc).query(Xc, k=k + 1, p=np.inf)
        return np.asarray(distances[:, k], dtype=np.float64)
    out = np.empty(n, dtype=np.float64)
    rows = max(1, _BLOCK_ENTRIES // n)
    for start in range(0, n, rows):
        block = cdist(Xc[start:start + rows], Xc, metric="chebyshev")
        out[start:start + rows] = np.partition(block, k, axis=1)[:, k]
    return out


def tmi(features, labels, k: int = 3, min_dist: float = 1.0) -> float:
    """TMI (Xu & Kang, ICCV 2023, arXiv 2308.05986): conditional entropy H(Z | Y).

    Higher is better (more intra-class feature variance = more transferable, per the paper).

    Follows docs/science.md section 2 exactly, i.e. the authors' reference variant: per class
    c, the Kozachenko-Leonenko k-NN entropy estimate with the Chebyshev (L-inf) distance
    ``eps_i`` from z_i to its k-th nearest other sample of the same class, floored at
    ``min_dist``::

        H_c = digamma(n_c) - digamma(k) + (d / n_c) * sum_i log(2 * eps_i)

    Classes with 1 sample contribute H_c = 0 but count; classes with 2..k samples have no
    k-th neighbour and are left out; the result is the *mean* over the kept classes of
    ``(n_c / N) * H_c`` (natural log, float64). Labels are mapped to 0..C-1 first.

    Args:
        features: ``N x d`` array (float32 or float64; distances are exact in float64).
        labels: length-N labels of any type.
        k: neighbour order (int >= 1), default 3.
        min_dist: floor on ``eps_i`` (> 0, or 0 when no two samples coincide), default 1.0.

    A single class is allowed (the reference values include one). Raises ValueError on
    malformed input, when every class has 2..k samples (nothing to average), or when
    ``min_dist == 0`` meets duplicate samples (log 0).

    Cost: about ``d * sum_c n_c**2`` operations; KD-tree for d <= 16, otherwise blockwise
    brute force with ``scipy.spatial.distance.cdist`` (C code, float64).
    """
    k = check_positive_int(k, "k")
    min_dist = float(min_dist)
    if not np.isfinite(min_dist) or min_dist < 0:
        raise ValueError(f"min_dist must be a finite number >= 0, got {min_dist!r}")
    X, y, n_classes = check_features_labels(features, labels, min_classes=1, keep_float32=True)
    n_total, d = X.shape
    order = np.argsort(y, kind="stable")
    bounds = np.searchsorted(y[order], np.arange(n_classes + 1))
    weighted_sum = 0.0
    kept = 0
    for c in range(n_classes):
        members = order[bounds[c]:bounds[c + 1]]
        n_c = members.size
        if n_c <= 1:
            kept += 1  # H_c = 0, still counted
            continue
        if n_c <= k:
            continue  # no k-th neighbour: infinite estimate, left out
        class_rows = np.asarray(X[members], dtype=np.float64)  # exact for float32 input
        eps = np.maximum(_kth_neighbour_chebyshev(class_rows, k), min_dist)
        if (eps <= 0).any():
            raise ValueError(
                "duplicate samples within a class give a zero k-NN distance; "
                "use min_dist > 0 to floor it"
            )
        h_c = digamma(n_c) - digamma(k) + (d / n_c) * float(np.sum(np.log(2.0 * eps)))
        weighted_sum += (n_c / n_total) * h_c
        kept += 1
    if kept == 0:
        raise ValueError(
            f"every class has between 2 and k={k} samples, so no class has a k-th "
            "neighbour and TMI is undefined"
        )
    return float(weighted_sum / kept)
