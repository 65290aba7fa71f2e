"""The demo zoo: small timm checkpoints that differ the way real zoos differ.

Architecture family, width and depth, training length, augmentation and source task all
vary (``DEMO_ZOO``). Source tasks are bundled or drawn from the seed (``zoo.source_tasks``);
none of them is a demo target (MNIST digits 5-9, scikit-learn's digits). Everything is
seeded and trained with deterministic kernels on a fixed thread count, so one seed gives
byte-identical weights on one machine. A checkpoint already registered under its name with
the same recipe, and whose weights file still has the recorded sha256, is not trained again.
"""

from __future__ import annotations

import json
import shutil
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch
from django.conf import settings
from tqdm import tqdm

from config.local_cache import local_cache, publish_file, store_is_remote

from .models import Checkpoint
from .pretraining import TRAIN_THREADS, reproducible, save_weights, split_indices, train_classifier
from .source_tasks import SIZE, SOURCE_TASKS, SourceTask
from .timm_catalog import feature_dim_of
from .weights import WeightsError, sha256_of_path

# Bump when the source-task generators or the training loop change what a recipe makes:
# it is part of every recipe, so old checkpoints are then rebuilt.
DATA_VERSION = 1
HELD_OUT = 0.1


@dataclass(frozen=True)
class DemoRecipe:
    name: str
    architecture: str
    family: str
    source: str
    epochs: int
    learning_rate: float = 2e-3
    model_kwargs: dict = field(default_factory=dict)
    augmentation: str = "none"
    weight_decay: float = 0.05
    batch_size: int = 128

    @property
    def task(self) -> SourceTask:
        return SOURCE_TASKS[self.source]

    def training_seed(self, seed: int) -> int:
        """The seed of this checkpoint's initialisation, batch order and augmentation."""
        return int(np.random.SeedSequence([seed, zlib.crc32(self.name.encode())])
                   .generate_state(1)[0])

    def describe(self, seed: int, limit: int | None = None, **measured) -> dict:
        """The recipe as stored on the checkpoint (plain JSON)."""
        recipe = {
            "source_task": self.source,
            "architecture": self.architecture,
            "model_kwargs": self.model_kwargs,
            "epochs": self.epochs,
            "optimizer": "AdamW",
            "schedule": "one-cycle",
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "augmentation": self.augmentation,
            "held_out_fraction": HELD_OUT,
            "seed": seed,
            "threads": TRAIN_THREADS,
            "data_version": DATA_VERSION,
        }
        if limit is not None:
            recipe["sample_limit"] = limit
        recipe.update(measured)
        return json.loads(json.dumps(recipe))


VIT = {"img_size": SIZE}  # timm's test ViTs default to 160 px; 16 px patches: 2 x 2 tokens

