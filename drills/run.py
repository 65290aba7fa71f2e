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
  other checkpoints finish;
- ``out-of-memory``: device memory is made scarce (``ZOORANK_SIMULATED_DEVICE_MEMORY_MB``):
  a checkpoint backs off to smaller batches and finishes, one that cannot run even one image
  at a time fails with that message, the others finish;
- ``web-restart``: the web process is killed in the middle of an upload (nothing is kept)
  and again just after an upload was accepted; a new web process answers and the worker
  finishes the ingest;
- ``fair-queue``: one user submits six checkpoints, then another user one; the second
  user's checkpoint runs after at most ``ZOORANK_USER_IN_FLIGHT`` of the first user's;
- ``redis-restart`` (services only): the broker (a Redis of the drill's own, without
  persistence, so queued messages are lost) is restarted mid-evaluation;
- ``postgres-restart`` (services only): the database (a PostgreSQL cluster of the drill's
  own) is restarted mid-evaluation, breaking every connection;
- ``storage-quota``: a 300-file zip bomb of small entries (about 900:1 in all) is refused
  by the worker, an upload over the user's storage quota is refused before it is stored,
  nothing of either is left on disk, and a dataset that fits is taken;
- ``login-throttling``: wrong passwords lock a username and an address (the right password
  is refused too, with the minutes to wait) while another user logs in from elsewhere, and
  wrong API tokens lock their address;
- ``slow-clients``: drills/slow_clients.py, 60 clients sending their headers slowly, against
  gunicorn alone and through nginx (deploy/nginx/), while another user's dashboard is timed;
- ``two-hosts`` (services only): drills/hosts.py, two workers that share only PostgreSQL,
  Redis and an S3-compatible store split one evaluation and reuse each other's features;
- ``hub-faults``: hub checkpoints fetched by real workers from a hub on loopback
  (tests/hub.py, through HF_ENDPOINT): the worker is SIGKILLed in the middle of a download,
  another repository answers 500 twice, a third is not on the hub; a new worker finishes the
  evaluation with no human action, only whole files checked against their sha256 in the
  cache, the missing checkpoint failed with its id and the others ranked.
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

    def start_web(self, env: dict, port: int) -> subprocess.Popen:
        """A web process as production runs it (gunicorn, config.wsgi)."""
        log = Path(env["ZOORANK_VAR_DIR"]) / "web.log"
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "--bind",
             f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"],
            cwd=ROOT, env=env, stdout=open(log, "a"), stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: killed whole, as a crash would
        import urllib.request

        wait_for(lambda: process.poll() is None and _answers(lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{port}/accounts/login/", timeout=5)), 60, "the web process")
        self.workers.append(process)
        return process

    @staticmethod
    def kill_web(process: subprocess.Popen) -> None:
        """SIGKILL the web server and its worker processes at once."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        wait_for(lambda: subprocess.run(["pgrep", "-g", str(process.pid)],
                                        capture_output=True).returncode != 0,
                 30, "the web processes to be gone")

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


def admin_url(database_url: str) -> str:
    return database_url.rsplit("/", 1)[0] + "/postgres"


def prepare(env: dict) -> None:
    """Point this process at the drill's environment, create the database, migrate."""
    os.environ.clear()
    os.environ.update(env)
    if "DATABASE_URL" in env:
        import psycopg2

        name = env["DATABASE_URL"].rsplit("/", 1)[1]
        conn = psycopg2.connect(admin_url(env["DATABASE_URL"]))
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
        try:
            conn = psycopg2.connect(admin_url(env["DATABASE_URL"]))
        except psycopg2.OperationalError:
            pass  # the drill's own cluster, already stopped
        else:
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
    from transferability.models import CheckpointResult, Evaluation
    from transferability.submission import submit_evaluation

    user, dataset, checkpoints = build(3, 200, 160)
    first = drill.start_worker(env, "first")
    evaluation = submit_evaluation(user, dataset, checkpoints, metrics=["tmi", "logme"])
    victim = mid_extraction(evaluation, dataset)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    drill.check(True, f"worker killed (SIGKILL) while {victim.checkpoint.name} was at "
                      f"{victim.images_done}/{victim.images_total} images")
    started = time.monotonic()
    drill.start_worker(env, "second")
    if not finished_with_one_result_each(drill, evaluation, checkpoints, 2, started,
                                         timeout=240):
        return
    killed = CheckpointResult.objects.get(pk=victim.pk)
    drill.check(killed.attempts == 2, f"the interrupted checkpoint was claimed twice "
                                      f"(attempts {killed.attempts})")
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


# Services of the drill's own, to restart without disturbing anybody else's -----------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    """A Redis without persistence on a port of its own: a restart loses every message."""

    def __init__(self, folder: Path):
        self.port, self.folder, self.process = free_port(), folder, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=open(self.folder / "redis.log", "a"), stderr=subprocess.STDOUT)
        import redis

        wait_for(lambda: _answers(lambda: redis.Redis.from_url(self.url).ping()), 30,
                 "Redis to answer")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


class OwnPostgres:
    """A PostgreSQL cluster in a folder of its own, on a port of its own."""

    def __init__(self, folder: Path):
        self.port, self.folder = free_port(), folder
        self.data = folder / "data"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{{name}}"
        bin_dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        self.bin = bin_dirs[-1] if bin_dirs else Path(shutil.which("pg_ctl") or "pg_ctl").parent
        # The server refuses to run as root: as the postgres user then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(folder, "postgres")

    def _run(self, *args) -> None:
        subprocess.run(self.as_user + [str(self.bin / args[0]), *args[1:]], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "postgres.log"),
                  "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 "
                        f"-c unix_socket_directories={self.folder} -c fsync=off", "-w", "start")

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            pass


