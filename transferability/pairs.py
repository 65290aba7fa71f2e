"""One ordered pair of an evaluation's checkpoints, read back for the pages.

The evaluation stores its complementarity report (:mod:`transferability.complementarity`):
flips, oracle accuracy and the class-wise breakdown of every ordered pair, by checkpoint
name. This module reads a pair out of it in both directions, lists every pair for the
evaluation page, and goes back to the per-sample correctness in the feature cache to show
the images one checkpoint gets right and the other wrong (docs/science.md, section 4).

The per-sample data lives in the feature cache, which may have been cleared since the
evaluation finished: :func:`sample_correctness` then returns None and says why.

No torch here: the web process reads the cache through :mod:`workers.caches` only.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from workers import caches

from .archives import read_manifest
from .models import Evaluation, Status
from .probes import source_head_correctness

__all__ = ["PROBE_CORRECT", "LOGITS", "find_pair", "pair_rows", "direction_summary",
           "SampleData", "sample_correctness", "flip_examples"]

# The feature cache's array names (workers.jobs.PROBE_CORRECT, workers.extraction.LOGITS);
# repeated here because importing the workers' modules would load torch.
PROBE_CORRECT = "probe_correct"
LOGITS = "logits"
PRE_LOGITS = "pre_logits"


def find_pair(report: dict | None, name_a: str, name_b: str) -> dict | None:
    """The report's entry for A right / B wrong, or None."""
    if not report:
        return None
    return next((p for p in report.get("pairs", []) if p["a"] == name_a and p["b"] == name_b),
                None)


def _concentration(breakdown: dict) -> float | None:
    """Entropy of the flips over classes / log C: 1 = spread evenly, 0 = one class."""
    if not breakdown.get("max_entropy") or not breakdown.get("total"):
        return None
    return breakdown["entropy"] / breakdown["max_entropy"]


def pair_rows(report: dict | None, ids_by_name: dict[str, int]) -> list[dict]:
    """Every ordered pair of the report, most positive flips first, with the checkpoint ids
    that link to its page and a short summary of where its flips fall."""
    if not report:
        return []
    rows = []
    for pair in sorted(report["pairs"], key=lambda p: (-p["positive_flips"], p["a"], p["b"])):
        breakdown = pair["breakdown"]
        # The three largest only: a full sort per pair adds up with M(M-1) pairs.
        by_count = heapq.nsmallest(3, zip(breakdown["classes"], breakdown["counts"]),
                                   key=lambda c: (-c[1], str(c[0])))
        rows.append({
            "a": pair["a"], "b": pair["b"],
            "a_id": ids_by_name.get(pair["a"]), "b_id": ids_by_name.get(pair["b"]),
            "positive_flips": pair["positive_flips"],
            "negative_flips": pair["negative_flips"],
            "oracle": pair["oracle"],
            "top_classes": [(c, n) for c, n in by_count if n],
            "concentration": _concentration(breakdown),
            "top_half": breakdown["top_p"].get("50"),
        })
    return rows


def direction_summary(pair: dict, n_samples: int, top: int = 5) -> dict:
    """What the page says about one direction (A right, B wrong) of a pair."""
    breakdown = pair["breakdown"]
    shares = dict(zip(breakdown["classes"], breakdown["shares"]))
    counts = dict(zip(breakdown["classes"], breakdown["counts"]))
    ranked = sorted(counts, key=lambda c: (-counts[c], str(c)))
    return {
        "a": pair["a"], "b": pair["b"],
        "percent": pair["positive_flips"],
        "total": breakdown["total"],
        "n_samples": n_samples,
        "entropy": breakdown["entropy"],
        "max_entropy": breakdown["max_entropy"],
        "concentration": _concentration(breakdown),
        "top_p": [(int(p), n) for p, n in sorted(breakdown["top_p"].items(),
                                                key=lambda item: int(item[0]))],
        "top_classes": [(c, counts[c], 100.0 * shares[c]) for c in ranked[:top] if counts[c]],
        "classes_with_flips": sum(1 for c in counts.values() if c),
        "n_classes": len(counts),
    }


@dataclass
class SampleData:
    """Per-sample correctness of two checkpoints and the labels, in dataset order."""

    correct_a: np.ndarray | None = None
    correct_b: np.ndarray | None = None
    labels: np.ndarray | None = None  # label indices into class_names
    class_names: list[str] = field(default_factory=list)
    missing: str = ""  # why there is no per-sample data ("" when there is)
    mismatch: str = ""  # the data disagrees with the stored report

    @property
    def available(self) -> bool:
        return self.correct_a is not None and self.correct_b is not None


