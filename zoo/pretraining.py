"""Short, seeded pretraining of timm classifiers on small in-memory image sets.

The machine may have no model hub. A few seconds of training on bundled or procedural
data (``zoo.source_tasks``) give real checkpoints, with real source heads, whose features
differ in quality; ``zoo.demo_zoo`` says which. Same seed, same thread count, same machine:
the same weights, bit for bit.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from .weights import sha256_of_path

AUGMENTATIONS = ("none", "shift", "affine")
TRAIN_THREADS = 2  # intra-op threads while training; results can depend on it


def augment(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """A batch with random, seeded geometric changes (N x C x H x W in [0, 1]).

    ``shift``: translations of up to 3 pixels; ``affine``: rotations of up to 15 degrees,
    scaling by 0.85-1.15 and translations of up to 3 pixels. Uncovered pixels are black.
    """
    if kind == "none":
        return images
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; one of {AUGMENTATIONS}")
    n, _, h, w = images.shape
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (3 * 2 / w)
    theta = torch.zeros(n, 2, 3)
    if kind == "affine":
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(15)
        scale = 0.85 + 0.3 * torch.rand(n, generator=generator)
        theta[:, 0, 0] = torch.cos(angle) / scale
        theta[:, 0, 1] = -torch.sin(angle) / scale
        theta[:, 1, 0] = torch.sin(angle) / scale
        theta[:, 1, 1] = torch.cos(angle) / scale
    else:
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def split_indices(n: int, generator: torch.Generator,
                  held_out: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation cut into train and held-out indices."""
    order = torch.randperm(n, generator=generator)
    cut = n - max(1, int(round(held_out * n)))
    return order[:cut], order[cut:]


@contextmanager
def reproducible(threads: int = TRAIN_THREADS) -> Iterator[None]:
    """Deterministic kernels and a fixed intra-op thread count; afterwards both, and the
    global random state, are as they were.

    On the CPU the deterministic flag changes nothing measurable today, but the thread
    count does: the same training on one and on two threads gives different weights.
    """
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
            torch.set_num_threads(was_threads)


def train_classifier(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     train_idx: torch.Tensor, test_idx: torch.Tensor, *, epochs: int,
                     learning_rate: float, mean: float, std: float, seed: int,
                     augmentation: str = "none", weight_decay: float = 0.05,
                     batch_size: int = 128) -> float:
    """Train ``model`` in place (AdamW, one-cycle schedule); return held-out top-1 (%).

    Batches are drawn from ``train_idx`` in a seeded order; ``images`` are in [0, 1] and
    normalised with ``mean``/``std`` after augmentation.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # anything in the model that draws from the global generator
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                  weight_decay=weight_decay)
    steps = epochs * math.ceil(len(train_idx) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, learning_rate, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for batch in order.split(batch_size):
            x = augment(images[batch], augmentation, generator)
            loss = F.cross_entropy(model((x - mean) / std), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    with torch.inference_mode():
        predictions = torch.cat([model((images[b] - mean) / std).argmax(1)
                                 for b in test_idx.split(512)])
    return 100.0 * (predictions == labels[test_idx]).float().mean().item()


def save_weights(model: torch.nn.Module, path: Path) -> str:
    """Write the state dict as safetensors (atomically); return the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sha256_of_path(path)
