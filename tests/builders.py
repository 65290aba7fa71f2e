"""Things tests make in code: tiny image archives and tiny checkpoints with saved weights."""

import io
import zipfile
from pathlib import Path

import numpy as np
import timm
import torch
from django.conf import settings
from PIL import Image
from safetensors.torch import save_file

from zoo.models import Checkpoint
from zoo.weights import sha256_of_path


def png_bytes(rng: np.random.Generator, size: int = 12, colour=None) -> bytes:
    pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    if colour is not None:
        pixels = (0.3 * pixels + 0.7 * np.array(colour)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (200, 200, 40), (200, 40, 200)]


def image_folder_zip(path: Path, classes: dict[str, int], seed: int = 0, size: int = 12,
                     prefix: str = "") -> Path:
    """A zip in ImageFolder layout; each class's images lean towards its own colour."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as zf:
        for c, (name, count) in enumerate(classes.items()):
            for i in range(count):
                zf.writestr(f"{prefix}{name}/img_{i:03d}.png",
                            png_bytes(rng, size, COLOURS[c % len(COLOURS)]))
    return path


def saved_checkpoint(name: str, architecture: str = "test_resnet", num_classes: int = 0,
                     input_size: int = 32, seed: int = 0, source_classes=None,
                     **fields) -> Checkpoint:
    """A catalog entry whose weights (random, seeded) are saved under MEDIA_ROOT."""
    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, num_classes=num_classes)
    weights_dir = Path(settings.MEDIA_ROOT) / "weights"
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    checkpoint = Checkpoint.objects.create(
        name=name, architecture=architecture, family=architecture.split("_")[0],
        weights_source=Checkpoint.WeightsSource.LOCAL, weights_path=str(path),
        weights_sha256=sha256_of_path(path),
        input_size=[3, input_size, input_size], interpolation="bilinear", crop_pct=1.0,
        mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], num_classes=num_classes,
        source_classes=source_classes or [], **fields,
    )
    return checkpoint


def colours_dataset(owner, tmp_path: Path, name: str = "colours"):
    """A ready target dataset: 12 images in each of three colour classes."""
    from transferability.datasets import create_target_dataset

    archive = image_folder_zip(tmp_path / f"{name}.zip",
                               {"red": 12, "green": 12, "blue": 12}, seed=5)
    return create_target_dataset(owner, name, archive)


def evaluated(owner, dataset, checkpoints, metrics):
    """An evaluation of ``checkpoints`` on ``dataset``, run in this process to the end."""
    from transferability.models import Status
    from transferability.submission import submit_evaluation
    from workers import jobs

    evaluation = submit_evaluation(owner, dataset, checkpoints, metrics=metrics,
                                   enqueue_work=False)
    jobs.run_inline(evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.status == Status.DONE, evaluation.message
    return evaluation
