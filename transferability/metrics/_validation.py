"""Shared input checks and label mapping for the metrics.

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
    "require_finite",
]


def _as_2d_array(values, name: str, keep_float32: bool, check_finite: bool = True) -> np.ndarray:
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
    if check_finite:
        _require_finite_entries(out, name)
    return out


def _require_finite_entries(array: np.ndarray, name: str) -> None:
    if not np.isfinite(array).all():
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise ValueError(f"{name} contain NaN or inf values ({bad} non-finite entries)")


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
    if raw.dtype.kind in "iu" and raw.size and 0 <= raw.min() and raw.max() < 2 * n_rows + 1024:
        # Small non-negative integers, the usual labels: a count per value is the same
        # mapping as np.unique's, without its sort.
        present = np.bincount(raw) > 0
        return (np.cumsum(present) - 1)[raw].astype(np.intp, copy=False), int(present.sum())
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
    source_probs, labels, *, min_classes: int = 2, atol: float = 1e-3, argmax: bool = False
):
    """Validate an ``N x C_source`` matrix of source-head softmax probabilities.

    Entries must be finite and non-negative and every row must sum to 1 within ``atol``
    (logits passed by mistake are rejected with a message saying so). Returns
    ``(P, y, n_target_classes)``, and each row's argmax (the first on a tie) after them
    when ``argmax``. ``P`` is the input as given when float32 or float64 (float64
    otherwise), *not* renormalised: a metric whose value depends on the row sums divides
    by them itself, in float64, while its rows are in cache.

    LEEP reads ``P`` twice and NCE once (its argmax), so the checks must cost less than a
    pass over it: they read ``P`` once, in blocks that stay in cache while their row sums,
    minimum and argmax are taken, and copy nothing.
    """
    P = _as_2d_array(source_probs, "source_probs", keep_float32=True, check_finite=False)
    sums, minimum, row_argmax = _scan_rows(P, argmax)
    # NaN and inf propagate into the row sums: finite sums mean finite entries, unless
    # finite float32 entries overflow in the sum (then the sums are taken in float64).
    if not np.isfinite(sums).all():
        _require_finite_entries(P, "source_probs")
        sums = P.sum(axis=1, dtype=np.float64)
    y, n_classes = _map_labels(labels, P.shape[0], "source_probs")
    if n_classes < min_classes:
        raise ValueError(
            f"need at least {min_classes} classes, got {n_classes} "
            f"({'a single class' if n_classes == 1 else 'too few classes'})"
        )
    if minimum < 0:
        raise ValueError(
            "source_probs must be softmax probabilities, found negative entries "
            "(were logits passed instead of probabilities?)"
        )
    if not np.max(np.abs(sums - 1.0)) <= atol:
        raise ValueError(
            "rows of source_probs must sum to 1 (softmax probabilities); got row sums in "
            f"[{sums.min():.6g}, {sums.max():.6g}]"
        )
    return (P, y, n_classes, row_argmax) if argmax else (P, y, n_classes)


# Rows are scanned in blocks of about this many entries (1 MiB of float64, in cache).
_SCAN_ENTRIES = 1 << 17


def _scan_rows(P: np.ndarray, argmax: bool):
    """Row sums (in P's dtype), the smallest entry, and the row argmaxes if asked."""
    n, width = P.shape
    step = max(1, _SCAN_ENTRIES // width)
    sums = np.empty(n, dtype=P.dtype)
    ones = np.ones(width, dtype=P.dtype)
    row_argmax = np.empty(n, dtype=np.intp) if argmax else None
    minimum = np.inf
    with np.errstate(over="ignore", invalid="ignore"):  # told apart by the caller
        for start in range(0, n, step):
            block = P[start:start + step]
            # A product with ones (BLAS) sums rows faster than np.sum along them; NaN and
            # inf propagate all the same.
            np.matmul(block, ones, out=sums[start:start + step])
            minimum = min(minimum, block.min())
            if argmax:
                np.argmax(block, axis=1, out=row_argmax[start:start + step])
    return sums, minimum, row_argmax


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


def require_finite(value: float, metric: str) -> float:
    """Return ``float(value)``, or raise ValueError instead of silently returning NaN/inf."""
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{metric} is not finite on these inputs (got {value}); "
                         "the features are numerically degenerate")
    return value