# Names: demo-<architecture variant>.<source task>_e<epochs>[_aug|_shift].
DEMO_ZOO: list[DemoRecipe] = [
    # MNIST 0-4: the source closest to the targets.
    DemoRecipe("demo-resnet.mnist04_e6_aug", "test_resnet", "resnet", "mnist04", 6,
               augmentation="affine", batch_size=64),
    DemoRecipe("demo-convnext.mnist04_e1", "test_convnext", "convnext", "mnist04", 1),
    DemoRecipe("demo-convnext2.mnist04_e3_aug", "test_convnext2", "convnext", "mnist04", 3,
               augmentation="affine", batch_size=64),
    DemoRecipe("demo-vit.mnist04_e8_shift", "test_vit", "vision_transformer", "mnist04", 8,
               model_kwargs=VIT, augmentation="shift", learning_rate=1e-3),
    DemoRecipe("demo-efficientnet.mnist04_e4", "test_efficientnet", "efficientnet", "mnist04", 4,
               learning_rate=5e-3, batch_size=64),
    # Letters: strokes like digits, another alphabet.
    DemoRecipe("demo-resnet_deep.glyphs_e5", "test_resnet", "resnet", "glyphs", 5,
               model_kwargs={"layers": [2, 2, 2, 2]}, learning_rate=5e-3, batch_size=64),
    DemoRecipe("demo-byobnet.glyphs_e4", "test_byobnet", "byobnet", "glyphs", 4,
               learning_rate=5e-3, batch_size=64),
    DemoRecipe("demo-convnext3.glyphs_e8", "test_convnext3", "convnext", "glyphs", 8,
               batch_size=64),
    # Shapes and textures: far from handwriting.
    DemoRecipe("demo-resnet.shapes_e8", "test_resnet", "resnet", "shapes", 8,
               learning_rate=5e-3, batch_size=64),
    DemoRecipe("demo-efficientnet.shapes_e6", "test_efficientnet", "efficientnet", "shapes", 6,
               learning_rate=5e-3, batch_size=64),
    DemoRecipe("demo-vit2.shapes_e10", "test_vit2", "vision_transformer", "shapes", 10,
               model_kwargs=VIT, batch_size=64),
    DemoRecipe("demo-resnet.textures_e4", "test_resnet", "resnet", "textures", 4,
               learning_rate=5e-3, batch_size=64),
    DemoRecipe("demo-efficientnet_half.textures_e8", "test_efficientnet", "efficientnet",
               "textures", 8, model_kwargs={"channel_multiplier": 0.5}, learning_rate=5e-3,
               batch_size=64),
    DemoRecipe("demo-vit3_p8.textures_e4", "test_vit3", "vision_transformer", "textures", 4,
               model_kwargs={**VIT, "patch_size": 8}, learning_rate=1e-3, batch_size=64),
]

RECIPES_BY_NAME = {r.name: r for r in DEMO_ZOO}


def recipes_named(names: Iterable[str] | None) -> list[DemoRecipe]:
    """The demo recipes with these names, in zoo order (all of them for None)."""
    if not names:
        return list(DEMO_ZOO)
    unknown = sorted(set(names) - set(RECIPES_BY_NAME))
    if unknown:
        raise KeyError(f"no demo checkpoint named {', '.join(unknown)}")
    return [r for r in DEMO_ZOO if r.name in set(names)]


def default_weights_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / "weights"


# Recorded after training, not part of what is asked for.
MEASURED = ("train_images", "held_out_images", "seconds")


def is_current(checkpoint: Checkpoint | None, recipe: dict) -> bool:
    """Registered with this recipe, and its weights file still holds the recorded bytes."""
    stored_file = (checkpoint is not None and checkpoint.weights_source
                   == Checkpoint.WeightsSource.UPLOAD and bool(checkpoint.weights_file))
    if checkpoint is None or not checkpoint.weights_sha256 or not (checkpoint.weights_path
                                                                   or stored_file):
        return False
    recipe_wanted = {k: v for k, v in recipe.items() if k not in MEASURED}
    recipe_stored = {k: v for k, v in (checkpoint.recipe or {}).items() if k not in MEASURED}
    if recipe_wanted != recipe_stored:
        return False
    if stored_file:  # in the object store: this host's copy of it
        try:
            path = checkpoint.weights_location()
        except WeightsError:
            return False
    else:
        path = Path(checkpoint.weights_path)
    return path.is_file() and sha256_of_path(path) == checkpoint.weights_sha256


SourceData = dict[tuple[str, int, int | None], tuple[torch.Tensor, torch.Tensor]]


