"""Fault drills: break something on purpose and check the app heals without a human.

Usage (from the repository root):

    .venv/bin/python drills/run.py              # every drill, embedded default and services
    .venv/bin/python drills/run.py --short      # the CI form: the worker drill, embedded
    .venv/bin/python drills/run.py --backend services --only worker-killed

Each drill runs in a throwaway var/ folder (and, for ``services``, a throwaway PostgreSQL
database and Redis database), starts real Celery worker processes, and prints one line per
check, then ``PASS`` or ``FAIL``. The exit status is non-zero when any drill failed.

Drills:

- ``worker-killed``: a worker is SIGKILLed mid-extraction; a new worker is started; the
  evaluation finishes with no human action, each checkpoint has exactly one result, and a
  second evaluation reuses the features;
- ``time-limit``: a task over its time limit is recorded as failed with a message and the
  other checkpoints finish.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVICES_DB = "postgres://postgres@127.0.0.1:5432/{name}"
SERVICES_REDIS = "redis://127.0.0.1:6379/13"


class Drill:
    def __init__(self, name: str, backend: str):
        self.name, self.backend, self.failures = name, backend, []
        self.workers: list[subprocess.Popen] = []

    def check(self, ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAILED'}] {what}", flush=True)
        if not ok:
            self.failures.append(what)

    def start_worker(self, env: dict, label: str) -> subprocess.Popen:
        log = Path(env["ZOORANK_VAR_DIR"]) / f"worker-{label}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu,cpu", "-P", "solo",
             "-c", "1", "--without-gossip", "--without-mingle", "--loglevel=INFO",
             "-n", f"{label}@%h"],
            cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        process.log = log
        deadline = time.monotonic() + 90
        while "ready." not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {label} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.3)
        self.workers.append(process)
        return process

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        self.workers = []


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def environment(backend: str, var_dir: Path, **extra) -> dict:
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.settings", "ZOORANK_VAR_DIR": str(var_dir),
        "HF_HUB_OFFLINE": "1", "ZOORANK_LOADER_WORKERS": "0",
        # Silence for 6 s means a dead worker; every worker sweeps every 2 s.
        "ZOORANK_STALL_MINUTES": "0.1", "ZOORANK_SWEEP_SECONDS": "2",
    })
    if backend == "services":
        env["DATABASE_URL"] = SERVICES_DB.format(name=var_dir.name.replace("-", "_"))
        env["REDIS_URL"] = SERVICES_REDIS
    env.update({k: str(v) for k, v in extra.items()})
    return env


def prepare(env: dict) -> None:
    """Point this process at the drill's environment, create the database, migrate."""
    os.environ.clear()
    os.environ.update(env)
    if "DATABASE_URL" in env:
        import psycopg2

        name = env["DATABASE_URL"].rsplit("/", 1)[1]
        conn = psycopg2.connect(SERVICES_DB.format(name="postgres"))
        conn.autocommit = True
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
        conn.close()
        import redis

        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def cleanup(env: dict, var_dir: Path) -> None:
    from django.db import connections

    connections.close_all()
    if "DATABASE_URL" in env:
        import psycopg2

        name = env["DATABASE_URL"].rsplit("/", 1)[1]
        conn = psycopg2.connect(SERVICES_DB.format(name="postgres"))
        conn.autocommit = True
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
    shutil.rmtree(var_dir, ignore_errors=True)


def build(n_checkpoints: int, per_class: int, input_size: int, sizes=None, architectures=None):
    """A user, a dataset of random images in 3 classes and tiny checkpoints with weights."""
    from django.contrib.auth import get_user_model

    from tests.builders import image_folder_zip, saved_checkpoint
    from transferability.datasets import create_target_dataset

    user = get_user_model().objects.create_user(f"drill-{uuid.uuid4().hex[:6]}", password="x")
    archive = image_folder_zip(Path(tempfile.mkdtemp()) / "d.zip",
                               {"a": per_class, "b": per_class, "c": per_class}, seed=3, size=48)
    dataset = create_target_dataset(user, "drill", archive)
    sizes = sizes or [input_size] * n_checkpoints
    architectures = architectures or ["test_resnet"] * n_checkpoints
    checkpoints = [saved_checkpoint(f"drill-{i}", architecture, input_size=size, seed=i)
                   for i, (size, architecture) in enumerate(zip(sizes, architectures))]
    return user, dataset, checkpoints


