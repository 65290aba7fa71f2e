"""Time the metric panel on synthetic data over a grid of N, D and C.

Usage (from the repository root):

    .venv/bin/python bench/metrics.py --quick
    .venv/bin/python bench/metrics.py --n 10000 --d 1024 --c 100 --json
    .venv/bin/python bench/metrics.py --n 50000 --d 2048 --c 100 --device cuda

Each cell runs the whole panel once, as a worker does (``score_panel``: shared statistics
computed once, then every metric), and prints each metric's seconds, the panel total, the
time of one float64 ``X.T @ X`` on the same features (this machine's BLAS yardstick, best
of three) and the ratio total / Gram, so that the figure travels between machines.
``--device cuda`` runs the torch path (the Gram yardstick then runs on the device too).

``--versus DIR`` times the authors' released functions, imported at run time from the
clones of their repositories under DIR, beside ours on the same generated inputs (float64;
one cell, default N = 5,000, D = 512, C = 50, 1,000 source classes): both values, both best
times and the ratio per metric (bench/versus.py lists what it looks for). For example:

    .venv/bin/python bench/metrics.py --versus ~/authors --repeat 9

Synthetic features are Gaussian class means plus unit noise, float32, balanced classes.
The source-head metrics get a synthetic N x 1000 softmax in which each target class
favours one source class. Times include first-call overheads (the first cell is coldest).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FULL_GRID = {"n": [1000, 10000, 50000], "d": [128, 1024, 2048], "c": [2, 20, 100]}
QUICK_GRID = {"n": [1000], "d": [128], "c": [2, 20]}
VERSUS_CELL = {"n": [5000], "d": [512], "c": [50]}
N_SOURCE_CLASSES = 1000


def synthetic_features(n: int, d: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels 0..c-1 and float32 features = class mean + N(0, 1) noise.

    Means are scaled by 3 / sqrt(d), so two class means lie about 4.2 noise standard
    deviations apart whatever the dimension: separable but not trivially so.
    """
    rng = np.random.default_rng([seed, n, d, c])
    labels = rng.permutation(np.arange(n) % c)
    means = rng.standard_normal((c, d), dtype=np.float32) * np.float32(3.0 / np.sqrt(d))
    features = means[labels]
    features += rng.standard_normal((n, d), dtype=np.float32)
    return features, labels


def synthetic_source_probs(labels: np.ndarray, c: int, seed: int) -> np.ndarray:
    """N x 1000 float32 softmax; its argmax is the source class of the label about half the time."""
    rng = np.random.default_rng([seed, labels.size, c, N_SOURCE_CLASSES])
    source_class = rng.choice(N_SOURCE_CLASSES, size=c, replace=False)
    logits = rng.standard_normal((labels.size, N_SOURCE_CLASSES), dtype=np.float32)
    logits[np.arange(labels.size), source_class[labels]] += 3.0
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def gram_seconds(features: np.ndarray, device: str | None) -> float:
    """Best of three float64 ``X.T @ X`` on the same features (on the device if given)."""
    if device is None:
        X = features.astype(np.float64)
        run, sync = (lambda: X.T @ X), (lambda: None)
    else:
        import torch

        X = torch.as_tensor(features, device=device).to(torch.float64)
        run = lambda: X.T @ X  # noqa: E731
        sync = torch.cuda.synchronize if X.is_cuda else (lambda: None)
    best = float("inf")
    for _ in range(3):
        sync()
        start = time.perf_counter()
        run()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def parse_args(argv, metric_names):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"small smoke grid {QUICK_GRID} unless --n/--d/--c are given")
    parser.add_argument("--n", type=int, nargs="+", help=f"sample counts (default {FULL_GRID['n']})")
    parser.add_argument("--d", type=int, nargs="+", help=f"feature dims (default {FULL_GRID['d']})")
    parser.add_argument("--c", type=int, nargs="+", help=f"class counts (default {FULL_GRID['c']})")
    parser.add_argument("--metrics", nargs="+", metavar="NAME",
                        help=f"metrics to run (default all: {', '.join(metric_names)})")
    parser.add_argument("--device", default=None,
                        help="torch device for the panel (cuda, cpu); default NumPy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--versus", type=Path, metavar="DIR",
                        help="time the authors' functions found under DIR beside ours "
                             f"(default cell {VERSUS_CELL})")
    parser.add_argument("--repeat", type=int, default=5,
                        help="with --versus: timed calls of each side, best kept (default 5)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document (cells with per-metric seconds, panel "
                             "total, Gram seconds, ratio) instead of the tables")
    args = parser.parse_args(argv)
    grid = VERSUS_CELL if args.versus else QUICK_GRID if args.quick else FULL_GRID
    if args.versus is not None and not args.versus.is_dir():
        parser.error(f"--versus {args.versus}: not a folder")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    for axis in ("n", "d", "c"):
        values = getattr(args, axis) or grid[axis]
        if min(values) < 1:
            parser.error(f"--{axis} values must be positive")
        setattr(args, axis, sorted(set(values)))
    unknown = sorted(set(args.metrics or []) - set(metric_names))
    if unknown:
        parser.error(f"unknown metrics {unknown}; available: {', '.join(metric_names)}")
    args.metrics = args.metrics or list(metric_names)
    return args


