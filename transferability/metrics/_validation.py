"""Shared input checks, label mapping and small linear-algebra helpers for the metrics.

Every metric calls :func:`check_features_labels` (or :func:`check_source_probs`) first, so
that all of them reject the same malformed input with the same kind of message:

- empty input                       -> ValueError("empty input ...")
- features that are not 2-D         -> ValueError("... must be a 2-D array ...")
- NaN or inf in the features        -> ValueError("... contain NaN or inf ...")
- features/labels of other lengths  -> ValueError("... length mismatch ...")
- fewer classes than the metric needs -> ValueError("... at least 2 classes ...")

Labels may be any hashable values numpy can sort (ints with gaps, strings, ...); they are
mapped to 0..C-1 with ``np.unique`` so that gaps never create empty classes.

No Django imports here (the package is plain numpy / scipy / scikit-learn).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "check_features_labels",
    "check_source_probs",
    "check_positive_int",
    "class_counts",
    "class_sums",
    "centre_columns",
    "pow2_scale",
    "one_hot",
    "pca_project",
    "sym_pinv",
    "require_finite",
]


def _as_2d_array(values, name: str, keep_float32: bool) -> np.ndarray:
    try:
        array = np.asarray(values)
    except Exception as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} cannot be converted to a numeric array: {exc}") from exc
    if array.size == 0:
        raise ValueError(f"empty input: {name} has shape {array.shape}")
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_samples x n_dims); got {array.ndim}-D "
            f"with shape {array.shape}"
        )
    if array.dtype.kind == "c":
        raise ValueError(f"{name} must be real-valued, got complex dtype {array.dtype}")
    if keep_float32 and array.dtype == np.float32:
        out = array
    else:
        try:
            out = array.astype(np.float64, copy=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be numeric, got dtype {array.dtype}: {exc}") from exc
    if not np.isfinite(out).all():
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValueError(f"{name} contain NaN or inf values ({bad} non-finite entries)")
    return out


def _map_labels(labels, n_rows: int, name: str) -> tuple[np.ndarray, int]:
    try:
        raw = np.asarray(labels)
    except Exception as exc:
        raise ValueError(f"labels cannot be converted to an array: {exc}") from exc
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim != 1:
        raise ValueError(f"labels must be a 1-D array; got shape {raw.shape}")
    if raw.shape[0] != n_rows:
        raise ValueError(
            f"length mismatch: {name} has {n_rows} rows but labels has {raw.shape[0]} entries"
        )
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise ValueError("labels contain NaN or inf values")
    try:
        classes, mapped = np.unique(raw, return_inverse=True)
    except TypeError as exc:  # e.g. a mix of str and None in an object array
        raise ValueError(f"labels cannot be sorted into classes: {exc}") from exc
    return mapped.reshape(-1).astype(np.intp, copy=False), int(classes.size)


def check_features_labels(
    features,
    labels,
    *,
    min_classes: int = 2,
    keep_float32: bool = False,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate a feature matrix and its labels.

    Returns ``(X, y, n_classes)``: ``X`` is an ``N x D`` float64 array (float32 input is kept
    as float32 when ``keep_float32``), ``y`` holds int class indices 0..C-1 (``np.unique``
    order of the original labels) and ``n_classes`` is C. Raises ValueError for empty input,
    non-2-D features, NaN/inf, length mismatch, or fewer than ``min_classes`` classes.
    """
    X = _as_2d_array(features, "features", keep_float32)
    y, n_classes = _map_labels(labels, X.shape[0], "features")
    if n_classes < min_classes:
        raise ValueError(
            f"need at least {min_classes} classes, got {n_classes} "
            f"({'a single class' if n_classes == 1 else 'too few classes'})"
        )
    return X, y, n_classes