def _answers(probe) -> bool:
    try:
        probe()
        return True
    except Exception:
        return False


def mid_extraction(evaluation, dataset):
    from transferability.models import CheckpointResult, Status

    return wait_for(lambda: CheckpointResult.objects.filter(
        evaluation=evaluation, status=Status.RUNNING, images_done__gt=0,
        images_done__lt=dataset.num_images).first(), 180, "a checkpoint mid-extraction")


def finished_with_one_result_each(drill: Drill, evaluation, checkpoints, metrics: int,
                                  started: float, timeout: float = 300) -> bool:
    """Wait for the evaluation; check it is done with one result per checkpoint and metric.
    False when it did not finish in time."""
    from django.db import close_old_connections

    from transferability.models import Evaluation, MetricScore, Status

    def finished():
        close_old_connections()  # a connection broken by a restart is replaced
        try:
            return Evaluation.objects.get(pk=evaluation.pk).is_finished
        except Exception:
            return False

    try:
        wait_for(finished, timeout, "the evaluation to finish")
    except TimeoutError as exc:
        drill.check(False, str(exc))
        return False
    evaluation.refresh_from_db()
    drill.check(evaluation.status == Status.DONE,
                f"evaluation {evaluation.status} {time.monotonic() - started:.0f} s later, no "
                f"human action {evaluation.message}")
    rows = list(evaluation.results.select_related("checkpoint"))
    drill.check(len(rows) == len(checkpoints) and all(r.status == Status.DONE for r in rows),
                f"every checkpoint done: {[(r.checkpoint.name, r.status, r.attempts) for r in rows]}")
    counts = {r.checkpoint.name: MetricScore.objects.filter(result=r).count() for r in rows}
    drill.check(all(c == metrics for c in counts.values()),
                f"exactly one result per checkpoint and metric: {counts}")
    return True


def restart_mid_evaluation(drill: Drill, env: dict, restart, what: str) -> None:
    """An evaluation of three checkpoints; ``restart()`` while one is mid-extraction; the
    evaluation must finish with no human action, one result per checkpoint and metric."""
    from transferability.submission import submit_evaluation

    user, dataset, checkpoints = build(3, 200, 160)
    drill.start_worker(env, "worker")
    evaluation = submit_evaluation(user, dataset, checkpoints, metrics=["tmi", "logme"])
    victim = mid_extraction(evaluation, dataset)
    restart()
    started = time.monotonic()
    drill.check(True, f"{what} while {victim.checkpoint.name} was at {victim.images_done}/"
                      f"{victim.images_total} images")
    finished_with_one_result_each(drill, evaluation, checkpoints, 2, started)


