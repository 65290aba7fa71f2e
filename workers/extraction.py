"""Batched feature extraction that keeps the device busy.

Each image is decoded once per evaluation; it is resized and cropped for every distinct
preprocessing (size, crop, interpolation) the evaluation needs and kept as a uint8 array
in the image cache; normalisation with the checkpoint's mean/std happens on the device. Inference runs under
``torch.inference_mode()``, channels-last, with mixed precision on CUDA, and the batch
size halves on out-of-memory instead of failing.
"""

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms

from transferability.decoding import upright_rgb

from . import caches
from .device import check_simulated_memory, simulated_memory_limit

log = logging.getLogger(__name__)

PRE_LOGITS = "pre_logits"
LOGITS = "logits"

ProgressCallback = Callable[[int, int], None]


def pixel_key(data_config: dict) -> dict:
    """What decides the uint8 pixels: not mean/std, which are applied on the device."""
    return {
        "input_size": list(data_config["input_size"]),
        "interpolation": data_config["interpolation"],
        "crop_pct": round(float(data_config["crop_pct"]), 6),
        "crop_mode": data_config["crop_mode"],
    }


def pixel_transform(data_config: dict) -> transforms.Compose:
    """timm's evaluation transform up to the crop, ending in a uint8 CHW tensor."""
    full = create_transform(**data_config, is_training=False)
    steps = [t for t in full.transforms
             if not isinstance(t, transforms.Normalize)
             and type(t).__name__ not in {"ToTensor", "MaybeToTensor"}]
    return transforms.Compose(steps + [transforms.PILToTensor()])


class ImageFiles(torch.utils.data.Dataset):
    """Each image decoded once, then put through every transform asked for."""

    def __init__(self, root: Path, paths: Sequence[str], transforms_: Sequence):
        self.root, self.paths, self.transforms = Path(root), list(paths), list(transforms_)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        with Image.open(self.root / self.paths[i]) as im:
            rgb = upright_rgb(im)  # as the thumbnails show it: EXIF-rotated, 16-bit scaled
        return tuple(transform(rgb) for transform in self.transforms)


class TimedImageFiles(ImageFiles):
    """ImageFiles whose items end with the seconds that image took to decode and resize
    (measured where it happens: in a loader process when there are any)."""

    def __getitem__(self, i: int) -> tuple:
        started = time.perf_counter()
        pixels = super().__getitem__(i)
        return (*pixels, time.perf_counter() - started)


def loader_workers() -> int:
    if multiprocessing.current_process().daemon:
        return 0  # daemonic (prefork) workers may not have children
    configured = os.environ.get("ZOORANK_LOADER_WORKERS")
    if configured:
        return int(configured)
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def pixel_cache_key(dataset_hash: str, data_config: dict) -> str:
    return caches.content_key(dataset=dataset_hash, pixels=pixel_key(data_config))


def pixel_batches(dataset_root: Path, dataset_hash: str, paths: Sequence[str],
                  data_config: dict, batch_size: int,
                  also: Sequence[dict] = ()) -> Iterator[torch.Tensor]:
    """uint8 batches N x 3 x H x W, from the image cache, filling it on first use.

    When the files must be decoded, the same pass also fills the cache for the other
    preprocessings in ``also`` (the other checkpoints of an evaluation), so each image is
    decoded once.
    """
    key = pixel_cache_key(dataset_hash, data_config)
    n = len(paths)
    if caches.images.has(key, "pixels"):
        cached = caches.images.load(key, "pixels", mmap=True)
        for start in range(0, n, batch_size):
            yield torch.from_numpy(np.array(cached[start:start + batch_size]))  # a writable copy
        return
    configs = {key: data_config}
    for other in also:
        other_key = pixel_cache_key(dataset_hash, other)
        if other_key not in configs and not caches.images.has(other_key, "pixels"):
            configs[other_key] = other
    targets = {k: caches.images.open_for_writing(k, "pixels", (n, 3, *c["input_size"][1:]),
                                                 np.uint8)
               for k, c in configs.items()}
    loader = torch.utils.data.DataLoader(
        TimedImageFiles(dataset_root, paths, [pixel_transform(c) for c in configs.values()]),
        batch_size=batch_size, num_workers=loader_workers(),
        pin_memory=torch.cuda.is_available(), persistent_workers=False,
    )
    decoding = waited = 0.0
    try:
        start = 0
        batches_in = iter(loader)
        while True:
            asked = time.perf_counter()
            batches = next(batches_in, None)
            waited += time.perf_counter() - asked
            if batches is None:
                break
            *pixel_parts, seconds = batches
            decoding += float(seconds.sum())
            for (array, _), batch in zip(targets.values(), pixel_parts):
                array[start:start + len(batch)] = batch.numpy()
            start += len(batches[0])
            yield batches[0]
        for k, (array, tmp) in targets.items():
            caches.images.commit(array, tmp, k, "pixels")
        # Decoding overlaps the forward passes; "waited" is the part that did not.
        log.info("pixels %s: %d images decoded and resized for %d preprocessings in %.3f s, "
                 "%.3f s waited for", key, n, len(configs), decoding, waited)
    finally:
        for _, tmp in targets.values():
            caches.images.discard(tmp)


