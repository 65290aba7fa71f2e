"""One evaluation through a real worker, against the bare forward passes of its checkpoints.

    .venv/bin/python bench/evaluation.py [--images 512] [--classes 8] [--arch resnet18 ...]
    .venv/bin/python bench/evaluation.py --all --images 5000 --classes 50 --device cuda
    .venv/bin/python bench/evaluation.py --json

In a throwaway var folder (the embedded default: SQLite and the on-disk broker), it
1. writes ``--images`` photo-like JPEGs of mixed sizes around 400 x 300 px in ``--classes``
   class folders, zips them and stores them as a target dataset (``create_target_dataset``);
2. makes one checkpoint per architecture as the timm import does (its pretrained config:
   input size, crop, interpolation, mean, std, 1,000-class head), with random weights
   saved as a local safetensors file;
3. times the raw forward pass of each network in this process: ready, normalised tensors
   on the device, the worker's batch size and precision, the worker's call
   (``forward_layers``), channels-last, inference mode, after warming up each batch size,
   over the same batches the worker will run; on a CPU once before the evaluation and once
   after it (the worker stopped), averaged (the machine's load moves it); on a GPU once;
4. starts one Celery worker (``celery -A config worker -Q gpu,cpu -P solo``), submits one
   evaluation of all the checkpoints with every metric (``submit_evaluation``), and waits
   for it to finish;
5. reads the timings the worker recorded (result rows, metric scores, and its log line on
   decoding) and prints, per checkpoint, images/s of extraction and of the raw forward,
   their ratio, decode/resize seconds, panel seconds (the transferability metrics) and
   baselines seconds (k-NN and linear probe); then where the evaluation's wall time went
   and the overhead ratio: wall time (submit -> done) / (raw forward times + scoring), the
   scoring being the panel the user asked for: the metrics, the baselines (k-NN, linear
   probe) and the 30 resamples that give each rank its confidence; also the ratio against
   the raw forward and the metrics alone.
   The load average says whether something else shared the CPUs meanwhile.

The default is a small CPU run (4 architectures of 4 families, a few minutes on 2 cores);
``--all`` takes the 12 architectures of ``ALL_ARCHS``. Random weights: speed does not
depend on them. Not a test. ``--keep`` keeps the var folder (its path is printed).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR_DIR = Path()  # the throwaway var folder, made by use_throwaway_var_dir()

DEFAULT_ARCHS = ["resnet18", "efficientnet_b0", "regnety_016", "deit_small_patch16_224"]
ALL_ARCHS = ["resnet50", "convnext_tiny", "vit_small_patch16_224", "efficientnet_b0",
             "regnety_016", "deit_small_patch16_224", "mobilenetv3_large_100",
             "swin_tiny_patch4_window7_224", "densenet121", "resnet18", "vit_base_patch16_224",
             "convnext_small"]
DECODE_LINE = re.compile(r"pixels (\w+): (\d+) images decoded and resized for (\d+) "
                         r"preprocessings in ([\d.]+) s, ([\d.]+) s waited for")


def use_throwaway_var_dir() -> None:
    """This process and its worker share a new var folder and nothing else."""
    global VAR_DIR
    VAR_DIR = Path(tempfile.mkdtemp(prefix="zoorank-bench-evaluation-"))
    for name in ("DATABASE_URL", "REDIS_URL", "ZOORANK_STORAGE_URL", "ZOORANK_DATABASE_NAME",
                 "MEDIA_ROOT", "ZOORANK_CACHE_DIR"):
        os.environ.pop(name, None)
    os.environ.update({"ZOORANK_VAR_DIR": str(VAR_DIR), "HF_HUB_OFFLINE": "1",
                       "DJANGO_SETTINGS_MODULE": "config.settings"})


def photo_jpeg(rng, tint) -> bytes:
    """A JPEG that decodes like a photo: smooth light and shapes, finer detail, grain."""
    import numpy as np
    from PIL import Image

    w, h = int(rng.integers(340, 461)), int(rng.integers(255, 346))
    if rng.random() < 0.25:
        w, h = h, w  # some portraits
    layers = np.zeros((h, w, 3), np.float32)
    for scale, amplitude in ((32, 90.0), (8, 40.0), (2, 12.0)):
        small = rng.normal(0, 1, (max(2, h // scale), max(2, w // scale), 3)).astype(np.float32)
        small = (small - small.min()) / (np.ptp(small) + 1e-6) * 255
        up = Image.fromarray(small.astype(np.uint8)).resize((w, h), Image.BICUBIC)
        layers += (np.asarray(up, np.float32) - 128) * amplitude / 128
    pixels = 128 + layers + 0.35 * (np.asarray(tint, np.float32) - 128)
    pixels += rng.normal(0, 4, pixels.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def write_archive(path: Path, images: int, classes: int, seed: int = 0) -> Path:
    """An ImageFolder zip: ``images`` JPEGs spread evenly over ``classes`` folders."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tints = rng.integers(0, 256, (classes, 3))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:  # JPEG is compressed already
        for i in range(images):
            c = i % classes
            zf.writestr(f"class_{c:03d}/img_{i:06d}.jpg", photo_jpeg(rng, tints[c]))
    return path


