"""True transfer accuracy: what the transferability metrics try to predict.

docs/science.md, section 6. A checkpoint is transferred to the target task on a stratified
train split and its top-1 accuracy measured on the held-out rest:

- ``"finetune"`` (default): full fine-tuning, every weight trained, a new head for the
  target classes, AdamW with a cosine schedule, over a small fixed grid of learning rates;
  the accuracy reported is the best of the grid on the held-out split (as in the
  transferability benchmarks, e.g. You et al., LogME, ICML 2021), and every run of the grid
  is kept;
- ``"probe"``: the cheap variant, a logistic-regression probe on the frozen pre-logits
  features (:func:`transferability.probes.make_probe`) fitted on the same train split.

Both use the split of :func:`truth_split`, so the two modes and all checkpoints are judged
on the same held-out images. Plain functions over arrays and modules; no Django.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["FinetuneRecipe", "truth_split", "finetune_accuracy", "probe_accuracy_on_split",
           "standard_error"]


@dataclass(frozen=True)
class FinetuneRecipe:
    learning_rates: tuple[float, ...] = (1e-3, 1e-4)
    epochs: int = 5
    batch_size: int = 64
    weight_decay: float = 0.05


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


def probe_accuracy_on_split(features, labels, train, test, C: float = 1.0) -> dict:
    """Held-out accuracy (%) of the linear probe fitted on ``train``."""
    from .probes import make_probe

    features = np.asarray(features, dtype=np.float64)
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or infinite values")
    labels = np.asarray(labels)
    probe = make_probe(C=C).fit(features[train], labels[train])
    accuracy = 100.0 * float(np.mean(probe.predict(features[test]) == labels[test]))
    return {"accuracy": accuracy, "train": int(len(train)), "test": int(len(test)), "C": C}


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
) -> dict:
    """Fine-tune a copy of ``model`` (a timm model) per learning rate; held-out accuracy (%).

    ``pixels``: N x 3 x H x W uint8 images (a NumPy array or memory map, already resized and
    cropped for the model), normalised here with ``mean`` and ``std`` (0-1 scale, as in
    timm's data config). ``labels``: N class indices 0..C-1. ``progress(done, total)`` is
    called after every batch (heartbeats), counted in optimisation steps over the grid.
    """
    import torch
    import torch.nn.functional as F

    labels = np.asarray(labels, dtype=np.int64)
    n_classes = int(labels.max()) + 1
    device = torch.device(device)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1) * 255
    y_all = torch.as_tensor(labels)

    def inputs(index: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(pixels[index]))
        return (batch.to(device).float() - mean_t) / std_t

    steps_per_epoch = math.ceil(len(train) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs * len(recipe.learning_rates)
    done = 0
    grid = []
    for learning_rate in recipe.learning_rates:
        torch.manual_seed(seed)
        generator = np.random.default_rng(seed)
        student = copy.deepcopy(model)
        student.reset_classifier(n_classes)
        student = student.to(device).train()
        optimiser = torch.optim.AdamW(student.parameters(), lr=learning_rate,
                                      weight_decay=recipe.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimiser, T_max=max(1, steps_per_epoch * recipe.epochs))
        losses, diverged = [], False
        for _ in range(recipe.epochs):
            for index in _batches(train[generator.permutation(len(train))], recipe.batch_size):
                loss = F.cross_entropy(student(inputs(index)), y_all[index].to(device))
                if not torch.isfinite(loss):
                    diverged = True  # this learning rate is too high: judged as it stands
                    break
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                losses.append(float(loss.detach()))
                done += 1
                if progress:
                    progress(done, total)
            if diverged:
                break
        student.eval()
        correct = 0
        with torch.inference_mode():
            for index in _batches(test, 256):
                predicted = student(inputs(index)).argmax(dim=1).cpu()
                correct += int((predicted == y_all[index]).sum())
        grid.append({"learning_rate": learning_rate,
                     "accuracy": 100.0 * correct / len(test),
                     "final_loss": losses[-1] if losses else None,
                     "diverged": diverged})
        del student, optimiser
    best = max(grid, key=lambda run: run["accuracy"])
    return {"accuracy": best["accuracy"], "learning_rate": best["learning_rate"], "grid": grid,
            "train": int(len(train)), "test": int(len(test)), "recipe": asdict(recipe)}
