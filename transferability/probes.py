"""Per-sample correctness of a checkpoint on a target dataset.

The complementary-knowledge analysis of Fantastic Gains (Roth et al., "Fantastic Gains and
Where to Find Them: On the Existence and Prospect of General Knowledge Transfer between Any
Pretrained Model", ICLR 2024, arXiv 2310.17653) compares which samples each model gets
right. The paper uses each model's own ImageNet head; this app supports both variants
(docs/science.md, section 4):

- target labels (default): a logistic-regression linear probe on the checkpoint's frozen
  features, evaluated out of fold (stratified k-fold), so that every sample is predicted
  by a probe that never saw it (:func:`probe_correctness`);
- source labels: when the target labels are the checkpoint's own classes, the argmax of
  the checkpoint's head (:func:`source_head_correctness`), exactly as in the paper.

:func:`holdout_probe_accuracy` is the cheap ground truth of section 6: the held-out
accuracy of a linear probe, against which transferability rankings are compared.

The out-of-fold probe has two implementations of one protocol: scikit-learn's on the CPU,
and torch's (:mod:`transferability.device_probe`) on a GPU, where the panel runs;
:func:`probe_implementation` chooses by device.

Plain functions over numpy arrays; no Django.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "make_probe",
    "out_of_fold_predictions",
    "probe_implementation",
    "probe_correctness",
    "source_head_correctness",
    "holdout_probe_accuracy",
]


def make_probe(C: float = 1.0, max_iter: int = 1000) -> Pipeline:
    """The linear probe: standardised features, then multinomial logistic regression.

    Standardising makes one regularisation strength ``C`` reasonable across checkpoints
    whose raw feature scales differ by orders of magnitude.
    """
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))


def _check_features_labels(features, labels) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (N x D), got shape {features.shape}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (N,), got shape {labels.shape}")
    if features.shape[0] != labels.shape[0]:
        raise ValueError(
            f"features have {features.shape[0]} rows but there are {labels.shape[0]} labels"
        )
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or infinite values")
    return features, labels


def _check_classes(labels: np.ndarray) -> np.ndarray:
    """Return the per-class counts; refuse what a stratified split cannot handle."""
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        raise ValueError(
            f"a probe needs at least 2 classes, got {classes.size} "
            f"({classes.tolist()!r})"
        )
    too_small = classes[counts < 2]
    if too_small.size:
        raise ValueError(
            "every class needs at least 2 samples for a stratified split; "
            f"classes with fewer: {too_small.tolist()!r}"
        )
    return counts


def out_of_fold_predictions(
    features,
    labels,
    folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
    max_iter: int = 1000,
    device=None,
) -> np.ndarray:
    """Out-of-fold predicted labels of a linear probe on ``features``.

    Stratified k-fold (shuffled with ``seed``); the number of folds is reduced to the
    smallest class count so that every class appears in every test fold and every
    training fold. Each sample is predicted by the probe trained on the other folds.

    The probe is the costliest step of an evaluation's scoring and both the
    ``probe_accuracy`` baseline and complementarity need it on the same features, so the
    last few results are remembered, keyed by the arrays' contents and the parameters.
    The device is not part of the key: both implementations run the same optimiser on the
    same objective, so a result fitted on the GPU answers a later call on the CPU.

    Args:
        features: N x D array of a checkpoint's features.
        labels: N target labels (any sortable values: ints, strings).
        folds: requested number of folds (at least 2).
        seed: shuffling seed of the split.
        C, max_iter: parameters of the logistic regression.
        device: where the panel runs (None for NumPy, or a torch device); see
            :func:`probe_implementation`.

    Returns:
        N predicted labels, in the original label values and dtype.

    Raises:
        ValueError: on bad shapes, non-finite features, fewer than 2 classes, a class with
            fewer than 2 samples, or ``folds < 2``.
    """
    features, labels = _check_features_labels(features, labels)
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    counts = _check_classes(labels)
    classes, y = np.unique(labels, return_inverse=True)
    key = _content_key(features, y, folds, seed, C, max_iter)
    if key not in _REMEMBERED:
        _REMEMBERED[key] = _fit_predict(features, y, int(min(folds, counts.min())), seed, C,
                                        max_iter, device)
        while len(_REMEMBERED) > _REMEMBER:
            _REMEMBERED.popitem(last=False)
    _REMEMBERED.move_to_end(key)
    return classes[_REMEMBERED[key]]


_REMEMBER = 4
_REMEMBERED: OrderedDict[str, np.ndarray] = OrderedDict()


def _content_key(features: np.ndarray, y: np.ndarray, *params) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((features.dtype.str, features.shape, params)).encode())
    digest.update(np.ascontiguousarray(features).data)
    digest.update(y.astype(np.int64).data)
    return digest.hexdigest()


# Device types on which the torch probe runs. On the CPU scikit-learn's is faster: its
# loss works in the features' float32, the torch probe in float64 (N = 5,000, D = 512,
# C = 50 on two cores: 9.6 s against 13.6 s).
TORCH_PROBE_DEVICE_TYPES = frozenset({"cuda"})


def probe_implementation(device=None):
    """The out-of-fold probe for the panel's ``device``: torch's on a CUDA device,
    scikit-learn's otherwise (None, ``"numpy"``, ``"cpu"``).

    Both take ``(features, y, n_splits, seed, C, max_iter, device)`` and return class
    indices; they agree to the optimiser's rounding (tests/transferability/
    test_device_probe.py).
    """
    if device is not None and str(device).split(":")[0] in TORCH_PROBE_DEVICE_TYPES:
        from .device_probe import torch_out_of_fold_predictions

        return torch_out_of_fold_predictions
    return _sklearn_out_of_fold_predictions


def _fit_predict(features, y, n_splits: int, seed: int, C: float, max_iter: int,
                 device=None) -> np.ndarray:
    top = float(np.max(np.abs(features), initial=0.0))
    if top > 0:  # exact rescaling by a power of two: no overflow at extreme feature scales
        features = features / features.dtype.type(2.0 ** np.floor(np.log2(top)))
    return probe_implementation(device)(features, y, n_splits, seed, C, max_iter, device)


# L-BFGS takes hundreds of small products (N x D by D x C) per fit; BLAS threads cost more
# than they give below about this many multiply-adds per product. Two threads against one
# on two cores (bench: tests' sizes): N = 256, D = 1,280, C = 8: 0.57 s against 0.09 s;
# N = 2,000, D = 1,024, C = 20: 1.16 s against 0.22 s; N = 5,000, D = 1,024, C = 50: 1.97 s
# against 0.86 s.
SINGLE_THREAD_PROBE_WORK = 2**30


def probe_blas_threads(n: int, d: int, n_classes: int) -> int | None:
    """BLAS threads for one scikit-learn probe fit: 1 for small ones, None (all) above."""
    return 1 if n * d * max(n_classes, 2) < SINGLE_THREAD_PROBE_WORK else None


def _sklearn_out_of_fold_predictions(features, y, n_splits: int, seed: int, C: float,
                                     max_iter: int, device=None) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    predictions = np.empty_like(y)
    threads = probe_blas_threads(*features.shape, int(np.max(y, initial=1)) + 1)
    with threadpool_limits(limits=threads, user_api="blas"):
        for train, test in splitter.split(features, y):
            probe = make_probe(C=C, max_iter=max_iter).fit(features[train], y[train])
            predictions[test] = probe.predict(features[test])
    return predictions


def probe_correctness(features, labels, folds: int = 5, seed: int = 0, **probe_kwargs) -> np.ndarray:
    """Boolean N vector: is the out-of-fold probe prediction of each sample right?

    This is the "target labels" correctness of docs/science.md section 4; keyword
    arguments go to :func:`out_of_fold_predictions`.
    """
    labels = np.asarray(labels)
    predictions = out_of_fold_predictions(features, labels, folds=folds, seed=seed, **probe_kwargs)
    return predictions == labels


def source_head_correctness(
    source_logits, labels, label_to_source_index: Mapping
) -> np.ndarray:
    """Boolean N vector: does the checkpoint's own head predict each sample's class?

    The variant used in Fantastic Gains (Roth et al., ICLR 2024): correctness of the
    pretrained classifier itself, for target labels that are source classes (e.g. an
    ImageNet subset). A sample is correct when the argmax over all source classes equals
    the source index of its label (top-1 over the full source head, not restricted to the
    target's classes).

    Args:
        source_logits: N x S logits (or probabilities) of the source head.
        labels: N target labels.
        label_to_source_index: maps every target label value to its index in 0..S-1.

    Raises:
        ValueError: on bad shapes, labels without a source index (named in the message),
            or indices outside 0..S-1.
    """
    source_logits = np.asarray(source_logits)
    labels = np.asarray(labels)
    if source_logits.ndim != 2:
        raise ValueError(f"source_logits must be 2-D (N x S), got shape {source_logits.shape}")
    if labels.ndim != 1 or labels.shape[0] != source_logits.shape[0]:
        raise ValueError(
            f"labels must be 1-D with {source_logits.shape[0]} entries, got shape {labels.shape}"
        )
    classes, inverse = np.unique(labels, return_inverse=True)
    missing = [c.item() if isinstance(c, np.generic) else c for c in classes
               if _lookup(label_to_source_index, c) is None]
    if missing:
        raise ValueError(f"labels without a source index: {missing!r}")
    n_source = source_logits.shape[1]
    class_index = np.array([int(_lookup(label_to_source_index, c)) for c in classes])
    bad = classes[(class_index < 0) | (class_index >= n_source)]
    if bad.size:
        raise ValueError(
            f"source indices outside 0..{n_source - 1} for labels {bad.tolist()!r}"
        )
    return source_logits.argmax(axis=1) == class_index[inverse]


def _lookup(mapping: Mapping, label):
    """Find ``label`` in ``mapping`` as a numpy scalar or as the plain Python value."""
    if label in mapping:
        return mapping[label]
    if isinstance(label, np.generic):
        return mapping.get(label.item())
    return None


def holdout_probe_accuracy(
    features,
    labels,
    test_size: float = 0.3,
    seed: int = 0,
    C: float = 1.0,
    max_iter: int = 1000,
) -> float:
    """Held-out accuracy (fraction in [0, 1]) of a linear probe: the cheap ground truth.

    docs/science.md section 6: ground truth for a ranking is the accuracy a checkpoint
    reaches after transfer on a held-out split; a linear probe on frozen features is the
    cheap proxy of fine-tuning. The split is stratified and seeded.

    Raises:
        ValueError: as :func:`out_of_fold_predictions`, or when the test split cannot hold
            one sample of every class.
    """
    features, labels = _check_features_labels(features, labels)
    _check_classes(labels)
    train_x, test_x, train_y, test_y = train_test_split(
        features, labels, test_size=test_size, random_state=seed, stratify=labels
    )
    probe = make_probe(C=C, max_iter=max_iter).fit(train_x, train_y)
    return float(np.mean(probe.predict(test_x) == test_y))
