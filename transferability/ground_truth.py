"""True transfer accuracy: what the transferability metrics try to predict.

docs/science.md, section 6. A checkpoint is transferred to the target task on a stratified
train split (70 %) and its top-1 accuracy measured on the held-out rest (30 %), which is
never used to choose anything:

- ``"finetune"`` (default): full fine-tuning, every weight trained, a new head for the
  target classes, AdamW with a cosine schedule. The train part is split again, stratified,
  into fit and validation; the learning rate and the epoch are chosen on validation. The
  learning-rate search brackets its optimum (:func:`bracketed_search`): it starts from a
  grid and, while an edge wins, extends by a constant factor in that direction, up to a
  bound; each result says whether its choice still sits at an edge. Every run is kept.
- ``"probe"``: the cheap variant, a logistic-regression probe on the frozen pre-logits
  features (:func:`transferability.probes.make_probe`), its C chosen by cross-validation
  on the train part with the same bracketed search.

Repeats over split seeds (:func:`repeat_summary`) give each checkpoint a mean and a
standard error. Both modes use the split of :func:`truth_split`, so all checkpoints are
judged on the same held-out images for a seed. Plain functions over arrays and modules;
no Django.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["FinetuneRecipe", "truth_split", "bracketed_search", "finetune_accuracy",
           "probe_accuracy_on_split", "standard_error", "repeat_summary"]


@dataclass(frozen=True)
class FinetuneRecipe:
    learning_rates: tuple[float, ...] = (1e-3, 1e-4)
    epochs: int = 5
    batch_size: int = 64
    weight_decay: float = 0.05
    # Of the train part, the share held out to choose the learning rate and the epoch.
    validation_fraction: float = 0.2
    # While an edge of the searched learning rates wins on validation: one more step of
    # this factor beyond it, at most this many.
    extend_factor: float = 10.0
    max_extensions: int = 3


def bracketed_search(score: Callable[[float], float], grid, factor: float,
                     max_extensions: int) -> dict:
    """Search a positive hyperparameter on a log grid that brackets its optimum.

    ``score(value)`` (higher better; validation only) is called for every value of
    ``grid``; while the best is the largest (smallest) value tried, ``value * factor``
    (``/ factor``) is tried too, at most ``max_extensions`` times. Ties go to the value
    tried first. Returns {"best", "tried": [{"value", "score"}] in the order tried,
    "at_edge": whether the best is still the largest or smallest tried, "extensions"}.
    """
    if factor <= 1.0:
        raise ValueError(f"the extension factor must be above 1, got {factor}")
    tried: list[dict] = []

    def best_entry() -> dict:
        return max(tried, key=lambda t: t["score"])  # max keeps the first of equals

    for value in grid:
        tried.append({"value": float(value), "score": float(score(value))})
    extensions = 0
    while True:
        best = best_entry()["value"]
        values = [t["value"] for t in tried]
        if len(values) < 2 or extensions >= max_extensions:
            break
        if best == max(values):
            candidate = best * factor
        elif best == min(values):
            candidate = best / factor
        else:
            break
        tried.append({"value": candidate, "score": float(score(candidate))})
        extensions += 1
    best = best_entry()["value"]
    values = [t["value"] for t in tried]
    return {"best": best, "tried": tried, "extensions": extensions,
            "at_edge": len(values) > 1 and best in (max(values), min(values))}


def truth_split(labels, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices, stratified by class; every class on both sides."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"ground truth needs at least 2 classes, got {classes.size}")
    few = classes[counts < 2]
    if few.size:
        raise ValueError("every class needs at least 2 images, one to train on and one to "
                         f"test on; classes with fewer: {few.tolist()!r}")
    n_test = max(int(math.ceil(test_fraction * labels.size)), classes.size)
    n_test = min(n_test, labels.size - classes.size)
    train, test = train_test_split(np.arange(labels.size), test_size=n_test,
                                   stratify=labels, random_state=seed)
    return np.sort(train), np.sort(test)


def standard_error(accuracy_percent: float, n_test: int) -> float:
    """Binomial standard error of a held-out accuracy, in percentage points."""
    p = accuracy_percent / 100.0
    return 100.0 * math.sqrt(max(p * (1.0 - p), 0.0) / max(n_test, 1))


PROBE_CS = (0.1, 1.0, 10.0)
PROBE_C_FACTOR = 10.0


def probe_accuracy_on_split(features, labels, train, test, C: float | None = None,
                            folds: int = 5, seed: int = 0) -> dict:
    """Held-out accuracy (%) of the linear probe fitted on ``train``.

    C: given, or chosen by stratified cross-validation on ``train`` alone
    (:func:`bracketed_search` from :data:`PROBE_CS`, factor 10, up to 3 steps beyond)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from .probes import make_probe

    features = np.asarray(features, dtype=np.float64)
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or infinite values")
    labels = np.asarray(labels)
    search = None
    if C is None:
        smallest = int(np.bincount(labels[train]).min()) if len(train) else 0
        k = min(folds, smallest)
        if k >= 2:
            splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
            search = bracketed_search(
                lambda c: float(np.mean(cross_val_score(
                    make_probe(C=c), features[train], labels[train], cv=splitter))),
                PROBE_CS, PROBE_C_FACTOR, 3)
            C = search["best"]
        else:
            C = 1.0  # a class too small to cross-validate: the protocol's default
    probe = make_probe(C=C).fit(features[train], labels[train])
    accuracy = 100.0 * float(np.mean(probe.predict(features[test]) == labels[test]))
    out = {"accuracy": accuracy, "train": int(len(train)), "test": int(len(test)), "C": C}
    if search is not None:
        out.update(at_edge=search["at_edge"], chosen={"C": C},
                   runs=[{"C": t["value"], "val_accuracy": 100.0 * t["score"]}
                         for t in search["tried"]])
    return out


