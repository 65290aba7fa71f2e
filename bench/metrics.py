"""Time every transferability metric on synthetic data over a grid of N, D and C.

Usage (from the repository root):

    .venv/bin/python bench/metrics.py --quick
    .venv/bin/python bench/metrics.py --n 1000 10000 --d 512 --c 20 200 --metrics tmi logme

Synthetic features are Gaussian class means plus unit noise, float32, balanced classes.
Times include each metric's first-call overheads (the first cell is the coldest).
Metrics that need the source head get a synthetic N x 1000 softmax in which each target
class favours one source class; they do not depend on D, so they run once per (N, C) and
show D as "-".

Budget: cells run from small to large. Once a metric takes longer than ``--budget`` seconds
on a cell, every cell at least as large in N, D and C is skipped for that metric and shown
as "skipped (> budget)". A running cell is never interrupted, so the worst case is one
over-budget cell per metric and direction. A metric that raises shows its error in the
cell and the run goes on.
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

FULL_GRID = {"n": [1000, 5000, 10000, 50000], "d": [128, 512, 2048], "c": [2, 20, 200]}
QUICK_GRID = {"n": [1000], "d": [128], "c": [2, 20]}
N_SOURCE_CLASSES = 1000
SKIPPED = "skipped (> budget)"


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


def parse_args(argv, metric_names):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"small smoke grid {QUICK_GRID} unless --n/--d/--c are given")
    parser.add_argument("--n", type=int, nargs="+", help=f"sample counts (default {FULL_GRID['n']})")
    parser.add_argument("--d", type=int, nargs="+", help=f"feature dims (default {FULL_GRID['d']})")
    parser.add_argument("--c", type=int, nargs="+", help=f"class counts (default {FULL_GRID['c']})")
    parser.add_argument("--metrics", nargs="+", metavar="NAME",
                        help=f"metrics to time (default all: {', '.join(metric_names)})")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds per cell before a metric's larger cells are skipped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    grid = QUICK_GRID if args.quick else FULL_GRID
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


class Budget:
    """Remembers, per metric, the cells that ran over budget."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.over: dict[str, list[tuple]] = {}

    def record(self, metric: str, cell: tuple, seconds: float) -> None:
        if seconds > self.seconds:
            self.over.setdefault(metric, []).append(cell)

    def exceeded(self, metric: str, cell: tuple) -> bool:
        """Is ``cell`` at least as large on every axis as a cell that ran over budget?"""
        return any(
            all(a is None or b is None or a >= b for a, b in zip(cell, slow))
            for slow in self.over.get(metric, [])
        )


def format_score(value) -> str:
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return repr(value)[:30]


def time_metric(spec, inputs, labels) -> tuple[str, str, float | None]:
    """Run one metric once; return (seconds text, score text, seconds or None on error)."""
    start = time.perf_counter()
    try:
        value = spec.func(inputs, labels)
    except Exception as error:  # a broken metric must not stop the benchmark
        message = str(error).splitlines()[0][:80] if str(error) else ""
        return f"error: {type(error).__name__}: {message}", "", None
    seconds = time.perf_counter() - start
    return f"{seconds:.3f}", format_score(value), seconds


def run(args, registry) -> list[dict]:
    columns = ("metric", "N", "D", "C", "seconds", "score")
    widths = (max(12, *(len(m) for m in args.metrics)), 6, 5, 4, 8, 10)
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*columns))
    print("  ".join("-" * w for w in widths), flush=True)
    budget = Budget(args.budget)
    rows = []
    done_source_cells = set()
    for n in args.n:
        for d in args.d:
            for c in args.c:
                if c > n:
                    continue
                features, labels = synthetic_features(n, d, c, args.seed)
                source_probs = None
                for name in args.metrics:
                    spec = registry[name]
                    if spec.needs == "source_probs":
                        if (name, n, c) in done_source_cells:
                            continue
                        done_source_cells.add((name, n, c))
                        cell = (n, None, c)
                        if source_probs is None:
                            source_probs = synthetic_source_probs(labels, c, args.seed)
                        inputs = source_probs
                    elif spec.needs == "features":
                        cell, inputs = (n, d, c), features
                    else:
                        cell, inputs = (n, d, c), None
                    if inputs is None:
                        cell_text, score, seconds = f"skipped (needs {spec.needs!r})", "", None
                    elif budget.exceeded(name, cell):
                        cell_text, score, seconds = SKIPPED, "", None
                    else:
                        cell_text, score, seconds = time_metric(spec, inputs, labels)
                        if seconds is not None:
                            budget.record(name, cell, seconds)
                    shown_d = "-" if cell[1] is None else d
                    print(line.format(name, n, shown_d, c, cell_text, score), flush=True)
                    rows.append({"metric": name, "n": n, "d": cell[1], "c": c,
                                 "seconds": seconds, "cell": cell_text, "score": score})
                del features, labels, source_probs
                gc.collect()
    return rows


def main(argv=None) -> int:
    try:
        from transferability.metrics import REGISTRY
    except Exception as error:
        print(f"cannot import transferability.metrics.REGISTRY: {error!r}", file=sys.stderr)
        return 2
    args = parse_args(argv, list(REGISTRY))
    print(f"grid: N={args.n} D={args.d} C={args.c}; budget {args.budget:g} s per cell")
    rows = run(args, REGISTRY)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