def _correctness(evaluation: Evaluation, result, class_names, labels) -> tuple:
    """(N booleans, "") or (None, why) for one checkpoint's result."""
    name = result.checkpoint.name
    if result.status != Status.DONE or not result.feature_key:
        return None, f"{name} did not finish, so it has no per-sample results"
    store, key = caches.features, result.feature_key
    if evaluation.correctness_source == Evaluation.CorrectnessSource.SOURCE:
        if not store.has(key, LOGITS):
            return None, f"the source-head outputs of {name} are no longer in the feature cache"
        source_classes = result.checkpoint.source_classes or []
        index = {i: source_classes.index(c) for i, c in enumerate(class_names)
                 if c in source_classes}
        try:
            correct = source_head_correctness(store.load(key, LOGITS), labels, index)
        except ValueError as exc:
            return None, f"the source head of {name} cannot judge these labels: {exc}"
    else:
        if not store.has(key, PROBE_CORRECT):
            return None, (f"the per-sample probe results of {name} are no longer in the "
                          f"feature cache")
        correct = store.load(key, PROBE_CORRECT)
    correct = np.asarray(correct).astype(bool).ravel()
    if correct.shape[0] != labels.shape[0]:
        return None, (f"the cached results of {name} cover {correct.shape[0]} images, the "
                      f"dataset has {labels.shape[0]}")
    return correct, ""


def every_correctness(evaluation: Evaluation) -> tuple[dict[str, np.ndarray], str]:
    """Per checkpoint name, the per-sample correctness of every finished checkpoint of the
    evaluation; and why some are missing ("" when none is)."""
    try:
        class_names, files = read_manifest(evaluation.dataset.root)
    except (OSError, ValueError, KeyError):
        return {}, "the dataset's images are no longer in the dataset store"
    labels = np.array([label for _, label in files], dtype=np.int64)
    correct, missing = {}, []
    for result in evaluation.results.select_related("checkpoint").filter(status=Status.DONE):
        right, why = _correctness(evaluation, result, class_names, labels)
        if right is None:
            missing.append(why)
        else:
            correct[result.checkpoint.name] = right
    return correct, "; ".join(missing)


def sample_correctness(evaluation: Evaluation, result_a, result_b,
                       pair: dict | None = None) -> SampleData:
    """The per-sample correctness behind a pair, from the feature cache.

    When ``pair`` (the stored report's entry) is given, the flips recounted from the cache
    are checked against it, so a page never shows examples that contradict its numbers
    without saying so.
    """
    try:
        class_names, files = read_manifest(evaluation.dataset.root)
    except (OSError, ValueError, KeyError):
        return SampleData(missing="the dataset's images are no longer in the dataset store")
    labels = np.array([label for _, label in files], dtype=np.int64)
    data = SampleData(labels=labels, class_names=list(class_names))
    if labels.size == 0:
        data.missing = "the dataset has no images"
        return data
    correct_a, why_a = _correctness(evaluation, result_a, class_names, labels)
    correct_b, why_b = _correctness(evaluation, result_b, class_names, labels)
    if correct_a is None or correct_b is None:
        data.missing = "; ".join(why for why in (why_a, why_b) if why)
        return data
    data.correct_a, data.correct_b = correct_a, correct_b
    if pair is not None:
        flips = int(np.sum(correct_a & ~correct_b))
        expected = pair["breakdown"]["total"]
        if flips != expected:
            data.mismatch = (f"the feature cache now gives {flips} images where "
                             f"{pair['a']} is right and {pair['b']} wrong; this evaluation "
                             f"recorded {expected}. The examples below come from the cache.")
    return data


def flip_examples(right: np.ndarray, wrong: np.ndarray, labels: np.ndarray,
                  class_names: list[str], per_class: int = 4,
                  max_classes: int = 12) -> list[dict]:
    """Images the first checkpoint gets right and the second wrong, a few per class.

    Classes with the most such images first (then by name); within a class, images spread
    evenly over the class's flips in dataset order. Each entry: {"class", "count",
    "indices"}.
    """
    flips = np.flatnonzero(right & ~wrong)
    if flips.size == 0:
        return []
    by_class: dict[int, np.ndarray] = {}
    flip_labels = labels[flips]
    for label in np.unique(flip_labels):
        by_class[int(label)] = flips[flip_labels == label]
    order = sorted(by_class, key=lambda c: (-by_class[c].size, class_names[c]))
    examples = []
    for label in order[:max_classes]:
        indices = by_class[label]
        if indices.size > per_class:
            picks = np.linspace(0, indices.size - 1, per_class).round().astype(int)
            indices = indices[picks]
        examples.append({"class": class_names[label], "count": int(by_class[label].size),
                         "indices": [int(i) for i in indices]})
    return examples