def redis_restart(drill: Drill, env: dict) -> None:
    def restart():
        drill.redis.stop()
        time.sleep(3)
        drill.redis.start()

    restart_mid_evaluation(drill, env, restart,
                           "Redis stopped and started again (queued messages lost)")


def postgres_restart(drill: Drill, env: dict) -> None:
    from django.db import connections

    def restart():
        connections.close_all()
        drill.postgres.restart()

    restart_mid_evaluation(drill, env, restart,
                           "PostgreSQL restarted (every connection broken)")


def out_of_memory(drill: Drill, env: dict) -> None:
    from transferability.models import Evaluation, Status
    from transferability.submission import submit_evaluation

    # With 1 MiB of "device memory" for the input batch: 32 px fits 64 images at a time,
    # 224 px one image at a time, 512 px not even one.
    user, dataset, checkpoints = build(3, 40, 32, sizes=[32, 224, 512])
    worker = drill.start_worker(env, "scarce")
    evaluation = submit_evaluation(user, dataset, checkpoints, metrics=["tmi"])
    wait_for(lambda: Evaluation.objects.get(pk=evaluation.pk).is_finished, 300,
             "the evaluation to finish")
    evaluation.refresh_from_db()
    by_size = {r.checkpoint.input_size[-1]: r for r in evaluation.results.select_related(
        "checkpoint")}
    log = worker.log.read_text()
    drill.check(by_size[32].status == Status.DONE, f"32 px: {by_size[32].status}, no back-off")
    drill.check(by_size[224].status == Status.DONE and "batch size now 1" in log,
                f"224 px: {by_size[224].status} after backing off to one image at a time "
                f"({log.count('out of memory; batch size now')} back-offs in the worker log)")
    drill.check(by_size[512].status == Status.FAILED
                and "out of device memory even one image at a time" in by_size[512].message,
                f"512 px failed with: {by_size[512].message[:120]!r}")
    drill.check(evaluation.status == Status.DONE,
                f"the evaluation finished: {evaluation.message!r}")


def fair_queue(drill: Drill, env: dict) -> None:
    from django.contrib.auth import get_user_model

    from tests.builders import image_folder_zip
    from transferability.datasets import create_target_dataset
    from transferability.models import CheckpointResult, Evaluation
    from transferability.submission import submit_evaluation

    greedy, dataset, checkpoints = build(6, 30, 32)
    modest = get_user_model().objects.create_user("drill-modest", password="x")
    archive = image_folder_zip(Path(tempfile.mkdtemp()) / "m.zip", {"a": 30, "b": 30}, seed=5)
    theirs = create_target_dataset(modest, "theirs", archive)
    drill.start_worker(env, "shared")
    many = submit_evaluation(greedy, dataset, checkpoints, metrics=["tmi"])
    one = submit_evaluation(modest, theirs, checkpoints[:1], metrics=["tmi"])
    for evaluation in (many, one):
        wait_for(lambda: Evaluation.objects.get(pk=evaluation.pk).is_finished, 300,
                 "the evaluations to finish")
    order = list(CheckpointResult.objects.filter(evaluation__in=[many, one])
                 .order_by("started_at").values_list("evaluation__owner__username", flat=True))
    position = order.index("drill-modest") + 1
    cap = int(env["ZOORANK_USER_IN_FLIGHT"])
    drill.check(position <= cap + 1,
                f"the second user's checkpoint started at place {position} of {len(order)}, after "
                f"{position - 1} of the first user's six (cap {cap}); submitted after all six")
    drill.check(all(Evaluation.objects.get(pk=e.pk).status == "done" for e in (many, one)),
                "both evaluations done")


