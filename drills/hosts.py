"""Many hosts: two Celery workers with nothing in common but PostgreSQL, Redis and S3.

Meant to be called as ``run_two_hosts(...) -> bool`` (from drills/run.py or a shell:
``.venv/bin/python -c "import drills.hosts as h; raise SystemExit(not h.run_two_hosts())"``).
It starts moto's S3-compatible server, makes a throwaway PostgreSQL database and uses one
Redis database, starts two workers whose var, media and cache folders are their own (as two
machines would have), splits one evaluation of a small zoo between them, stops one, and runs
a second evaluation on the other; it prints one line per check and returns whether all
passed. tests/workers/test_two_hosts.py runs the same with the suite's database.

The helpers (:func:`start_s3_server`, :func:`host_environment`, :func:`start_worker`,
:func:`tasks_by_host`) are shared with that test.
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
DRILL_REDIS = "redis://127.0.0.1:6379/11"
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


def start_worker(env: dict, label: str, log_path: Path, timeout: float = 120) -> subprocess.Popen:
    """A real Celery worker named ``label@<host>`` on queues gpu and cpu, logging to a file."""
    for folder in ("ZOORANK_VAR_DIR", "MEDIA_ROOT", "ZOORANK_CACHE_DIR"):
        Path(env[folder]).mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu,cpu", "-P", "solo",
         "-c", "1", "--without-gossip", "--without-mingle", "--loglevel=INFO",
         "-n", f"{label}@%h"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    process.log_path = log_path
    deadline = time.monotonic() + timeout
    while "ready." not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"worker {label} did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)
    return process


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


def feature_entries(cache_dir: Path, key: str) -> bool:
    return (Path(cache_dir) / "features" / key[:2] / key / "pre_logits.npy").is_file()
