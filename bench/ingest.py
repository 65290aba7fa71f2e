"""Ingest: a 200,000-entry archive accepted at once and unpacked while the dashboard answers.

Usage (from the repository root):

    .venv/bin/python bench/ingest.py [--entries 200000] [--archive PATH] [--services]

The target: "A 200,000-entry archive (generated, small images) is accepted in under a second
and ingested in the background while the dashboard keeps answering in under 200 ms."

1. The archive: ``--entries`` distinct PNGs (``--side`` pixels square, RGB, random pixels
   from a seeded generator, so no two are byte-identical) spread over ``--classes`` class
   folders, written ZIP_STORED (PNG is compressed already) and without directory entries,
   so the entry count is the image count. With ``--archive PATH`` an archive already there
   with that many entries is reused, else it is written there; without it, it is written
   into the throwaway folder and deleted with it.
2. A throwaway var folder with the embedded default (SQLite, on-disk broker), or with
   ``--services`` a throwaway PostgreSQL database on ``--database-server`` and the Redis
   database ``--redis-url``; ``migrate``, one account with an API token, gunicorn
   (``deploy/gunicorn.conf.py`` with ``--workers 2 --threads 4``) and one worker
   (``celery -A config worker -Q gpu,cpu -P solo -c 1``), ``ZOORANK_SUBMIT_RATE`` raised.
3. ``POST /api/datasets/`` (token auth) with the archive streamed from disk as a multipart
   body; the accept time runs from the request until the 202 answer.
4. Meanwhile a browser-like session (the login form with its CSRF token, then the session
   cookie) reads the dashboard ``/`` every ``--interval`` s and the API session polls
   ``GET /api/datasets/<id>/``, printing progress every few seconds.
5. When the state leaves ``ingesting``: the accept time, the ingest wall time and rate, the
   final state, the dashboard latencies during the ingest (p50/p95/max), the CPU seconds
   the worker, the web server and the rest of the machine used meanwhile, and a last line
   ``accepted in <s> s, ingested <n> images in <s> s, dashboard p95 <ms> ms (max <ms> ms)
   during ingest``.

Processes (their whole process groups), the var folder, the database and the Redis
database are removed on exit, also after an error or Ctrl-C (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PASSWORD = "bench-ingest-password-1"
TICK = os.sysconf("SC_CLK_TCK")


# -- the archive ---------------------------------------------------------------------------


def png_bytes(pixels: bytes, side: int) -> bytes:
    """A minimal valid PNG (8-bit RGB, no filter) of ``side`` x ``side`` ``pixels``."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data))

    stride = side * 3
    raw = b"".join(b"\x00" + pixels[r * stride:(r + 1) * stride] for r in range(side))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def write_archive(path: Path, entries: int, classes: int, side: int, seed: int) -> None:
    """``entries`` distinct random PNGs in ``classes`` folders, ZIP_STORED, no folder entries."""
    import numpy as np

    rng = np.random.default_rng(seed)
    partial = path.with_name(path.name + ".partial")
    batch = 10_000
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for start in range(0, entries, batch):
            count = min(batch, entries - start)
            pixels = rng.integers(0, 256, (count, side * side * 3), dtype=np.uint8)
            for k in range(count):
                i = start + k
                info = zipfile.ZipInfo(f"class_{i % classes:02d}/img_{i:07d}.png",
                                       date_time=(2024, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                zf.writestr(info, png_bytes(pixels[k].tobytes(), side))
    os.replace(partial, path)


def archive_entries(path: Path) -> int | None:
    """How many entries ``path`` holds (None: not a readable zip, or it has folder entries)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (OSError, zipfile.BadZipFile):
        return None
    return None if any(info.is_dir() for info in infos) else len(infos)


def check_sample(path: Path, count: int = 200) -> None:
    """Decode a spread of the archive's images with PIL, as the worker will."""
    import io

    from PIL import Image

    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        for info in infos[:: max(1, len(infos) // count)]:
            with Image.open(io.BytesIO(zf.read(info))) as im:
                im.load()


# -- the server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class Server:
    """gunicorn and one worker on a throwaway var folder (and database with --services)."""

    def __init__(self, args):
        self.args = args
        self.var_dir = Path(tempfile.mkdtemp(prefix="zoorank-ingest-"))
        self.database = f"zoorank_ingest_{uuid.uuid4().hex[:8]}" if args.services else None
        self.processes: dict[str, subprocess.Popen] = {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "REDIS_URL", "ZOORANK_STORAGE_URL",
                                 "ZOORANK_DATABASE_NAME", "MEDIA_ROOT", "ZOORANK_CACHE_DIR",
                                 "DEBUG")}
        self.env.update({
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "ZOORANK_VAR_DIR": str(self.var_dir),
            "HF_HUB_OFFLINE": "1",
            "ZOORANK_SUBMIT_RATE": "1000000/hour",
            "LOG_LEVEL": "WARNING",
        })
        if args.entries > 200_000:
            self.env["ZOORANK_MAX_ARCHIVE_ENTRIES"] = str(args.entries)
        if args.services:
            self.env["DATABASE_URL"] = f"{args.database_server.rstrip('/')}/{self.database}"
            self.env["REDIS_URL"] = args.redis_url

    def describe(self) -> str:
        if self.database:
            return (f"PostgreSQL database {self.database}, Redis {self.args.redis_url}, "
                    f"var folder {self.var_dir}")
        return f"SQLite and the on-disk broker in {self.var_dir}"

    def start(self) -> str:
        """Start everything; return the account's API token."""
        if self.database:
            import psycopg2
            import redis

            conn = psycopg2.connect(f"{self.args.database_server.rstrip('/')}/postgres")
            conn.autocommit = True
            conn.cursor().execute(f'CREATE DATABASE "{self.database}"')
            conn.close()
            redis.Redis.from_url(self.args.redis_url).flushdb()
        self.run([str(BIN / "python"), "manage.py", "migrate", "--noinput", "-v0"])
        token = self.run([str(BIN / "python"), "manage.py", "shell", "-c", (
            "from django.contrib.auth import get_user_model\n"
            "from rest_framework.authtoken.models import Token\n"
            f"u = get_user_model().objects.create_user('bench', password={PASSWORD!r})\n"
            "print(Token.objects.create(user=u).key)\n")]).strip().splitlines()[-1]
        self.spawn("worker", [str(BIN / "python"), "-m", "celery", "-A", "config", "worker",
                              "-Q", "gpu,cpu", "-P", "solo", "-c", "1", "--without-gossip",
                              "--without-mingle", "--loglevel=INFO"], ready="ready.")
        gunicorn = BIN / "gunicorn"
        if gunicorn.exists():
            command = [str(gunicorn), "config.wsgi", "--bind", f"127.0.0.1:{self.port}",
                       "--workers", "2", "--threads", "4"]
            if (ROOT / "deploy" / "gunicorn.conf.py").exists():
                command[1:1] = ["-c", "deploy/gunicorn.conf.py"]
        else:
            command = [str(BIN / "python"), "manage.py", "runserver", "--noreload",
                       f"127.0.0.1:{self.port}"]
        self.spawn("web", command)
        wait_for(lambda: self.answers("/accounts/login/"), 90, "the web server to answer")
        return token

    def run(self, command: list[str]) -> str:
        done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command[:4])} failed:\n{done.stdout[-2000:]}"
                               f"{done.stderr[-3000:]}")
        return done.stdout

    def spawn(self, name: str, command: list[str], ready: str | None = None) -> None:
        log = self.var_dir / f"{name}.log"
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=open(log, "w"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        if ready:
            wait_for(lambda: ready in log.read_text() or process.poll() is not None, 120,
                     f"the {name} to start")
        if process.poll() is not None:
            raise RuntimeError(f"the {name} exited:\n{log.read_text()[-2000:]}")

    def answers(self, path: str) -> bool:
        import requests

        try:
            return requests.get(self.url + path, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def log_tail(self, name: str, chars: int = 1500) -> str:
        try:
            return (self.var_dir / f"{name}.log").read_text()[-chars:]
        except OSError:
            return ""

    def stop(self, keep: bool) -> None:
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)
        for process in self.processes.values():  # gunicorn's workers, celery's children
            _signal_group(process, signal.SIGKILL)
        if keep:
            print(f"kept {self.describe()}")
            return
        if self.database:
            import psycopg2
            import redis

            conn = psycopg2.connect(f"{self.args.database_server.rstrip('/')}/postgres")
            conn.autocommit = True
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            conn.close()
            redis.Redis.from_url(self.args.redis_url).flushdb()
        print(f"removing {self.var_dir} (the unpacked images too) ...", flush=True)
        started = time.perf_counter()
        shutil.rmtree(self.var_dir, ignore_errors=True)
        print(f"removed in {time.perf_counter() - started:.0f} s", flush=True)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes in process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[0] is the state; pgrp is the 5th field overall
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


# -- the client ----------------------------------------------------------------------------


class MultipartBody:
    """A multipart/form-data body with one file part, read from disk as it is sent."""

    def __init__(self, fields: dict[str, str], field: str, path: Path, filename: str):
        self.boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
            f"{v}\r\n".encode() for k, v in fields.items())
        head += (f'--{self.boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                 f'filename="{filename}"\r\nContent-Type: application/zip\r\n\r\n').encode()
        self.parts = [head, path, f"\r\n--{self.boundary}--\r\n".encode()]
        self.length = len(head) + path.stat().st_size + len(self.parts[2])
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._file = None
        self.sent_at = None  # when the last byte was handed to the connection
        self._index = 0
        self._offset = 0

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        size = 1 << 20 if size is None or size < 0 else size
        while self._index < len(self.parts):
            part = self.parts[self._index]
            if isinstance(part, Path):
                if self._file is None:
                    self._file = open(part, "rb")
                data = self._file.read(size)
                if data:
                    return data
                self._file.close()
            else:
                data = part[self._offset:self._offset + size]
                self._offset += len(data)
                if data:
                    return data
            self._index += 1
            self._offset = 0
        if self.sent_at is None:
            self.sent_at = time.monotonic()
        return b""


def browser_session(url: str):
    """A requests session logged in through the login form, as a browser is."""
    import requests

    session = requests.Session()
    form = session.get(url + "/accounts/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    response = session.post(url + "/accounts/login/", allow_redirects=False, timeout=30,
                            data={"username": "bench", "password": PASSWORD, "next": "/",
                                  "csrfmiddlewaretoken": token.group(1) if token else ""},
                            headers={"Referer": url + "/accounts/login/"})
    if response.status_code != 302 or "sessionid" not in session.cookies:
        raise RuntimeError(f"logging in answered {response.status_code}")
    return session


class DashboardReader(threading.Thread):
    """GETs ``/`` every ``interval`` s; keeps (start time, latency s, status) per request."""

    def __init__(self, session, url: str, interval: float):
        super().__init__(daemon=True)
        self.session, self.url, self.interval = session, url, interval
        self.samples: list[tuple[float, float, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        import requests

        next_at = time.monotonic()
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                status = self.session.get(self.url + "/", allow_redirects=False,
                                          timeout=60).status_code
            except requests.RequestException:
                status = 0
            self.samples.append((started, time.monotonic() - started, status))
            next_at = max(next_at + self.interval, time.monotonic())
            self.stopping.wait(next_at - time.monotonic())

    def between(self, start: float, end: float) -> list[tuple[float, float, int]]:
        return [s for s in self.samples if start <= s[0] < end]


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def latency_line(label: str, samples) -> str:
    ms = [latency * 1000 for _, latency, _ in samples]
    errors = sum(1 for _, _, status in samples if status != 200)
    return (f"{label}: {len(ms)} requests, {errors} not 200, p50 {percentile(ms, 50):.0f} ms, "
            f"p95 {percentile(ms, 95):.0f} ms, max {max(ms, default=float('nan')):.0f} ms")


# -- the run -------------------------------------------------------------------------------


def prepare_archive(args, scratch: Path) -> Path:
    path = Path(args.archive).resolve() if args.archive else scratch / "archive.zip"
    if path.exists() and archive_entries(path) == args.entries:
        print(f"archive: reused {path} ({args.entries:,} entries, "
              f"{path.stat().st_size / 2**20:.1f} MiB)", flush=True)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"archive: writing {args.entries:,} distinct {args.side}x{args.side} RGB PNGs in "
          f"{args.classes} class folders, ZIP_STORED, no folder entries ...", flush=True)
    started = time.perf_counter()
    write_archive(path, args.entries, args.classes, args.side, args.seed)
    took = time.perf_counter() - started
    check_sample(path)
    print(f"archive: {path} written in {took:.1f} s, {path.stat().st_size / 2**20:.1f} MiB, "
          f"{archive_entries(path):,} entries (a sample of 200 decodes)", flush=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--archive", help="where the archive is cached (reused if it has "
                                          "--entries entries)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--side", type=int, default=8, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.25,
                        help="seconds between dashboard reads")
    parser.add_argument("--progress-every", type=float, default=5.0,
                        help="seconds between progress lines")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds to wait for the ingest")
    parser.add_argument("--services", action="store_true",
                        help="PostgreSQL and Redis instead of SQLite and the on-disk broker")
    parser.add_argument("--database-server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--keep", action="store_true",
                        help="keep the var folder (and database)")
    args = parser.parse_args()

    import requests

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server = Server(args)
    reader = None
    try:
        print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
              f"on {os.cpu_count()} cores", flush=True)
        archive = prepare_archive(args, server.var_dir)
        print(f"server: {server.describe()}", flush=True)
        started = time.perf_counter()
        token = server.start()
        print(f"server: gunicorn (2 processes x 4 threads) on {server.url} and one worker "
              f"started in {time.perf_counter() - started:.1f} s", flush=True)

        api = requests.Session()
        api.headers["Authorization"] = f"Token {token}"
        reader = DashboardReader(browser_session(server.url), server.url, args.interval)
        reader.start()
        time.sleep(2)  # a few reads of the idle dashboard first

        body = MultipartBody({"name": f"bench-{args.entries}"}, "file", archive,
                             archive.name)
        upload_started = time.monotonic()
        response = api.post(server.url + "/api/datasets/", data=body, timeout=600,
                            headers={"Content-Type": body.content_type})
        accepted = time.monotonic()
        accept_s = accepted - upload_started
        if response.status_code != 202:
            raise RuntimeError(f"the upload answered {response.status_code}: "
                               f"{response.text[:500]}")
        dataset = response.json()
        print(f"upload: {body.length / 2**20:.1f} MiB answered 202 in {accept_s:.3f} s, "
              f"state {dataset['state']}, id {dataset['id']}", flush=True)

        cpu_before = {name: group_cpu_seconds(p.pid) for name, p in server.processes.items()}
        machine_before = machine_cpu_seconds()
        load_before = os.getloadavg()[0]
        api_latencies = []
        last_print = 0.0
        while True:
            polled = time.monotonic()
            response = api.get(f"{server.url}/api/datasets/{dataset['id']}/", timeout=60)
            api_latencies.append(time.monotonic() - polled)
            response.raise_for_status()
            dataset = response.json()
            now = time.monotonic()
            if dataset["state"] != "ingesting":
                finished = now
                break
            if now - last_print >= args.progress_every:
                done, total = dataset["ingest_done"] or 0, dataset["ingest_total"] or 0
                rate = done / (now - accepted) if done else 0.0
                print(f"  {now - accepted:6.1f} s  {done:>8,} / {total:>8,} images  "
                      f"{rate:6.0f} images/s overall", flush=True)
                last_print = now
            if now - accepted > args.timeout:
                raise TimeoutError(f"the ingest did not finish in {args.timeout:.0f} s")
            time.sleep(0.5)
        cpu_after = {name: group_cpu_seconds(p.pid) for name, p in server.processes.items()}
        machine_after = machine_cpu_seconds()
        load_after = os.getloadavg()[0]
        time.sleep(1)  # a few reads after the ingest
        reader.stopping.set()
        reader.join(timeout=70)

        ingest_s = finished - accepted
        images = dataset.get("num_images") or 0
        during = reader.between(accepted, finished)
        print()
        print(f"final state: {dataset['state']}"
              + (f" ({dataset['message']})" if dataset.get("message") else "")
              + f", {images:,} images in {len(dataset.get('class_names') or [])} classes, "
                f"{len(dataset.get('skipped') or [])} entries skipped")
        sent = (body.sent_at or accepted) - upload_started
        print(f"accept: {accept_s:.3f} s for {body.length / 2**20:.1f} MiB from the request "
              f"to the 202 answer: the body was taken in {sent:.3f} s, the answer came "
              f"{accept_s - sent:.3f} s after its last byte")
        print(f"ingest: {ingest_s:.1f} s from the 202 answer until the API showed "
              f"{dataset['state']} (polled every 0.5 s), {images / ingest_s:.0f} images/s")
        print(latency_line("dashboard before the upload",
                           reader.between(0, upload_started)))
        print(latency_line("dashboard during the upload", reader.between(upload_started,
                                                                         accepted)))
        print(latency_line("dashboard during the ingest", during))
        print(latency_line("dashboard after the ingest", reader.between(finished, 1e18)))
        api_ms = [s * 1000 for s in api_latencies]
        print(f"GET /api/datasets/<id>/ during the ingest: {len(api_ms)} requests, "
              f"p50 {percentile(api_ms, 50):.0f} ms, p95 {percentile(api_ms, 95):.0f} ms, "
              f"max {max(api_ms):.0f} ms")
        cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_before}
        busy = machine_after[0] - machine_before[0]
        capacity = (machine_after[1] - machine_before[1])
        print(f"CPU during the ingest ({ingest_s:.0f} s wall, {os.cpu_count()} cores = "
              f"{capacity:.0f} core-s): worker {cpu['worker']:.0f} s, web {cpu['web']:.1f} s, "
              f"everything else on the machine {busy - sum(cpu.values()):.0f} s, "
              f"idle {capacity - busy:.0f} s; load average {load_before:.1f} -> "
              f"{load_after:.1f}")
        ms = [latency * 1000 for _, latency, _ in during]
        print(f"accepted in {accept_s:.2f} s, ingested {images} images in {ingest_s:.1f} s, "
              f"dashboard p95 {percentile(ms, 95):.0f} ms (max {max(ms, default=0):.0f} ms) "
              f"during ingest", flush=True)
        return 0 if dataset["state"] == "ready" else 1
    except BaseException:
        for name in server.processes:
            tail = server.log_tail(name)
            if tail:
                print(f"--- last lines of the {name} log ---\n{tail}", file=sys.stderr)
        raise
    finally:
        if reader is not None:
            reader.stopping.set()
        server.stop(args.keep)


if __name__ == "__main__":
    sys.exit(main())