def web_restart(drill: Drill, env: dict) -> None:
    import http.client

    import requests
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from tests.builders import image_folder_zip
    from transferability.models import TargetDataset

    user = get_user_model().objects.create_user("drill-web", password="x")
    token = Token.objects.create(user=user).key
    archive = image_folder_zip(Path(tempfile.mkdtemp()) / "big.zip",
                               {f"c{i}": 600 for i in range(5)}, seed=9, size=48)
    drill.start_worker(env, "ingester")
    port = free_port()
    web = drill.start_web(env, port)
    media = Path(env["ZOORANK_VAR_DIR"]) / "media"
    partial_dir = Path(env["ZOORANK_VAR_DIR"]) / "tmp" / "uploads"

    # 1. Killed while the archive is still arriving.
    body, boundary = multipart_body(archive.read_bytes(), "half")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/api/datasets/")
    conn.putheader("Authorization", f"Token {token}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[:len(body) // 2])
    wait_for(lambda: any(partial_dir.rglob("*.upload*")), 30, "the upload to reach the disk")
    drill.kill_web(web)
    left = [str(p.relative_to(partial_dir)) for p in partial_dir.rglob("*.upload*")]
    drill.check(True, f"web process killed (SIGKILL) with half of a {len(body) / 2**20:.1f} MiB "
                      f"upload received; it left {left}")
    web = drill.start_web(env, port)
    drill.check(not any(partial_dir.rglob("*.upload*")) and not TargetDataset.objects.exists()
                and not any((media / "uploads").glob("*")),
                "after the restart: no dataset row, no stored upload, no partial file")

    # 2. Killed just after the upload was accepted: the worker ingests it regardless.
    with open(archive, "rb") as f:
        response = requests.post(f"http://127.0.0.1:{port}/api/datasets/",
                                 headers={"Authorization": f"Token {token}"},
                                 data={"name": "whole"}, files={"file": f}, timeout=60)
    drill.check(response.status_code == 202 and response.json()["state"] == "ingesting",
                f"upload accepted: {response.status_code} {response.json().get('state')}")
    drill.kill_web(web)
    started = time.monotonic()
    web = drill.start_web(env, port)
    url = f"http://127.0.0.1:{port}/api/datasets/{response.json()['id']}/"
    final = wait_for(lambda: (body := requests.get(url, headers={
        "Authorization": f"Token {token}"}, timeout=10).json())["state"] != "ingesting" and body,
        300, "the ingest to end")
    drill.check(final["state"] == "ready" and final["num_images"] == 3000,
                f"the new web process reports the dataset {final['state']} with "
                f"{final['num_images']} images, {time.monotonic() - started:.0f} s after the "
                f"web restart")
    drill.check(not any((media / "uploads").glob("*")), "the stored upload was removed once "
                                                        "ingested")


def multipart_body(data: bytes, name: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}.zip\"\r\nContent-Type: application/zip\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary


def storage_quota(drill: Drill, env: dict) -> None:
    """A small-file zip bomb and uploads over the storage quota, through the API of a real
    web process and worker: refused with the reason, nothing left on disk, and a dataset
    that fits is still taken."""
    import io
    import zipfile

    import numpy as np
    import requests
    from django.contrib.auth import get_user_model
    from PIL import Image
    from rest_framework.authtoken.models import Token

    from tests.builders import image_folder_zip
    from transferability.models import TargetDataset

    user = get_user_model().objects.create_user("drill-quota", password="x")
    token = Token.objects.create(user=user).key
    drill.start_worker(env, "ingester")
    port = free_port()
    drill.start_web(env, port)
    media = Path(env["ZOORANK_VAR_DIR"]) / "media"
    api = f"http://127.0.0.1:{port}/api/datasets/"
    headers = {"Authorization": f"Token {token}"}

    def kept() -> list[str]:
        return [str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()]

    def upload(data: bytes, name: str):
        return requests.post(api, headers=headers, data={"name": name},
                             files={"file": (f"{name}.zip", data)}, timeout=120)

    # 1. 300 all-zero BMPs of just under 1 MiB: no entry big enough for the per-entry check.
    zero = io.BytesIO()
    Image.fromarray(np.zeros((590, 590, 3), np.uint8)).save(zero, format="BMP")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(300):
            zf.writestr(f"{'ab'[i % 2]}/{i:03d}.bmp", zero.getvalue())
    bomb = bomb.getvalue()
    declared = 300 * len(zero.getvalue())
    response = upload(bomb, "bomb")
    drill.check(response.status_code == 202, f"a {len(bomb) / 1024:.0f} KiB archive that "
                f"declares {declared / 2**20:.0f} MiB accepted for ingest: {response.status_code}")
    url = f"{api}{response.json()['id']}/"
    final = wait_for(lambda: (body := requests.get(url, headers=headers, timeout=10).json())[
        "state"] != "ingesting" and body, 120, "the bomb's ingest to end")
    drill.check(final["state"] == "refused" and "zip bomb" in final["message"],
                f"the worker refused it: {final['state']}: {final['message']}")
    drill.check(kept() == [], f"nothing of it left under the store: {kept()}")

    # 2. Over the quota: refused before the upload is stored.
    rng = np.random.default_rng(0)
    noise = io.BytesIO()
    with zipfile.ZipFile(noise, "w") as zf:
        for i in range(8):
            png = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (400, 400, 3), np.uint8)).save(png, "PNG")
            zf.writestr(f"{'ab'[i % 2]}/{i}.png", png.getvalue())
    response = upload(noise.getvalue(), "too-big")
    detail = response.json().get("detail", "")
    drill.check(response.status_code == 400 and "storage quota" in detail,
                f"a {len(noise.getvalue()) / 2**20:.1f} MiB upload over the "
                f"{float(env['ZOORANK_USER_QUOTA_GB']) * 1024:.0f} MiB quota: "
                f"{response.status_code} {detail}")
    drill.check(kept() == [] and TargetDataset.objects.filter(name="too-big").count() == 0,
                f"nothing stored, no row: {kept()}")

    # 3. A dataset that fits is taken, and counted.
    small = image_folder_zip(Path(tempfile.mkdtemp()) / "small.zip", {"a": 20, "b": 20},
                             seed=1, size=32)
    response = upload(small.read_bytes(), "small")
    url = f"{api}{response.json()['id']}/"
    final = wait_for(lambda: (body := requests.get(url, headers=headers, timeout=10).json())[
        "state"] != "ingesting" and body, 120, "the small dataset's ingest to end")
    drill.check(final["state"] == "ready" and final["stored_bytes"] > 0,
                f"a dataset within the quota: {final['state']}, {final['stored_bytes']:,} "
                f"bytes stored")