def worker_killed(drill: Drill, env: dict) -> None:
    from transferability.models import CheckpointResult, Evaluation, MetricScore, Status
    from transferability.submission import submit_evaluation

    user, dataset, checkpoints = build(3, 200, 160)
    first = drill.start_worker(env, "first")
    evaluation = submit_evaluation(user, dataset, checkpoints, metrics=["tmi", "logme"])
    victim = wait_for(lambda: CheckpointResult.objects.filter(
        evaluation=evaluation, status=Status.RUNNING, images_done__gt=0,
        images_done__lt=dataset.num_images).first(), 120, "a checkpoint mid-extraction")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    drill.check(True, f"worker killed (SIGKILL) while {victim.checkpoint.name} was at "
                      f"{victim.images_done}/{victim.images_total} images")
    started = time.monotonic()
    drill.start_worker(env, "second")
    try:
        wait_for(lambda: Evaluation.objects.get(pk=evaluation.pk).is_finished, 240,
                 "the evaluation to finish")
    except TimeoutError as exc:
        drill.check(False, str(exc))
        return
    evaluation.refresh_from_db()
    drill.check(evaluation.status == Status.DONE,
                f"evaluation {evaluation.status} {time.monotonic() - started:.0f} s after the "
                f"new worker started, no human action {evaluation.message}")
    rows = list(evaluation.results.all())
    drill.check(len(rows) == len(checkpoints) and all(r.status == Status.DONE for r in rows),
                f"every checkpoint done: {[(r.checkpoint.name, r.status) for r in rows]}")
    killed = CheckpointResult.objects.get(pk=victim.pk)
    drill.check(killed.attempts == 2, f"the interrupted checkpoint was claimed twice "
                                      f"(attempts {killed.attempts})")
    counts = {r.checkpoint.name: MetricScore.objects.filter(result=r).count() for r in rows}
    drill.check(all(c == 2 for c in counts.values()),
                f"exactly one result per checkpoint and metric: {counts}")
    again = submit_evaluation(user, dataset, checkpoints, metrics=["tmi"])
    wait_for(lambda: Evaluation.objects.get(pk=again.pk).is_finished, 120,
             "the second evaluation")
    cached = list(again.results.values_list("features_cached", flat=True))
    drill.check(all(cached), f"a second evaluation reused every checkpoint's features "
                             f"({sum(cached)}/{len(cached)} from the cache)")


def time_limit(drill: Drill, env: dict) -> None:
    from transferability.models import Evaluation, Status
    from transferability.submission import submit_evaluation

    # A ResNet-50 at 224 px (about a minute here), a tiny network at 32 px (seconds);
    # the limit is 20 s.
    user, dataset, checkpoints = build(2, 150, 32, sizes=[224, 32],
                                       architectures=["resnet50", "test_resnet"])
    drill.start_worker(env, "limited")
    evaluation = submit_evaluation(user, dataset, checkpoints, metrics=["tmi"])
    wait_for(lambda: Evaluation.objects.get(pk=evaluation.pk).is_finished, 180,
             "the evaluation to finish")
    evaluation.refresh_from_db()
    by_name = {r.checkpoint.name: r for r in evaluation.results.all()}
    slow, fast = by_name["drill-0"], by_name["drill-1"]
    drill.check(slow.status == Status.FAILED and "time limit" in slow.message,
                f"the slow checkpoint failed with: {slow.message!r}")
    drill.check(fast.status == Status.DONE, f"the fast one finished ({fast.status})")
    drill.check(evaluation.status == Status.DONE, f"the evaluation finished: "
                                                  f"{evaluation.message!r}")


DRILLS = {
    "worker-killed": (worker_killed, {}),
    "time-limit": (time_limit, {"ZOORANK_TASK_TIME_LIMIT_MINUTES": 1 / 3}),
}


def run_one(name: str, backend: str) -> bool:
    """Each drill in its own process: Django is set up once per environment."""
    result = subprocess.run([sys.executable, __file__, "--child", name, "--backend", backend],
                            cwd=ROOT)
    return result.returncode == 0


def child(name: str, backend: str) -> int:
    func, extra = DRILLS[name]
    var_dir = Path(tempfile.mkdtemp(prefix="zoorank-drill-"))
    env = environment(backend, var_dir, **extra)
    drill = Drill(name, backend)
    print(f"{name} on {backend}:", flush=True)
    started = time.monotonic()
    try:
        prepare(env)
        func(drill, env)
    except Exception as exc:  # a drill that cannot run is a failed drill
        drill.check(False, f"{type(exc).__name__}: {exc}")
    finally:
        drill.stop_workers()
        try:
            cleanup(env, var_dir)
        except Exception as exc:
            print(f"  (cleanup: {exc})")
    verdict = "PASS" if not drill.failures else "FAIL"
    print(f"{verdict} {name} on {backend} in {time.monotonic() - started:.0f} s", flush=True)
    return 0 if not drill.failures else 1


def services_up() -> bool:
    try:
        import psycopg2
        import redis

        psycopg2.connect(SERVICES_DB.format(name="postgres")).close()
        redis.Redis.from_url(SERVICES_REDIS).ping()
        return True
    except Exception:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true",
                        help="the worker drill on the embedded default only (CI)")
    parser.add_argument("--backend", choices=["embedded", "services", "both"], default="both")
    parser.add_argument("--only", choices=list(DRILLS), action="append")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.backend)
    names = args.only or (["worker-killed"] if args.short else list(DRILLS))
    backends = ["embedded"] if args.short else (
        ["embedded", "services"] if args.backend == "both" else [args.backend])
    if "services" in backends and not services_up():
        print("PostgreSQL or Redis not reachable: drills on the services skipped")
        backends.remove("services")
    outcomes = [(n, b, run_one(n, b)) for b in backends for n in names]
    print("\n".join(f"{'PASS' if ok else 'FAIL'}  {n} on {b}" for n, b, ok in outcomes))
    return 0 if all(ok for *_, ok in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
