"""Many hosts: two Celery workers with nothing in common but PostgreSQL, Redis and S3.

Meant to be called as ``run_two_hosts(...) -> bool`` (from drills/run.py, or from a shell:
``.venv/bin/python drills/hosts.py``; needs PostgreSQL on 127.0.0.1 and ``redis-server``).
In a process of its own it starts moto's S3-compatible server and a Redis of its own, makes
a throwaway PostgreSQL database, starts two workers whose var, media and cache folders are
their own (as two machines would have), splits one evaluation of a small zoo between them,
stops one, and runs a second evaluation on the other; it prints one line per check and
returns whether all passed. tests/workers/test_two_hosts.py runs the same scenario
(:func:`two_host_scenario`) on the suite's database, with these helpers.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "zoorank", "AWS_SECRET_ACCESS_KEY": "zoorank-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}
DRILL_DATABASE = "postgres://postgres@127.0.0.1:5432/{name}"
ZOO = [("host-resnet", "test_resnet", 1), ("host-vit", "test_vit", 3),
       ("host-convnext", "test_convnext", 2), ("host-resnet-b", "test_resnet", 4)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3_server(log_path: Path, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """moto's standalone S3-compatible server on a free local port: (process, endpoint URL).

    Raises RuntimeError with the server's output when it does not answer in time.
    """
    port = free_port()
    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            return process, endpoint
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"moto's S3 server did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.3)


def start_redis_server(folder: Path, timeout: float = 30) -> tuple[subprocess.Popen, str]:
    """A Redis of the hosts' own (no persistence) on a free port: (process, URL). Nothing
    else on the machine sends tasks to it. Raises RuntimeError when it does not answer."""
    import redis

    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=open(folder / "redis.log", "w"), stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).ping()
            return process, url
        except redis.RedisError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"redis-server did not start:\n"
                               f"{(folder / 'redis.log').read_text()[-2000:]}")
        time.sleep(0.2)


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, **_boto_credentials()).create_bucket(Bucket=bucket)


def _boto_credentials() -> dict:
    return {"aws_access_key_id": S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "region_name": S3_CREDENTIALS["AWS_DEFAULT_REGION"]}


def host_environment(host_dir: Path, *, storage_url: str, endpoint: str, redis_url: str,
                     database_url: str, database_name: str | None = None,
                     settings_module: str = "config.settings") -> dict:
    """The environment of one host's worker: its own var, media and cache folders."""
    env = dict(os.environ)
    env.update(S3_CREDENTIALS)
    env.update({
        "DJANGO_SETTINGS_MODULE": settings_module,
        "ZOORANK_VAR_DIR": str(host_dir / "var"),
        "MEDIA_ROOT": str(host_dir / "media"),
        "ZOORANK_CACHE_DIR": str(host_dir / "cache"),
        "ZOORANK_STORAGE_URL": storage_url,
        "AWS_ENDPOINT_URL": endpoint,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HF_HUB_OFFLINE": "1",
        "ZOORANK_LOADER_WORKERS": "0",
        "ZOORANK_SWEEP_SECONDS": "86400",  # no sweep: only the two hosts' own work
    })
    if database_name:
        env["ZOORANK_DATABASE_NAME"] = database_name
    else:
        env.pop("ZOORANK_DATABASE_NAME", None)
    return env


def start_worker(env: dict, label: str, log_path: Path, timeout: float = 120,
                 wait: bool = True) -> subprocess.Popen:
    """A real Celery worker named ``label@<host>`` on queues gpu and cpu, logging to a file."""
    for folder in ("ZOORANK_VAR_DIR", "MEDIA_ROOT", "ZOORANK_CACHE_DIR"):
        Path(env[folder]).mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu,cpu", "-P", "solo",
         "-c", "1", "--without-gossip", "--without-mingle", "--loglevel=INFO",
         "-n", f"{label}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    process.log_path, process.label = log_path, label
    if wait:
        wait_ready(process, timeout)
    return process


def wait_ready(process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while "ready." not in process.log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"worker {process.label} did not start:\n"
                               f"{process.log_path.read_text()[-3000:]}")
        time.sleep(0.3)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tasks_by_host(log_paths: dict[str, Path]) -> dict[str, set[str]]:
    """Celery task ids each worker finished, read from its log."""
    done = re.compile(r"Task [\w.]+\[([0-9a-f-]{36})\] succeeded")
    return {host: set(done.findall(path.read_text())) for host, path in log_paths.items()}