def login_throttling(drill: Drill, env: dict) -> None:
    """Wrong passwords to a real web process over HTTP: the username and the address are
    locked, the right password is refused with the minutes to wait, while another user from
    another address logs in; wrong API tokens lock their address (429, Retry-After). The web
    process trusts loopback as its proxy, so X-Forwarded-For stands for the client's address.
    13 requests."""
    import re

    import requests
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    users = get_user_model().objects
    users.create_user("drill-alice", password="alice-password-1")
    bob = users.create_user("drill-bob", password="bob-password-1")
    token = Token.objects.create(user=bob).key
    port = free_port()
    drill.start_web(env, port)
    login = f"http://127.0.0.1:{port}/accounts/login/"
    attacker, home = "203.0.113.7", "198.51.100.20"
    failures = int(env["ZOORANK_LOGIN_FAILURES"])
    session = requests.Session()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"',
                     session.get(login, timeout=10).text).group(1)

    def log_in(username: str, password: str, address: str):
        return session.post(login, data={"csrfmiddlewaretoken": csrf, "username": username,
                                         "password": password},
                            headers={"X-Forwarded-For": address}, allow_redirects=False,
                            timeout=10)

    def told_when(response) -> str | None:
        said = re.search(r"Too many failed login attempts\. Try again in \d+ minutes?\.",
                         response.text)
        return said.group(0) if said else None

    codes = [log_in("drill-alice", "wrong-password", attacker).status_code
             for _ in range(failures)]
    drill.check(codes == [200] * (failures - 1) + [429],
                f"{failures} wrong passwords for drill-alice from {attacker}: {codes}")
    right = log_in("drill-alice", "alice-password-1", attacker)
    drill.check(right.status_code == 429 and told_when(right) and "<h1>Log in</h1>" in right.text
                and "sessionid" not in session.cookies,
                f"then her right password: {right.status_code}, not logged in, on the login "
                f"page: {told_when(right)!r} (Retry-After {right.headers.get('Retry-After')} s)")
    elsewhere = log_in("drill-alice", "alice-password-1", home)
    drill.check(elsewhere.status_code == 429,
                f"her right password from {home}: {elsewhere.status_code} (the username is locked)")
    same_address = log_in("drill-bob", "bob-password-1", attacker)
    drill.check(same_address.status_code == 429 and told_when(same_address),
                f"drill-bob's right password from {attacker}: {same_address.status_code} (the "
                f"address is locked)")
    free = log_in("drill-bob", "bob-password-1", home)
    drill.check(free.status_code == 302 and "sessionid" in session.cookies,
                f"drill-bob from {home}: {free.status_code}, logged in")

    api = f"http://127.0.0.1:{port}/api/"
    limit = int(env["ZOORANK_TOKEN_FAILURES"])
    wrong = [requests.get(api, headers={"Authorization": "Token " + "0" * 40,
                                        "X-Forwarded-For": attacker}, timeout=10).status_code
             for _ in range(limit)]
    locked = requests.get(api, headers={"Authorization": f"Token {token}",
                                        "X-Forwarded-For": attacker}, timeout=10)
    drill.check(wrong == [401] * limit and locked.status_code == 429
                and int(locked.headers.get("Retry-After", 0)) > 0,
                f"{limit} wrong tokens from {attacker}: {wrong}; then the right one from there: "
                f"{locked.status_code}, Retry-After {locked.headers.get('Retry-After')} s")
    other = requests.get(api, headers={"Authorization": f"Token {token}",
                                       "X-Forwarded-For": home}, timeout=10)
    drill.check(other.status_code == 200, f"the right token from {home}: {other.status_code}")