def cached_pixels(dataset, paths: Sequence[str], data_config: dict) -> np.ndarray:
    """A stored dataset's uint8 pixels (N x 3 x H x W) for one preprocessing, memory-mapped
    from the image cache, which is filled on first use (each image decoded once)."""
    key = pixel_cache_key(dataset.content_hash, data_config)
    if not caches.images.has(key, "pixels"):
        for _ in pixel_batches(dataset.root, dataset.content_hash, paths, data_config, 256):
            pass
    return caches.images.load(key, "pixels", mmap=True)


@dataclass
class Extracted:
    """Per-layer arrays for one checkpoint on one dataset, float32, in sample order."""

    arrays: dict[str, np.ndarray]
    device: str
    seconds: float
    stage_names: list[str] = field(default_factory=list)


def stage_names(model: torch.nn.Module) -> list[str]:
    """The modules timm names as the model's stages, in network order."""
    try:
        return [str(d["module"]) for d in model.feature_info]
    except (AttributeError, TypeError, KeyError):
        return []


def precision(device: torch.device) -> str:
    """How features are computed on ``device``; part of the feature cache key."""
    return "fp16-autocast" if device.type == "cuda" else "fp32"


def forward_layers(model: torch.nn.Module, x: torch.Tensor, want_logits: bool,
                   stages: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Pre-logits (and logits, and each stage's pooled output under the names in ``stages``,
    or stage0, stage1, ... when they do not match the model's intermediates)."""
    out = {}
    if stages is not None:
        final, intermediates = model.forward_intermediates(x)
        if len(stages) != len(intermediates):
            stages = [f"stage{i}" for i in range(len(intermediates))]
        for name, t in zip(stages, intermediates):
            out[name] = t.float().mean(dim=(2, 3)) if t.ndim == 4 else t.float().mean(dim=1)
    else:
        final = model.forward_features(x)
    out[PRE_LOGITS] = model.forward_head(final, pre_logits=True)
    if want_logits:
        out[LOGITS] = model.forward_head(final)
    return out


def extract(model: torch.nn.Module, device: torch.device, batches: Iterator[torch.Tensor],
            total: int, data_config: dict, want_logits: bool, want_stages: bool = False,
            batch_size: int = 64, progress: ProgressCallback | None = None) -> Extracted:
    """Run ``model`` over uint8 ``batches`` and gather float32 features per layer."""
    start_time = time.perf_counter()
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick kernels
    # Channels-last suits convolutions on CUDA and on oneDNN CPUs alike.
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    mean = torch.tensor(data_config["mean"], device=device).view(1, -1, 1, 1) * 255
    std = torch.tensor(data_config["std"], device=device).view(1, -1, 1, 1) * 255
    stages = stage_names(model) if want_stages else None
    chunks: dict[str, list[np.ndarray]] = {}
    done = 0
    micro = batch_size
    memory_limit = simulated_memory_limit()
    with torch.inference_mode():
        for batch in batches:
            batch = batch.to(device, non_blocking=True)
            i = 0
            while i < len(batch):
                part = batch[i:i + micro]
                try:
                    x = ((part.float() - mean) / std).contiguous(
                        memory_format=torch.channels_last)
                    check_simulated_memory(x, memory_limit)
                    with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
                        layers = forward_layers(model, x, want_logits, stages)
                    if cuda and not all(torch.isfinite(t).all() for t in layers.values()):
                        # fp16 overflowed (values past 65504): this batch again in fp32.
                        layers = forward_layers(model, x, want_logits, stages)
                except torch.OutOfMemoryError as exc:
                    if micro == 1:
                        raise RuntimeError(f"out of device memory even one image at a time "
                                           f"({str(exc).splitlines()[0][:300]})") from exc
                    micro = max(1, micro // 2)
                    torch.cuda.empty_cache()
                    log.warning("out of memory; batch size now %d", micro)
                    continue
                for name, t in layers.items():
                    chunks.setdefault(name, []).append(t.float().cpu().numpy())
                i += len(part)
            done += len(batch)
            if progress:
                progress(done, total)
    arrays = {name: np.concatenate(parts).astype(np.float32, copy=False)
              for name, parts in chunks.items()}
    # forward_layers puts the stages first, in network order.
    found = [name for name in arrays if name not in (PRE_LOGITS, LOGITS)]
    return Extracted(arrays=arrays, device=str(device), seconds=time.perf_counter() - start_time,
                     stage_names=found)