def check_source_probs(
    source_probs, labels, *, min_classes: int = 2, atol: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate an ``N x C_source`` matrix of source-head softmax probabilities.

    Entries must be finite and non-negative and every row must sum to 1 within ``atol``
    (logits passed by mistake are rejected with a message saying so). Rows are renormalised
    exactly in float64. Returns ``(P, y, n_target_classes)``.
    """
    P = _as_2d_array(source_probs, "source_probs", keep_float32=False)
    y, n_classes = _map_labels(labels, P.shape[0], "source_probs")
    if n_classes < min_classes:
        raise ValueError(
            f"need at least {min_classes} classes, got {n_classes} "
            f"({'a single class' if n_classes == 1 else 'too few classes'})"
        )
    if (P < 0).any():
        raise ValueError(
            "source_probs must be softmax probabilities, found negative entries "
            "(were logits passed instead of probabilities?)"
        )
    sums = P.sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=0.0, atol=atol):
        raise ValueError(
            "rows of source_probs must sum to 1 (softmax probabilities); got row sums in "
            f"[{sums.min():.6g}, {sums.max():.6g}]"
        )
    return P / sums[:, None], y, n_classes


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise ValueError if it is not an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def class_counts(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Number of samples per class index (length ``n_classes``)."""
    return np.bincount(y, minlength=n_classes)


def class_sums(X: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """``C x D`` per-class sums of the rows of ``X`` (every class must be non-empty).

    Sorting plus ``np.add.reduceat`` costs O(N D), unlike a one-hot product (O(N C D)) or
    ``np.add.at`` (slow).
    """
    order = np.argsort(y, kind="stable")
    starts = np.searchsorted(y[order], np.arange(n_classes))
    return np.add.reduceat(X[order], starts, axis=0).astype(np.float64, copy=False)


def centre_columns(X: np.ndarray) -> np.ndarray:
    """``X`` minus its column means, in float64, with exactly-constant columns set to 0.

    Subtracting a mean in floating point leaves rounding noise (~1e-16) in a constant
    column; that noise must not be mistaken for variance (e.g. by a pseudo-inverse).
    """
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(axis=0)
    Xc[:, np.ptp(X, axis=0) == 0.0] = 0.0
    return Xc


def pow2_scale(X: np.ndarray) -> float:
    """The power of two at or just below ``max |X|`` (1.0 for an all-zero array).

    Dividing by it is exact in floating point and brings the entries into [-2, 2], so that
    scale-free computations neither overflow nor underflow on extreme feature scales.
    """
    top = float(np.max(np.abs(X), initial=0.0))
    if top == 0.0:
        return 1.0
    return float(2.0 ** np.floor(np.log2(top)))


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    """``N x C`` float64 one-hot encoding of class indices."""
    out = np.zeros((y.shape[0], n_classes), dtype=np.float64)
    out[np.arange(y.shape[0]), y] = 1.0
    return out


def require_finite(value: float, metric: str) -> float:
    """Return ``float(value)``, or raise ValueError instead of silently returning NaN/inf."""
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{metric} is not finite on these inputs (got {value}); "
                         "the features are numerically degenerate")
    return value


def sym_pinv(matrix: np.ndarray, rtol: float | None = None) -> np.ndarray:
    """Moore-Penrose pseudo-inverse of a symmetric PSD matrix via ``eigh``.

    Eigenvalues at or below ``rtol * max(eigenvalue)`` are treated as zero; the default
    ``rtol`` is ``size * machine epsilon`` (the usual matrix-rank tolerance). An all-zero
    matrix gives an all-zero pseudo-inverse.
    """
    matrix = 0.5 * (matrix + matrix.T)
    values, vectors = np.linalg.eigh(matrix)
    top = values.max(initial=0.0)
    if top <= 0.0:
        return np.zeros_like(matrix)
    if rtol is None:
        rtol = matrix.shape[0] * np.finfo(np.float64).eps
    keep = values > rtol * top
    return (vectors[:, keep] / values[keep]) @ vectors[:, keep].T


def pca_project(
    X: np.ndarray,
    n_components: int | None = None,
    variance: float | None = None,
) -> np.ndarray:
    """Deterministic PCA: centre ``X`` and project it on its leading principal axes.

    Give either ``n_components`` (capped at the number of non-zero-variance axes, at most
    ``min(N - 1, D)``) or ``variance`` in (0, 1]: the fewest components whose explained
    variance reaches that fraction; neither gives every non-zero-variance axis (a rotation
    onto the span of the centred data). Uses an eigendecomposition of the smaller of the
    ``D x D`` covariance or the ``N x N`` Gram matrix (cheap for N >> D, unlike a full SVD),
    with a fixed sign convention.

    The scores are returned in units of :func:`pow2_scale` of the centred features (an
    exact power of two), so that callers see values of order one whatever the feature
    scale; every caller is scale-free. Raises ValueError when the features have zero
    variance (all rows identical): there are no principal axes to project on.
    """
    n, d = X.shape
    Xc = centre_columns(X)
    Xc /= pow2_scale(Xc)
    if d <= n:
        values, vectors = np.linalg.eigh(Xc.T @ Xc)
        values, vectors = values[::-1], vectors[:, ::-1]
        axes = vectors
    else:
        values, left = np.linalg.eigh(Xc @ Xc.T)
        values, left = values[::-1], left[:, ::-1]
        axes = None
    values = np.clip(values, 0.0, None)
    total = values.sum()
    if total <= 0.0:
        raise ValueError("features have zero variance (all rows identical): PCA is undefined")
    positive = int(np.count_nonzero(values > values[0] * max(n, d) * np.finfo(np.float64).eps))
    if variance is not None:
        if not 0.0 < variance <= 1.0:
            raise ValueError(f"variance must be in (0, 1], got {variance!r}")
        ratio = np.cumsum(values) / total
        k = int(np.searchsorted(ratio, variance - 1e-12) + 1)
    elif n_components is not None:
        k = check_positive_int(n_components, "n_components")
    else:
        k = positive
    k = max(1, min(k, positive))
    if axes is not None:
        Z = Xc @ axes[:, :k]
    else:
        # Left singular vectors times singular values are the principal scores.
        Z = left[:, :k] * np.sqrt(values[:k])
    # Fixed sign: the largest-magnitude score of each component is positive.
    signs = np.sign(Z[np.argmax(np.abs(Z), axis=0), np.arange(k)])
    signs[signs == 0] = 1.0
    return Z * signs