def slow_clients(drill: Drill, env: dict) -> None:
    from drills.slow_clients import slow_clients as run

    run(drill, env, free_port)


def hub_faults(drill: Drill, env: dict) -> None:
    import hashlib

    from tests.builders import image_folder_zip
    from tests.hub import LocalHub
    from transferability.datasets import create_target_dataset
    from transferability.models import CheckpointResult, Evaluation, Status
    from transferability.submission import submit_evaluation
    from zoo.timm_catalog import import_catalog

    from django.contrib.auth import get_user_model

    names = ["test_convnext.r160_in1k", "test_efficientnet.r160_in1k"]
    hub = LocalHub(hang_seconds=2, bytes_per_second=120_000).start()
    try:
        for seed, name in enumerate(names):
            hub.add_timm_model(f"timm/{name}", name.partition(".")[0], seed=seed)
        cache = Path(env["ZOORANK_VAR_DIR"]) / "hf-home" / "hub"
        env.update({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.endpoint,
                    "HF_HOME": str(cache.parent), "HF_HUB_CACHE": str(cache),
                    "ZOORANK_HUB_TRIES": "3", "ZOORANK_HUB_BACKOFF_SECONDS": "0.5"})
        env.pop("HF_TOKEN", None)
        import_catalog(names=names, jobs=1, enable_new=True)
        from zoo.models import Checkpoint

        ghost = Checkpoint.objects.create(
            name="ghost", architecture="test_resnet", hub_id="acme/ghost",
            input_size=[3, 64, 64], mean=[0.5] * 3, std=[0.5] * 3, num_classes=1000)
        checkpoints = list(Checkpoint.objects.filter(name__in=names).order_by("name")) + [ghost]
        user = get_user_model().objects.create_user("drill-hub", password="x")
        archive = image_folder_zip(Path(tempfile.mkdtemp()) / "d.zip",
                                   {"a": 20, "b": 20, "c": 20}, seed=3, size=48)
        dataset = create_target_dataset(user, "drill", archive)
        hub.fail("timm/test_efficientnet.r160_in1k", 500, times=2, method="HEAD")

        first = drill.start_worker(env, "first")
        evaluation = submit_evaluation(user, dataset, checkpoints, metrics=["tmi", "logme"])
        def mid_download():
            for row in CheckpointResult.objects.filter(evaluation=evaluation,
                                                       message__startswith="downloading "):
                done, _, total = row.message.removeprefix("downloading ").partition(" of ")
                if 0 < float(done) < float(total.removesuffix(" MB") or 0):
                    return row
            return None

        victim = wait_for(mid_download, 120, "a download under way")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        partial = [p for p in cache.rglob("*.incomplete")]
        drill.check(len(partial) >= 1, f"worker killed (SIGKILL) while "
                                       f"{victim.checkpoint.name} was {victim.message!r}; "
                                       f"partial files it left in its cache: {len(partial)}")
        started = time.monotonic()
        hub.bytes_per_second = None
        drill.start_worker(env, "second")
        wait_for(lambda: Evaluation.objects.get(pk=evaluation.pk).is_finished, 240,
                 "the evaluation to finish")
        evaluation.refresh_from_db()
        rows = {r.checkpoint.name: r for r in evaluation.results.select_related("checkpoint")}
        drill.check(evaluation.status == Status.DONE,
                    f"evaluation {evaluation.status} {time.monotonic() - started:.0f} s after "
                    f"the new worker started, no human action: {evaluation.message!r}")
        for name in names:
            row, checkpoint = rows[name], Checkpoint.objects.get(name=name)
            want = hashlib.sha256(hub.repos[f"timm/{name}"].files["model.safetensors"]) \
                .hexdigest()
            drill.check(row.status == Status.DONE and row.message == "",
                        f"{name} {row.status} (attempts {row.attempts}) {row.message!r}")
            drill.check(checkpoint.hub_files == {"model.safetensors": want},
                        f"{name}: sha256 recorded {want[:12]}…")
        drill.check(rows["ghost"].status == Status.FAILED
                    and "not on the hub: acme/ghost" in rows["ghost"].message,
                    f"ghost failed: {rows['ghost'].message!r}")
        errors = [r.answered for r in hub.requests if r.answered == 500]
        drill.check(len(errors) == 2, "the hub's two 500s were tried again")
        blobs = [p for p in cache.rglob("blobs/*") if p.is_file()
                 and not p.name.endswith(".incomplete")]
        whole = all(hashlib.sha256(p.read_bytes()).hexdigest() == p.name
                    for p in blobs if len(p.name) == 64)
        drill.check(whole and not list(cache.rglob("*.incomplete")),
                    f"the cache holds only whole files, each named by its sha256 "
                    f"({len(blobs)} blobs)")
    finally:
        hub.stop()