def stored_checkpoint(architecture: str, weights_dir: Path):
    """A catalog entry as the timm import writes it, with random weights in a local file."""
    import timm
    import torch
    from safetensors.torch import save_file
    from timm.models import get_pretrained_cfg

    from zoo.models import Checkpoint
    from zoo.timm_catalog import catalog_entries
    from zoo.weights import sha256_of_path

    tag = get_pretrained_cfg(architecture).tag
    entry = next(iter(catalog_entries(names=[f"{architecture}.{tag}"], measure_sizes=False)))
    torch.manual_seed(0)
    model = timm.create_model(architecture, pretrained=False, num_classes=entry["num_classes"])
    path = weights_dir / f"{architecture}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    entry.update(weights_source=Checkpoint.WeightsSource.LOCAL, hub_id="",
                 weights_path=str(path), weights_sha256=sha256_of_path(path), enabled=True)
    return Checkpoint.objects.create(**entry)


def worker_batch_size(device) -> int:
    return 64 if device.type == "cpu" else 256  # as workers/jobs.py extracts


def raw_forward_seconds(checkpoint, device, images: int) -> float:
    """Seconds of the checkpoint's forward passes over ``images`` ready tensors, batched as
    the worker batches them, outputs copied back to the host as the worker copies them."""
    import torch

    from workers.extraction import forward_layers
    from zoo.loading import build_model

    model = build_model(checkpoint).to(device).eval().to(memory_format=torch.channels_last)
    batch = worker_batch_size(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    _, h, w = checkpoint.input_size
    x = torch.randn(min(batch, images), 3, h, w, device=device).contiguous(
        memory_format=torch.channels_last)
    sizes = [min(batch, images - start) for start in range(0, images, batch)]

    def forward(n: int) -> None:
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            layers = forward_layers(model, x[:n], want_logits=checkpoint.has_source_head)
        for t in layers.values():
            t.float().cpu().numpy()

    with torch.inference_mode():
        # Warm-up: each batch size once (three times on CUDA, where the first calls pick
        # cuDNN's algorithms and compile kernels: resnet50 ran at 2,197 img/s with one
        # warm-up batch, 14,226 once warm).
        for n in sorted(set(sizes)) * (3 if cuda else 1):
            forward(n)
        if cuda:
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for n in sizes:
            forward(n)
        if cuda:
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
    del model, x
    gc.collect()
    return seconds


def raw_forwards(checkpoints, device, images: int, when: str, out) -> dict[int, float]:
    seconds = {}
    for checkpoint in checkpoints:
        seconds[checkpoint.pk] = raw_forward_seconds(checkpoint, device, images)
        print(f"  raw forward {checkpoint.architecture} ({when} the evaluation): "
              f"{images / seconds[checkpoint.pk]:.1f} img/s", file=out, flush=True)
    return seconds


def start_worker(device: str, log_path: Path):
    from drills.hosts import start_worker as start

    env = dict(os.environ)
    env.update({"ZOORANK_DEVICE": device, "MEDIA_ROOT": str(VAR_DIR / "media"),
                "ZOORANK_CACHE_DIR": str(VAR_DIR / "cache"), "LOG_LEVEL": "INFO"})
    return start(env, "bench", log_path, timeout=180)


def wait_until_finished(evaluation, out, every: float = 0.1, report_every: float = 15.0,
                        timeout: float = 6 * 3600):
    from transferability.models import Status

    last_report = time.monotonic()
    deadline = last_report + timeout
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the evaluation did not finish in {timeout:.0f} s")
        evaluation.refresh_from_db()
        if evaluation.status in (Status.DONE, Status.FAILED):
            return evaluation
        if time.monotonic() - last_report > report_every:
            last_report = time.monotonic()
            rows = list(evaluation.results.values_list("status", "images_done", "images_total"))
            done = sum(1 for status, _, _ in rows if status in (Status.DONE, Status.FAILED))
            running = [f"{d}/{t} images" for status, d, t in rows if status == Status.RUNNING]
            print(f"  ... {done} of {len(rows)} checkpoints done"
                  + (f", one at {running[0]}" if running else ""), file=out, flush=True)
        time.sleep(every)


def decode_figures(log_text: str) -> dict[str, tuple[float, float]]:
    """Pixel cache key -> (decode/resize seconds, seconds extraction waited for them)."""
    return {m.group(1): (float(m.group(4)), float(m.group(5)))
            for m in DECODE_LINE.finditer(log_text)}


def gather(evaluation, raw: dict[int, float], images: int, decoding: dict) -> dict:
    """Per-checkpoint figures and the wall-time breakdown, from the rows the worker wrote."""
    from transferability.metrics import REGISTRY
    from workers.extraction import pixel_cache_key

    results = list(evaluation.results.select_related("checkpoint").order_by("started_at"))
    checkpoints = []
    previous_end = evaluation.created_at
    totals = dict.fromkeys(["raw_forward", "panel", "extraction_beyond_raw", "baselines",
                            "other_scoring", "model_build_and_storing", "waiting_for_worker"],
                           0.0)
    for r in results:
        scores = list(r.scores.filter(layer="pre_logits"))
        panel = sum(s.seconds or 0 for s in scores if REGISTRY[s.metric].kind != "baseline")
        baselines = sum(s.seconds or 0 for s in scores if REGISTRY[s.metric].kind == "baseline")
        extraction, scoring = r.extraction_seconds or 0.0, r.scoring_seconds or 0.0
        task = (r.finished_at - r.started_at).total_seconds()
        key = pixel_cache_key(evaluation.dataset.content_hash, r.checkpoint.data_config())
        decode, waited = decoding.get(key, (0.0, 0.0))
        seconds = raw[r.checkpoint_id]
        checkpoints.append({
            "name": r.checkpoint.name, "architecture": r.checkpoint.architecture,
            "status": r.status, "message": r.message,
            "input_size": r.checkpoint.input_size[1:], "feature_dim": r.feature_dim,
            "raw_images_per_second": images / seconds,
            "extraction_images_per_second": images / extraction if extraction else None,
            "extraction_ratio": seconds / extraction if extraction else None,
            "raw_forward_seconds": seconds, "extraction_seconds": extraction,
            "decode_seconds": decode, "decode_waited_seconds": waited,
            "panel_seconds": panel, "baselines_seconds": baselines,
            "scoring_seconds": scoring, "task_seconds": task,
        })
        totals["raw_forward"] += seconds
        totals["panel"] += panel
        totals["extraction_beyond_raw"] += extraction - seconds
        totals["baselines"] += baselines
        totals["other_scoring"] += scoring - panel - baselines
        totals["model_build_and_storing"] += task - extraction - scoring
        totals["waiting_for_worker"] += (r.started_at - previous_end).total_seconds()
        previous_end = r.finished_at
    totals["finalize"] = (evaluation.finished_at - previous_end).total_seconds()
    wall = (evaluation.finished_at - evaluation.created_at).total_seconds()
    scoring = totals["panel"] + totals["baselines"] + totals["other_scoring"]
    return {"status": evaluation.status, "message": evaluation.message, "wall_seconds": wall,
            # What the device and the scoring must take, against what the user waited.
            "overhead_ratio": wall / (totals["raw_forward"] + scoring),
            "overhead_ratio_metrics_only": wall / (totals["raw_forward"] + totals["panel"]),
            "breakdown_seconds": totals, "checkpoints": checkpoints}


BREAKDOWN_LABELS = {
    "raw_forward": "raw forward passes (this process)",
    "panel": "metric panel",
    "extraction_beyond_raw": "extraction beyond the raw forward",
    "baselines": "baselines (k-NN, linear probe)",
    "other_scoring": "rank-confidence resamples, probe correctness",
    "model_build_and_storing": "model build, feature cache, row updates",
    "waiting_for_worker": "waiting for the worker (broker, between tasks)",
    "finalize": "final step (broker, complementarity)",
}


def print_report(report: dict, out) -> None:
    header = (f"{'checkpoint':<34}{'input':>6}{'raw img/s':>10}{'extr img/s':>11}{'ratio':>7}"
              f"{'decode s':>9}{'panel s':>9}{'baselines s':>12}")
    print(header, file=out)
    print("-" * len(header), file=out)
    for c in report["checkpoints"]:
        if c["extraction_ratio"] is None:
            print(f"{c['name']:<34} {c['status']}: {c['message'][:80]}", file=out)
            continue
        print(f"{c['name']:<34}{c['input_size'][0]:>6}{c['raw_images_per_second']:>10.1f}"
              f"{c['extraction_images_per_second']:>11.1f}{c['extraction_ratio']:>7.2f}"
              f"{c['decode_seconds']:>9.2f}{c['panel_seconds']:>9.2f}"
              f"{c['baselines_seconds']:>12.2f}", file=out)
    print(f"\nevaluation {report['status']}{': ' + report['message'] if report['message'] else ''}"
          f"; wall time (submit -> done) {report['wall_seconds']:.1f} s, of which", file=out)
    for key, seconds in report["breakdown_seconds"].items():
        print(f"  {BREAKDOWN_LABELS[key]:<50}{seconds:>8.1f} s", file=out)
    waited = sum(c["decode_waited_seconds"] for c in report["checkpoints"])
    print(f"  (extraction waited {waited:.1f} s for decoded images)", file=out)
    b = report["breakdown_seconds"]
    load = report["load_average_during"]
    print(f"  (1-minute load average {load[0]:.1f} at the start, {load[1]:.1f} at the end, "
          f"on {os.cpu_count()} CPUs)", file=out)
    scoring = b["panel"] + b["baselines"] + b["other_scoring"]
    print(f"overhead ratio: wall / (raw forward + scoring: the metrics, the baselines and "
          f"their resamples) = {report['wall_seconds']:.1f} / ({b['raw_forward']:.1f} + "
          f"{scoring:.1f}) = {report['overhead_ratio']:.2f}", file=out)
    print(f"  against the raw forward and the metrics alone: {report['wall_seconds']:.1f} / "
          f"({b['raw_forward']:.1f} + {b['panel']:.1f}) = "
          f"{report['overhead_ratio_metrics_only']:.2f}", file=out, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", nargs="+", default=None,
                        help=f"timm architectures (default {' '.join(DEFAULT_ARCHS)})")
    parser.add_argument("--all", action="store_true", help=f"the {len(ALL_ARCHS)} of ALL_ARCHS")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document (the tables go to stderr)")
    parser.add_argument("--keep", action="store_true", help="keep the var folder")
    args = parser.parse_args(argv)
    if args.classes < 2 or args.images < 2 * args.classes:
        parser.error("needs at least 2 classes and 2 images per class")
    archs = ALL_ARCHS if args.all else args.arch or DEFAULT_ARCHS
    out = sys.stderr if args.json else sys.stdout

    use_throwaway_var_dir()
    import django

    django.setup()
    import torch
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from drills.hosts import stop
    from transferability.datasets import create_target_dataset
    from transferability.submission import submit_evaluation

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {device} ({name}), torch threads {torch.get_num_threads()}, batch "
          f"{worker_batch_size(device)}, {args.images} images in {args.classes} classes; "
          f"var folder {VAR_DIR}", file=out, flush=True)
    worker = None
    try:
        call_command("migrate", verbosity=0)
        owner = get_user_model().objects.create_user("bench", password="bench-password-1")
        archive = write_archive(VAR_DIR / "photos.zip", args.images, args.classes)
        dataset = create_target_dataset(owner, "bench photos", archive)
        weights_dir = VAR_DIR / "media" / "weights"
        weights_dir.mkdir(parents=True, exist_ok=True)
        checkpoints = [stored_checkpoint(arch, weights_dir) for arch in archs]
        before = raw_forwards(checkpoints, device, dataset.num_images, "before", out)
        log_path = VAR_DIR / "worker.log"
        worker = start_worker(args.device, log_path)
        load_before = os.getloadavg()[0]
        evaluation = submit_evaluation(owner, dataset, checkpoints)
        evaluation = wait_until_finished(evaluation, out)
        load_after = os.getloadavg()[0]
        stop(worker)
        worker = None
        # Measured again after the evaluation and averaged, so that a change in the
        # machine's load during the run favours neither side.
        # On a GPU, warm, the figure does not move: measured once.
        after = (raw_forwards(checkpoints, device, dataset.num_images, "after", out)
                 if device.type == "cpu" else before)
        raw = {pk: (before[pk] + after[pk]) / 2 for pk in before}
        report = gather(evaluation, raw, dataset.num_images, decode_figures(log_path.read_text()))
        for c, checkpoint in zip(report["checkpoints"], checkpoints):
            c["raw_forward_seconds_before_after"] = [before[checkpoint.pk], after[checkpoint.pk]]
    finally:
        if worker is not None:
            stop(worker)
        if not args.keep:
            shutil.rmtree(VAR_DIR, ignore_errors=True)
    report.update(device=str(device), device_name=name, torch_threads=torch.get_num_threads(),
                  images=dataset.num_images, classes=args.classes,
                  batch_size=worker_batch_size(device),
                  load_average_during=[load_before, load_after])
    print_report(report, out)
    if args.json:
        print(json.dumps(report, indent=2))
    if args.keep:
        print(f"kept {VAR_DIR}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