def purge(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for queue in ("gpu", "cpu"):
        client.delete(queue)


def sending_to(redis_url: str, sent: list):
    """A ``send_task`` that sends through the hosts' broker and records (task id, name, args)."""
    from celery import Celery

    app = Celery("zoorank-hosts", broker=redis_url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"],
                    broker_connection_retry_on_startup=True)

    def send_task(name, args=(), queue="gpu", **kwargs):
        result = app.send_task(name, args=args, queue=queue, **kwargs)
        sent.append((result.id, name, tuple(args)))
        return result

    return send_task


def tiny_stored_checkpoint(name: str, architecture: str, seed: int):
    """A catalog entry whose weights (random, seeded) are uploaded to the default storage."""
    import timm
    import torch
    from django.core.files import File
    from safetensors.torch import save_file

    from zoo.models import Checkpoint
    from zoo.weights import sha256_of_path

    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, num_classes=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        checkpoint = Checkpoint(
            name=name, architecture=architecture, family=architecture.split("_")[0],
            weights_source=Checkpoint.WeightsSource.UPLOAD, weights_sha256=sha256_of_path(path),
            input_size=[3, 32, 32], interpolation="bilinear", crop_pct=1.0,
            mean=[0.5] * 3, std=[0.25] * 3, num_classes=0, source_classes=[])
        with open(path, "rb") as f:
            checkpoint.weights_file.save(path.name, File(f), save=False)
        checkpoint.save()
    return checkpoint


def colour_dataset(owner, tmp_dir: Path, name: str = "colours", seed: int = 11):
    """A small three-class dataset, stored by this process (the web host)."""
    from tests.builders import image_folder_zip
    from transferability.datasets import create_target_dataset

    archive = image_folder_zip(tmp_dir / f"{name}.zip", {"red": 10, "green": 10, "blue": 10},
                               seed=seed)
    return create_target_dataset(owner, name, archive)


def evaluate(owner, dataset, checkpoints, metrics=("tmi", "logme"), timeout: float = 400):
    """Submit one evaluation as ``owner`` would and wait for it to finish; return it."""
    from transferability.submission import submit_evaluation

    evaluation = submit_evaluation(owner, dataset, checkpoints, list(metrics))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        evaluation.refresh_from_db()
        if evaluation.status in ("done", "failed"):
            return evaluation
        time.sleep(0.5)
    raise TimeoutError(f"evaluation {evaluation.pk} did not finish in {timeout:.0f} s "
                       f"(status {evaluation.status})")


def has_features(cache_dir: Path, key: str) -> bool:
    """Whether this host's cache holds the pre-logits features under ``key``."""
    return (Path(cache_dir) / "features" / key[:2] / key / "pre_logits.npy").is_file()


def two_host_scenario(owner, dataset, checkpoints, workers: dict, sent: list, check) -> None:
    """One evaluation split between the two ``workers`` (label: process, whose env names its
    cache), then, with the first stopped, a second one on the other that extracts nothing.

    ``sent``: (task id, name, args) of every task this process sends; ``check(ok, what)``
    records one check.
    """
    from transferability.models import Status

    (label_a, worker_a), (label_b, worker_b) = workers.items()
    caches_of = {label: Path(w.env["ZOORANK_CACHE_DIR"]) for label, w in workers.items()}

    first = evaluate(owner, dataset, checkpoints)
    results = list(first.results.select_related("checkpoint"))
    check(first.status == Status.DONE and all(r.status == Status.DONE for r in results),
          "the first evaluation is done with every checkpoint scored"
          + (f" ({first.message})" if first.message else ""))
    by_result = {args[0]: task_id for task_id, name, args in sent
                 if name.endswith("evaluate_checkpoint")}
    finished = tasks_by_host({label: w.log_path for label, w in workers.items()})
    host_of = {}
    for r in results:
        hosts = [label for label, ids in finished.items() if by_result.get(r.pk) in ids]
        check(len(hosts) == 1 and r.attempts == 1,
              f"{r.checkpoint.name} was scored once, by {', '.join(hosts) or 'no host'} "
              f"(attempts {r.attempts})")
        host_of[r.pk] = hosts[0] if hosts else None
    counts = {label: sum(1 for h in host_of.values() if h == label) for label in workers}
    check(all(counts.values()), f"both hosts scored checkpoints: {counts}")
    check(all(not r.features_cached for r in results), "the first evaluation extracted features")
    keys = {r.pk: r.feature_key for r in results}
    for label, cache in caches_of.items():
        check((cache / "datasets" / dataset.store_dir / "manifest.json").is_file(),
              f"{label} fetched the dataset from the store into its own cache")
        mine = [r for r in results if host_of[r.pk] == label]
        check(all(has_features(cache, keys[r.pk]) for r in mine),
              f"{label} holds the features it extracted")
        check(all(any((cache / "weights" / r.checkpoint.weights_sha256).glob("*.safetensors"))
                  for r in mine), f"{label} fetched the weights it used from the store")

    stop(worker_a)
    scores = {r.checkpoint_id: r.scores.get(metric="tmi", layer="pre_logits").value
              for r in results}
    second = evaluate(owner, dataset, checkpoints, metrics=("tmi",))
    again = list(second.results.select_related("checkpoint"))
    check(second.status == Status.DONE and all(r.status == Status.DONE for r in again),
          f"the second evaluation is done on {label_b} alone"
          + (f" ({second.message})" if second.message else ""))
    check(all(r.features_cached and r.extraction_seconds == 0 for r in again),
          "the second evaluation extracted nothing: every checkpoint's features were cached")
    from_a = [r for r in results if host_of[r.pk] == label_a]
    check(bool(from_a) and all(has_features(caches_of[label_b], keys[r.pk]) for r in from_a),
          f"{label_b} fetched the {len(from_a)} checkpoints' features {label_a} stored")
    check(all(abs(r.scores.get(metric="tmi", layer="pre_logits").value
                  - scores[r.checkpoint_id]) < 1e-9 for r in again),
          "TMI is the same from the shared features")


def run_two_hosts(database_url: str = DRILL_DATABASE, redis_url: str | None = None,
                  keep: bool = False) -> bool:
    """The drill: a throwaway database ``database_url`` (``{name}`` is filled in), a Redis
    of its own (``redis-server`` on a free port; or the Redis database ``redis_url``, which
    it empties), moto's S3 server and two workers. Prints each check; returns True when
    all passed. ``keep`` leaves the folder with the logs.

    It runs in a process of its own, which is the web host: the caller's Django settings
    (if any) are not the web host's.
    """
    command = [sys.executable, str(Path(__file__).resolve()), "--database-url", database_url]
    command += (["--redis-url", redis_url] if redis_url else []) + (["--keep"] if keep else [])
    return subprocess.run(command, cwd=ROOT).returncode == 0


def _run_here(database_url: str, redis_url: str | None, keep: bool) -> bool:
    import shutil

    base = Path(tempfile.mkdtemp(prefix="zoorank-hosts-"))
    name = f"zoorank_hosts_{uuid.uuid4().hex[:10]}"
    url = database_url.format(name=name)
    failures, processes = [], []

    def check(ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAILED'}] {what}", flush=True)
        if not ok:
            failures.append(what)

    print(f"two hosts ({base})", flush=True)
    s3, endpoint = start_s3_server(base / "moto.log")
    processes.append(s3)
    created = False
    try:
        import psycopg2
        import redis

        admin = psycopg2.connect(database_url.format(name="postgres"))
        admin.autocommit = True
        admin.cursor().execute(f'CREATE DATABASE "{name}"')
        admin.close()
        created = True
        if redis_url:
            redis.Redis.from_url(redis_url).flushdb()
        else:
            own_redis, redis_url = start_redis_server(base)
            processes.append(own_redis)
        bucket = f"zoorank-{uuid.uuid4().hex[:12]}"
        create_bucket(endpoint, bucket)
        storage_url = f"s3://{bucket}/zoorank"

        def env_of(host: str) -> dict:
            return host_environment(base / host, storage_url=storage_url, endpoint=endpoint,
                                    redis_url=redis_url, database_url=url)

        os.environ.clear()
        os.environ.update(env_of("web"))  # this process is the web host
        for folder in ("ZOORANK_VAR_DIR", "MEDIA_ROOT", "ZOORANK_CACHE_DIR"):
            Path(os.environ[folder]).mkdir(parents=True, exist_ok=True)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        owner = get_user_model().objects.create_user("hosts", password="hosts-password-1")
        dataset = colour_dataset(owner, base)
        checkpoints = [tiny_stored_checkpoint(n, a, seed) for n, a, seed in ZOO]
        sent: list = []
        from config.celery import app

        app.send_task = sending_to(redis_url, sent)
        workers = {}
        for label in ("host-a", "host-b"):
            worker = start_worker(env_of(label), label, base / f"{label}.log", wait=False)
            worker.env = env_of(label)
            workers[label] = worker
            processes.append(worker)
        for worker in workers.values():
            wait_ready(worker)
        two_host_scenario(owner, dataset, checkpoints, workers, sent, check)
    except Exception as exc:  # the drill reports, it does not raise
        check(False, f"the drill ran to the end ({type(exc).__name__}: {exc})")
    finally:
        for process in reversed(processes):
            stop(process)
        if created:
            try:
                from django.db import connections

                connections.close_all()
            except Exception:
                pass
            import psycopg2

            admin = psycopg2.connect(database_url.format(name="postgres"))
            admin.autocommit = True
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
        if not keep and not failures:
            shutil.rmtree(base, ignore_errors=True)
    print("PASS" if not failures else f"FAIL ({len(failures)} checks)", flush=True)
    return not failures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Two hosts sharing PostgreSQL, Redis and S3.")
    parser.add_argument("--database-url", default=DRILL_DATABASE,
                        help="PostgreSQL URL with {name} for the throwaway database")
    parser.add_argument("--redis-url", help="a Redis database to empty (default: a "
                                            "redis-server of the drill's own)")
    parser.add_argument("--keep", action="store_true", help="keep the folder with the logs")
    options = parser.parse_args()
    sys.exit(0 if _run_here(options.database_url, options.redis_url, options.keep) else 1)