def _batches(index: np.ndarray, size: int):
    for start in range(0, len(index), size):
        yield index[start:start + size]


def finetune_accuracy(
    model,
    pixels,
    labels,
    train: np.ndarray,
    test: np.ndarray,
    *,
    mean,
    std,
    recipe: FinetuneRecipe = FinetuneRecipe(),
    seed: int = 0,
    device="cpu",
    progress: Callable[[int, int], None] | None = None,
    precision=None,
) -> dict:
    """Fine-tune copies of ``model`` (a timm model); held-out accuracy (%) of the one chosen
    on validation.

    ``train`` is split again (stratified, ``recipe.validation_fraction``, ``seed``) into fit
    and validation. Each learning rate of the bracketed search trains a copy on fit for
    ``recipe.epochs`` epochs; after every epoch it is scored on validation and on ``test``.
    The learning rate and the epoch are chosen by validation accuracy alone; the test
    accuracy of that choice is the result. ``pixels``: N x 3 x H x W uint8 images (already
    resized and cropped for the model), normalised here with ``mean`` and ``std`` (0-1
    scale, as in timm's data config). ``labels``: N class indices 0..C-1.
    ``progress(done, total)`` is called after every batch (heartbeats), counted in
    optimisation steps over the largest search (the grid and every extension).
    ``precision``: a :class:`~.precision.MixedPrecision`; by default autocast on CUDA,
    float32 elsewhere (the result's ``precision`` says which).

    Returns {"accuracy", "val_accuracy", "chosen": {"learning_rate", "epochs"}, "at_edge",
    "runs": [{"learning_rate", "epochs", "val_accuracy", "test_accuracy", "diverged"}] (one
    per learning rate and epoch), "learning_rate", "train", "fit", "validation", "test",
    "recipe"}.
    """
    import torch
    import torch.nn.functional as F

    from .precision import MixedPrecision

    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1
    device = torch.device(device)
    precision = precision or MixedPrecision(device)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
    y_all = torch.as_tensor(labels)
    train = np.asarray(train)
    fit_part, val_part = truth_split(labels[train], recipe.validation_fraction, seed)
    fit, validation = train[fit_part], train[val_part]

    def inputs(index: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(pixels[index]))
        return (batch.to(device).float() - mean_t) / std_t

    def accuracy(student, index) -> float:
        correct = 0
        with torch.inference_mode(), precision.autocast():
            for part in _batches(index, 256):
                predicted = student(inputs(part)).argmax(dim=1).cpu()
                correct += int((predicted == y_all[part]).sum())
        return 100.0 * correct / max(len(index), 1)

    steps_per_epoch = math.ceil(len(fit) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs * (len(recipe.learning_rates)
                                               + recipe.max_extensions)
    done = [0]
    runs: list[dict] = []

    def train_one(learning_rate: float) -> float:
        torch.manual_seed(seed)
        generator = np.random.default_rng(seed)
        student = copy.deepcopy(model)
        student.reset_classifier(n_classes)
        student = student.to(device)
        optimiser = torch.optim.AdamW(student.parameters(), lr=learning_rate,
                                      weight_decay=recipe.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimiser, T_max=max(1, steps_per_epoch * recipe.epochs))
        diverged = False
        for epoch in range(1, recipe.epochs + 1):
            student.train()
            for index in _batches(fit[generator.permutation(len(fit))], recipe.batch_size):
                with precision.autocast():
                    loss = F.cross_entropy(student(inputs(index)), y_all[index].to(device))
                if not torch.isfinite(loss):
                    diverged = True  # this learning rate is too high: judged as it stands
                    break
                optimiser.zero_grad(set_to_none=True)
                if precision.step(loss, optimiser):  # False: skipped; the schedule waits
                    schedule.step()
                done[0] += 1
                if progress:
                    progress(min(done[0], total), total)
            student.eval()
            runs.append({"learning_rate": learning_rate, "epochs": epoch,
                         "val_accuracy": 0.0 if diverged else accuracy(student, validation),
                         "test_accuracy": 0.0 if diverged else accuracy(student, test),
                         "diverged": diverged})
            if diverged:
                break
        del student, optimiser
        return max(r["val_accuracy"] for r in runs if r["learning_rate"] == learning_rate)

    search = bracketed_search(train_one, recipe.learning_rates, recipe.extend_factor,
                              recipe.max_extensions)
    # The epoch: the best on validation for the chosen learning rate (the earliest of ties).
    chosen = max((r for r in runs if r["learning_rate"] == search["best"]),
                 key=lambda r: (r["val_accuracy"], -r["epochs"]))
    if progress:
        progress(total, total)
    return {"accuracy": chosen["test_accuracy"], "val_accuracy": chosen["val_accuracy"],
            "learning_rate": chosen["learning_rate"],
            "chosen": {"learning_rate": chosen["learning_rate"], "epochs": chosen["epochs"]},
            "at_edge": search["at_edge"], "runs": runs,
            "train": int(len(train)), "fit": int(len(fit)),
            "validation": int(len(validation)), "test": int(len(test)),
            "recipe": asdict(recipe), "precision": precision.name}


def repeat_summary(repeats: list[dict]) -> dict:
    """One checkpoint's truth over split seeds: {"accuracy" (the mean), "mean",
    "standard_error" (across seeds; the binomial one of the single run when there is one),
    "seeds", "runs" (every run, with its seed), "chosen" (the most frequent choice),
    "at_edge" (any seed's choice at an edge), "per_seed": [{seed, accuracy, chosen,
    at_edge}]}. ``repeats``: each a :func:`finetune_accuracy` or
    :func:`probe_accuracy_on_split` result with its "seed"."""
    accuracies = np.array([r["accuracy"] for r in repeats], dtype=np.float64)
    mean = float(accuracies.mean())
    if len(repeats) > 1:
        error = float(accuracies.std(ddof=1) / math.sqrt(len(repeats)))
    else:
        error = standard_error(mean, repeats[0]["test"])
    choices = [tuple(sorted((r.get("chosen") or {}).items())) for r in repeats]
    chosen = dict(max(set(choices), key=choices.count)) if any(choices) else {}
    runs = [{"seed": r["seed"], **run} for r in repeats for run in r.get("runs", [])]
    out = {key: value for key, value in repeats[0].items()
           if key not in ("accuracy", "runs", "chosen", "at_edge", "seed", "val_accuracy")}
    out.update(accuracy=mean, mean=mean, standard_error=error, seeds=len(repeats),
               runs=runs, chosen=chosen, at_edge=any(r.get("at_edge") for r in repeats),
               per_seed=[{"seed": r["seed"], "accuracy": r["accuracy"],
                          "chosen": r.get("chosen"), "at_edge": r.get("at_edge")}
                         for r in repeats])
    return out