def two_hosts(drill: Drill, env: dict) -> None:
    from drills.hosts import run_two_hosts

    drill.check(run_two_hosts(), "two hosts: see the checks above")


SERVICES_ONLY = {"redis-restart", "postgres-restart", "two-hosts"}
DRILLS = {
    "worker-killed": (worker_killed, {}),
    "time-limit": (time_limit, {"ZOORANK_TASK_TIME_LIMIT_MINUTES": 1 / 3}),
    "out-of-memory": (out_of_memory, {"ZOORANK_SIMULATED_DEVICE_MEMORY_MB": 1}),
    "web-restart": (web_restart, {}),
    "fair-queue": (fair_queue, {"ZOORANK_USER_IN_FLIGHT": 2}),
    "redis-restart": (redis_restart, {}),
    "postgres-restart": (postgres_restart, {}),
    "two-hosts": (two_hosts, {}),
    "login-throttling": (login_throttling, {"ZOORANK_LOGIN_FAILURES": 3,
                                            "ZOORANK_TOKEN_FAILURES": 3,
                                            "ZOORANK_TRUSTED_PROXIES": "127.0.0.1"}),
    "storage-quota": (storage_quota, {"ZOORANK_USER_QUOTA_GB": 2 / 1024}),
    "slow-clients": (slow_clients, {}),
    "hub-faults": (hub_faults, {}),
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
        if name == "redis-restart":
            drill.redis = OwnRedis(Path(tempfile.mkdtemp(prefix="zoorank-redis-")))
            drill.redis.start()
            env["REDIS_URL"] = drill.redis.url
        if name == "postgres-restart":
            drill.postgres = OwnPostgres(Path(tempfile.mkdtemp(prefix="zoorank-pg-")))
            drill.postgres.start()
            env["DATABASE_URL"] = drill.postgres.url.format(name="drill")
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
        for service in (getattr(drill, "redis", None), getattr(drill, "postgres", None)):
            if service is not None:
                service.stop()
                shutil.rmtree(service.folder, ignore_errors=True)
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
    outcomes = [(n, b, run_one(n, b)) for b in backends for n in names
                if b == "services" or n not in SERVICES_ONLY]
    print("\n".join(f"{'PASS' if ok else 'FAIL'}  {n} on {b}" for n, b, ok in outcomes))
    return 0 if all(ok for *_, ok in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