def source_data(task: SourceTask, seed: int, limit: int | None,
                cache: SourceData | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    key = (task.name, seed, limit)
    if cache is not None and key in cache:
        return cache[key]
    data = task.tensors(seed, limit)
    if cache is not None:
        cache[key] = data
    return data


def build_checkpoint(recipe: DemoRecipe, seed: int = 0, weights_dir: Path | None = None,
                     limit: int | None = None,
                     cache: SourceData | None = None) -> tuple[Checkpoint, bool]:
    """Train and register one checkpoint unless it is current; return it and whether it
    was trained. ``limit`` caps the source images (tests use it to stay fast)."""
    wanted = recipe.describe(seed, limit)
    existing = Checkpoint.objects.filter(name=recipe.name).first()
    if is_current(existing, wanted):
        return existing, False
    task = recipe.task
    started = time.perf_counter()
    images, labels = source_data(task, seed, limit, cache)
    split_seed = zlib.crc32(f"{task.name}:{seed}".encode())  # every checkpoint of a task
    train_idx, test_idx = split_indices(len(images), torch.Generator().manual_seed(split_seed),
                                        HELD_OUT)
    train_seed = recipe.training_seed(seed)
    with reproducible():
        torch.manual_seed(train_seed)  # the initial weights
        model = timm.create_model(recipe.architecture, pretrained=False,
                                  num_classes=len(task.classes), **recipe.model_kwargs)
        top1 = train_classifier(
            model, images, labels, train_idx, test_idx, epochs=recipe.epochs,
            learning_rate=recipe.learning_rate, mean=task.mean, std=task.std, seed=train_seed,
            augmentation=recipe.augmentation, weight_decay=recipe.weight_decay,
            batch_size=recipe.batch_size)
    if store_is_remote():  # the object store keeps the weights for every host
        object_name = f"weights/{recipe.name}.safetensors"
        folder = local_cache().temporary()
        try:
            sha256 = save_weights(model, folder / f"{recipe.name}.safetensors")
            publish_file(object_name, folder / f"{recipe.name}.safetensors",
                         f"weights/{sha256}/{recipe.name}.safetensors")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        weights = dict(weights_source=Checkpoint.WeightsSource.UPLOAD, weights_path="",
                       weights_file=object_name)
    else:
        path = (weights_dir or default_weights_dir()) / f"{recipe.name}.safetensors"
        sha256 = save_weights(model, path)
        weights = dict(weights_source=Checkpoint.WeightsSource.LOCAL,
                       weights_path=str(path.resolve()), weights_file="")
    seconds = round(time.perf_counter() - started, 1)
    stored = recipe.describe(seed, limit, train_images=len(train_idx),
                             held_out_images=len(test_idx), seconds=seconds)
    checkpoint, _ = Checkpoint.objects.update_or_create(name=recipe.name, defaults=dict(
        architecture=recipe.architecture,
        pretrained_tag=recipe.name.split(".", 1)[1],
        family=recipe.family,
        **weights,
        weights_sha256=sha256,
        model_kwargs=recipe.model_kwargs,
        input_size=[3, SIZE, SIZE],
        interpolation="bilinear",
        crop_pct=1.0,
        crop_mode="center",
        mean=[task.mean] * 3,
        std=[task.std] * 3,
        num_classes=len(task.classes),
        source_classes=list(task.classes),
        feature_dim=feature_dim_of(model),
        param_count=sum(p.numel() for p in model.parameters()),
        source_dataset=task.name,
        source_top1=round(top1, 2),
        recipe=stored,
    ))
    return checkpoint, True


def build_zoo(recipes: Iterable[DemoRecipe] | None = None, seed: int = 0,
              weights_dir: Path | None = None, limit: int | None = None,
              progress=None, write: Callable[[str], None] | None = None) -> list[Checkpoint]:
    """Build every recipe (the whole demo zoo by default); report each on ``write``.

    ``progress`` is the stream for the tqdm bar (None: no bar); with a bar, give a
    ``write`` that goes through ``tqdm.write``.
    """
    recipes = list(DEMO_ZOO if recipes is None else recipes)
    cache: SourceData = {}
    built = []
    bar = tqdm(recipes, desc="Demo zoo", unit="model", file=progress, disable=progress is None)
    for recipe in bar:
        bar.set_postfix_str(recipe.name)
        checkpoint, trained = build_checkpoint(recipe, seed, weights_dir, limit, cache)
        built.append(checkpoint)
        if write is not None:
            if trained:
                line = (f"{checkpoint.name}: {checkpoint.param_count:,} params, "
                        f"d={checkpoint.feature_dim}, {checkpoint.source_dataset} top-1 "
                        f"{checkpoint.source_top1:.1f}%, {checkpoint.recipe['seconds']:.1f} s")
            else:
                line = f"{checkpoint.name}: up to date, skipped"
            write(line)
    return built