def run_cell(n, d, c, args, registry, score_panel) -> dict:
    features, labels = synthetic_features(n, d, c, args.seed)
    specs = [registry[name] for name in args.metrics]
    probs = None
    if any(spec.needs == "source_probs" for spec in specs):
        probs = synthetic_source_probs(labels, c, args.seed)
    gram = gram_seconds(features, args.device)
    start = time.perf_counter()
    scores = score_panel(features, labels, specs, source_probs=probs, device=args.device)
    total = time.perf_counter() - start
    del features, labels, probs
    gc.collect()
    return {
        "n": n, "d": d, "c": c, "device": args.device or "numpy",
        "panel_seconds": total, "gram_seconds": gram, "ratio": total / gram,
        "metrics": [{"metric": s.name, "seconds": s.seconds,
                     "value": s.value if s.value is not None else s.details.get("components"),
                     "error": s.error, "note": s.details.get("note", "")} for s in scores],
    }


def print_cell(cell: dict, out) -> None:
    print(f"\nN={cell['n']} D={cell['d']} C={cell['c']} on {cell['device']}", file=out)
    print(f"{'metric':<18}{'seconds':>9}  value", file=out)
    for row in cell["metrics"]:
        shown = row["error"][:60] if row["error"] else row["value"]
        if isinstance(shown, float):
            shown = f"{shown:.6g}"
        note = f"  ({row['note']})" if row["note"] else ""
        print(f"{row['metric']:<18}{row['seconds']:>9.3f}  {shown}{note}", file=out)
    print(f"{'panel total':<18}{cell['panel_seconds']:>9.3f}", file=out)
    print(f"{'X.T @ X (float64)':<18}{cell['gram_seconds']:>9.3f}", file=out)
    print(f"{'ratio':<18}{cell['ratio']:>9.1f}  panel total / Gram", file=out, flush=True)


def run_versus(args, out) -> int:
    """Each cell once: the authors' functions beside ours (bench/versus.py)."""
    import versus

    cells = []
    for n in args.n:
        for d in args.d:
            for c in args.c:
                if c > n:
                    continue
                features, labels = synthetic_features(n, d, c, args.seed)
                probs = synthetic_source_probs(labels, c, args.seed)
                # float64, as the reference values of docs/science.md section 7 (the SFDA
                # code loses accuracy on float32 features) and the worker's softmax.
                features, probs = features.astype(np.float64), probs.astype(np.float64)
                print(f"\nN={n} D={d} C={c}, {N_SOURCE_CLASSES} source classes; "
                      f"best of {args.repeat}; authors' code from {args.versus}", file=out)
                rows = versus.compare(args.versus, features, labels, probs, args.repeat,
                                      names=set(args.metrics))
                versus.print_rows(rows, out)
                cells.append({"n": n, "d": d, "c": c, "metrics": rows})
    if args.json:
        print(json.dumps({"versus": cells}, indent=2))
    return 0


def main(argv=None) -> int:
    try:
        from transferability.metrics import REGISTRY, score_panel
    except Exception as error:
        print(f"cannot import transferability.metrics: {error!r}", file=sys.stderr)
        return 2
    args = parse_args(argv, list(REGISTRY))
    out = sys.stderr if args.json else sys.stdout
    print(f"grid: N={args.n} D={args.d} C={args.c}", file=out)
    if args.versus is not None:
        return run_versus(args, out)
    cells = []
    for n in args.n:
        for d in args.d:
            for c in args.c:
                if c > n:
                    continue
                cell = run_cell(n, d, c, args, REGISTRY, score_panel)
                print_cell(cell, out)
                cells.append(cell)
    if args.json:
        print(json.dumps({"cells": cells}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
