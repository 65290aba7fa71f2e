"""Scaling: one evaluation's wall time with 1 and 2 worker processes, cold and warm cache.

Usage (from the repository root; `make scaling` runs the defaults):

    .venv/bin/python bench/scaling.py [--checkpoints 14] [--dataset digits] [--workers 1 2]
                                      [--trained]

Runs on a throwaway var folder, PostgreSQL database (``--database-server``) and Redis
database (``--redis-url``). The zoo is the demo zoo's first ``--checkpoints`` recipes (all
14 by default). Without ``--trained`` each is trained for one epoch on 64 source images:
the same architectures, widths and input sizes as ``manage.py build_demo_zoo`` makes, so the
same extraction and scoring work, in seconds instead of minutes; ``--trained`` builds the
real recipes. The target dataset is scikit-learn's digits (1,797 images in 10 classes) or,
with ``--dataset mnist59``, the demo's MNIST digits 5-9 (about 2,500).

For each worker count: the feature and image caches are emptied, that many real worker
processes start (``celery -A config worker -Q gpu,cpu -P solo -c 1``, as ``make worker``
and ``deploy/`` run them), one evaluation of every checkpoint is submitted and timed from
submission until its final step is done (cold), then a second one on the same data (warm:
the features come from the cache). Prints one row per run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FINISHED = ("done", "failed")


def environment(var_dir: Path, database_url: str, redis_url: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "ZOORANK_STORAGE_URL")}
    env.update({"DJANGO_SETTINGS_MODULE": "config.settings", "ZOORANK_VAR_DIR": str(var_dir),
                "DATABASE_URL": database_url, "REDIS_URL": redis_url, "HF_HUB_OFFLINE": "1",
                "LOG_LEVEL": "WARNING"})
    return env


def create_database(server: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{server}/postgres")
    conn.autocommit = True
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    conn.close()


def drop_database(server: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(f"{server}/postgres")
    conn.autocommit = True
    conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def build_zoo(count: int, trained: bool):
    from zoo.demo_zoo import DEMO_ZOO, build_checkpoint

    checkpoints = []
    for recipe in DEMO_ZOO[:count]:
        started = time.perf_counter()
        if trained:
            checkpoint, _ = build_checkpoint(recipe)
        else:
            checkpoint, _ = build_checkpoint(dataclasses.replace(recipe, epochs=1), limit=64)
        print(f"  {recipe.name}: built in {time.perf_counter() - started:.1f} s", flush=True)
        checkpoints.append(checkpoint)
    return checkpoints


def target_dataset(user, which: str, var_dir: Path):
    from transferability.bundled import digits_archive, mnist_59_archive
    from transferability.datasets import create_target_dataset

    write = {"digits": digits_archive, "mnist59": mnist_59_archive}[which]
    archive = write(var_dir / f"{which}.zip")
    return create_target_dataset(user, which, archive)


def start_workers(count: int, env: dict, var_dir: Path) -> list[subprocess.Popen]:
    workers = []
    for i in range(count):
        log = var_dir / f"worker-{count}-{i}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu,cpu", "-P",
             "solo", "-c", "1", "--without-gossip", "--without-mingle", "--loglevel=INFO",
             "-n", f"scaling{i}@%h"],
            cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        workers.append(process)
        deadline = time.monotonic() + 180
        while "ready." not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                stop_workers(workers)
                raise RuntimeError(f"worker {i} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for process in workers:
        process.terminate()
    for process in workers:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def timed_evaluation(user, dataset, checkpoints, timeout: float) -> tuple[float, object]:
    from transferability.models import Evaluation
    from transferability.submission import submit_evaluation

    started = time.perf_counter()
    evaluation = submit_evaluation(user, dataset, checkpoints)
    deadline = time.monotonic() + timeout
    while True:
        evaluation = Evaluation.objects.get(pk=evaluation.pk)
        if evaluation.status in FINISHED:
            return time.perf_counter() - started, evaluation
        if time.monotonic() > deadline:
            raise TimeoutError(f"evaluation {evaluation.pk} still {evaluation.status} "
                               f"after {timeout:.0f} s")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", type=int, default=14,
                        help="the first N demo recipes (of 14)")
    parser.add_argument("--dataset", choices=["digits", "mnist59"], default="digits")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trained", action="store_true",
                        help="train the real demo recipes (minutes) instead of one epoch each")
    parser.add_argument("--timeout", type=float, default=1800, help="per evaluation, s")
    parser.add_argument("--database-server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="zoorank-scaling-"))
    database = f"zoorank_scaling_{uuid.uuid4().hex[:8]}"
    env = environment(var_dir, f"{args.database_server}/{database}", args.redis_url)
    create_database(args.database_server, database)
    os.environ.clear()
    os.environ.update(env)
    try:
        import django
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()
        django.setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        print(f"Set up in {var_dir}, database {database}, Redis {args.redis_url}", flush=True)
        kind = "demo recipes" if args.trained else "demo recipes, 1 epoch on 64 images"
        print(f"Zoo: {args.checkpoints} {kind}", flush=True)
        checkpoints = build_zoo(args.checkpoints, args.trained)
        user = get_user_model().objects.create_user("scaling")
        dataset = target_dataset(user, args.dataset, var_dir)
        print(f"Dataset: {args.dataset}, {dataset.num_images} images, "
              f"{len(dataset.class_names)} classes; {os.cpu_count()} cores", flush=True)

        rows = []
        for count in args.workers:
            shutil.rmtree(settings.ZOORANK_CACHE_DIR, ignore_errors=True)
            workers = start_workers(count, env, var_dir)
            try:
                for cache in ("cold", "warm"):
                    seconds, evaluation = timed_evaluation(user, dataset, checkpoints,
                                                           args.timeout)
                    results = evaluation.results.all()
                    done = sum(r.status == "done" for r in results)
                    rows.append((count, cache, seconds, done, len(results), evaluation.status))
                    print(f"  {count} worker(s), {cache} cache: {seconds:.1f} s "
                          f"({evaluation.status})", flush=True)
            finally:
                stop_workers(workers)

        print(f"\n{'workers':>7s} {'cache':>5s} {'wall s':>7s} {'speed-up':>8s} "
              f"{'checkpoints done':>16s} {'status':>7s}")
        base = {cache: s for count, cache, s, *_ in rows if count == args.workers[0]}
        for count, cache, seconds, done, total, status in rows:
            print(f"{count:7d} {cache:>5s} {seconds:7.1f} {base[cache] / seconds:7.2f}x "
                  f"{done:>10d} of {total:<3d} {status:>7s}")
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(args.database_server, database)
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
