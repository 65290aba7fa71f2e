"""Feature-extraction throughput: the whole pipeline against the bare model forward.

For each architecture, at its native resolution, this prints images/s for
- raw forward: the model on ready, normalised tensors already on the device;
- pipeline (cold): files on disk -> decode, resize, crop -> normalise -> features, through
  the worker's own code (``workers.extraction``), with an empty image cache;
- pipeline (warm): the same with the image cache filled (a second checkpoint sharing the
  preprocessing);
and the ratios against raw forward measured in the same run. Random weights: speed does
not depend on them. Not a test.

    .venv/bin/python bench/extract.py [--n 128] [--batch 32] [--arch resnet50 ...]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ZOORANK_VAR_DIR", tempfile.mkdtemp(prefix="zoorank-bench-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from workers import caches  # noqa: E402
from workers.device import choose_device  # noqa: E402
from workers.extraction import extract, forward_layers, pixel_batches  # noqa: E402

DEFAULT_ARCHS = ["resnet50", "vit_small_patch16_224", "convnext_tiny", "efficientnet_b0"]


def make_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    """JPEGs of varied sizes around 400 x 350, like photos after a typical download."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = rng.integers(300, 420), rng.integers(320, 480)
        base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((w, h), Image.BILINEAR)
        name = f"{i % 4}/{i:05d}.jpg"
        (folder / name).parent.mkdir(exist_ok=True)
        image.save(folder / name, quality=90)
        paths.append(name)
    return paths


def data_config(model) -> dict:
    cfg = timm.data.resolve_data_config(model=model)
    return {k: cfg[k] for k in ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_forward(model, device, config, n: int, batch: int) -> float:
    _, h, w = config["input_size"]
    x = torch.randn(batch, 3, h, w, device=device).contiguous(memory_format=torch.channels_last)
    cuda = device.type == "cuda"
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
        forward_layers(model, x, want_logits=False)  # warm-up
        sync(device)
        started = time.perf_counter()
        done = 0
        while done < n:
            forward_layers(model, x, want_logits=False)[
                "pre_logits"].float().cpu()
            done += batch
        sync(device)
    return done / (time.perf_counter() - started)


def pipeline(model, device, config, root: Path, paths, batch: int, dataset_hash: str) -> float:
    started = time.perf_counter()
    out = extract(model, device, pixel_batches(root, dataset_hash, paths, config, batch),
                  total=len(paths), data_config=config, want_logits=False, batch_size=batch)
    sync(device)
    assert out.arrays["pre_logits"].shape[0] == len(paths)
    return len(paths) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="+", default=DEFAULT_ARCHS)
    parser.add_argument("--n", type=int, default=128, help="images per measurement")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    device = choose_device()
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}),"
          f" torch threads {torch.get_num_threads()}, images {args.n}, batch {args.batch}")
    root = Path(tempfile.mkdtemp(prefix="zoorank-bench-images-"))
    paths = make_images(root, args.n)
    header = (f"{'architecture':<24}{'input':>8}{'raw img/s':>11}{'cold img/s':>12}{'ratio':>7}"
              f"{'warm img/s':>12}{'ratio':>7}")
    print(header)
    print("-" * len(header))
    for i, arch in enumerate(args.arch):
        torch.manual_seed(0)
        model = timm.create_model(arch, pretrained=False).eval().to(device)
        model = model.to(memory_format=torch.channels_last)
        config = data_config(model)
        dataset_hash = f"bench-{i}-{arch}"  # a fresh key: the first pipeline run is cold
        pipeline(model, device, config, root, paths[: args.batch], args.batch, f"warmup-{arch}")
        # Raw forward is measured before and after the pipeline runs and averaged, so a
        # change in machine load during the run does not favour either side.
        raw_before = raw_forward(model, device, config, args.n, args.batch)
        cold = pipeline(model, device, config, root, paths, args.batch, dataset_hash)
        warm = pipeline(model, device, config, root, paths, args.batch, dataset_hash)
        raw = (raw_before + raw_forward(model, device, config, args.n, args.batch)) / 2
        size = f"{config['input_size'][1]}px"
        print(f"{arch:<24}{size:>8}{raw:>11.1f}{cold:>12.1f}{cold / raw:>7.2f}"
              f"{warm:>12.1f}{warm / raw:>7.2f}", flush=True)
    print(f"caches under {caches.cache_root()}")


if __name__ == "__main__":
    main()
