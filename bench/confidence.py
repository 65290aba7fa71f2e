"""What "how sure" costs: the resampled panel against the panel itself.

Usage (from the repository root):

    .venv/bin/python bench/confidence.py                      # N 2500, D 256, C 5
    .venv/bin/python bench/confidence.py --n 10000 --d 1024 --c 100 --json

On synthetic features (bench/metrics.py's), times one panel of every metric as a worker
runs it (``score_panel``) and the metrics' values on the 30 resamples of
``transferability.metrics.resampling`` (the four it leaves out are named), and prints both
and their ratio. Best of ``--repeat`` runs each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.metrics import synthetic_features, synthetic_source_probs  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2500)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--c", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from transferability.metrics import REGISTRY, score_panel
    from transferability.metrics.resampling import (NOT_RESAMPLED, RESAMPLES,
                                                    resample_indices, resampled_scores)

    features, labels = synthetic_features(args.n, args.d, args.c, seed=0)
    probs = synthetic_source_probs(labels, args.c, seed=0)
    specs = list(REGISTRY.values())
    # As a worker does: the forms of TMI are resampled only when one of them leads.
    resampled_specs = [s for s in specs if s.variant_of is None]

    def best(run) -> float:
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times)

    panel = best(lambda: score_panel(features, labels, specs, source_probs=probs))
    indices = resample_indices(labels)
    resampling = best(lambda: resampled_scores(features, labels, resampled_specs,
                                               source_probs=probs, indices=indices))
    result = {"n": args.n, "d": args.d, "c": args.c, "resamples": RESAMPLES,
              "panel_seconds": panel, "resampling_seconds": resampling,
              "ratio": resampling / panel, "not_resampled": sorted(NOT_RESAMPLED)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"N {args.n}, D {args.d}, C {args.c}: panel {panel:.2f} s; {RESAMPLES} "
              f"resamples of {len([s for s in resampled_specs if s.name not in NOT_RESAMPLED])} "
              f"metrics "
              f"{resampling:.2f} s = {resampling / panel:.2f} x the panel "
              f"(not resampled: {', '.join(sorted(NOT_RESAMPLED))})")
    return result


if __name__ == "__main__":
    main()
