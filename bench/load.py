"""Load: many users reading pages while a few upload datasets and submit evaluations.

Usage (from the repository root; `make load` runs the defaults):

    .venv/bin/python bench/load.py [--users 50] [--seconds 60] [--host URL]

By default everything runs here, on loopback, and is thrown away afterwards: a var folder,
a PostgreSQL database (``--database-server``) and a Redis database (``--redis-url``); then
``migrate``, one account per five users (with an API token), a small demo zoo (three demo
recipes cut to one epoch on 64 source images: same architectures, quick to make), and for
every account one uploaded dataset with one finished evaluation for the users to read. The
server is what ``make serve`` runs: gunicorn with ``deploy/gunicorn.conf.py`` and one worker,
``celery -A config worker -Q gpu,cpu -P solo -c 1``, with ``ZOORANK_SUBMIT_RATE`` raised so
that the run measures the server and not the throttle, and the self-healing sweep every 10 s
with a three-minute stall limit (work left behind is resumed within the bounded wait). With
``--host URL`` the script targets a running server instead and makes the accounts and the
zoo through the database this environment configures (``DATABASE_URL``), which must be that
server's.

Every user logs in through the login form (with its CSRF token), then reads the dashboard
``/``, the zoo ``/zoo/``, its account's evaluation page and that evaluation's API JSON, one
after another, 1 to 3 s apart (locust, headless, as a library). One user in five first
uploads a small dataset (a zip of class folders of PNGs) through ``POST /api/datasets/``,
polls it until it is ready, and submits an evaluation of every checkpoint. After
``--seconds`` the script prints p50/p95/p99 per route and the failures, waits (at most
``--finish-timeout`` s) for every submitted evaluation to finish on the one worker, and
ends with the line ``p95 page read <ms> ms, errors <n>, evaluations finished <k>/<m>``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--prepare" not in sys.argv:
    # locust runs its users on gevent: patch before anything opens a socket.
    from gevent import monkey

    monkey.patch_all()

import argparse
import io
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

READS = ["/", "/zoo/", "/evaluations/<id>/", "/api/evaluations/<id>/"]
ZOO = ["demo-convnext.mnist04_e1", "demo-resnet.textures_e4", "demo-vit3_p8.textures_e4"]
USERS_PER_ACCOUNT = 5
UPLOADER_SHARE = 5  # one user in five uploads and submits
FINISHED = {"done", "failed"}


# -- set-up ------------------------------------------------------------------------------


def prepare(accounts: int) -> None:
    """In a child process on the server's database: accounts with tokens and the demo zoo.

    Prints one JSON line: [{"username", "password", "token"}, ...].
    """
    import dataclasses
    import secrets

    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from zoo.demo_zoo import build_checkpoint, recipes_named

    for recipe in recipes_named(ZOO):
        build_checkpoint(dataclasses.replace(recipe, epochs=1), limit=64)
    made = []
    for i in range(accounts):
        username, password = f"load{i:02d}", secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.set_password(password)
        user.save()
        token, _ = Token.objects.get_or_create(user=user)
        made.append({"username": username, "password": password, "token": token.key})
    print(json.dumps(made))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """gunicorn and one worker on a throwaway var folder, PostgreSQL database, Redis db."""

    def __init__(self, args):
        self.var_dir = Path(tempfile.mkdtemp(prefix="zoorank-load-"))
        self.database = f"zoorank_load_{uuid.uuid4().hex[:8]}"
        self.server_url = args.database_server.rstrip("/")
        self.processes: list[subprocess.Popen] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "REDIS_URL", "ZOORANK_STORAGE_URL")}
        self.env.update({
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "ZOORANK_VAR_DIR": str(self.var_dir),
            "DATABASE_URL": f"{self.server_url}/{self.database}",
            "REDIS_URL": args.redis_url,
            "HF_HUB_OFFLINE": "1",
            "ZOORANK_SUBMIT_RATE": "1000000/hour",
            # The self-healing sweep on a few minutes' clock instead of half an hour's, so that
            # work a worker left behind is resumed within the run's bounded wait.
            "ZOORANK_SWEEP_SECONDS": "10", "ZOORANK_STALL_MINUTES": "3",
            "LOG_LEVEL": "WARNING",
        })
        self.redis_url = args.redis_url

    def start(self) -> None:
        import psycopg2
        import redis

        conn = psycopg2.connect(f"{self.server_url}/postgres")
        conn.autocommit = True
        conn.cursor().execute(f'CREATE DATABASE "{self.database}"')
        conn.close()
        redis.Redis.from_url(self.redis_url).flushdb()
        run([str(BIN / "python"), "manage.py", "migrate", "--noinput", "-v0"], self.env)
        # As `make serve` runs it: on a host shared with the web server, at a lower CPU
        # priority, so pages are answered first and the evaluations take what is left.
        self.spawn("worker", ["nice", "-n", "10", str(BIN / "celery"), "-A", "config", "worker",
                              "-Q", "gpu,cpu",
                              "-P", "solo", "-c", "1", "--without-gossip", "--without-mingle",
                              "--loglevel=INFO"], ready="ready.")
        self.spawn("web", [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
                           "--bind", f"127.0.0.1:{self.port}", "config.wsgi"])
        wait_for(lambda: answers(self.url + "/accounts/login/"), 90, "gunicorn to answer")

    def spawn(self, name: str, command: list[str], ready: str | None = None) -> None:
        log = self.var_dir / f"{name}.log"
        process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=open(log, "w"),
                                   stderr=subprocess.STDOUT)
        self.processes.append(process)
        if ready:
            wait_for(lambda: ready in log.read_text() or process.poll() is not None, 120,
                     f"the {name} to start")
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{log.read_text()[-2000:]}")

    def stop(self, keep: bool) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if keep:
            print(f"kept {self.var_dir} and database {self.database}")
            return
        import psycopg2

        conn = psycopg2.connect(f"{self.server_url}/postgres")
        conn.autocommit = True
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        conn.close()
        shutil.rmtree(self.var_dir, ignore_errors=True)


def run(command: list[str], env: dict) -> str:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{done.stdout[-2000:]}"
                           f"{done.stderr[-3000:]}")
    return done.stdout


def wait_for(predicate, timeout: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def dataset_zip(seed: int, classes: int = 3, per_class: int = 8, size: int = 16) -> bytes:
    """An ImageFolder zip of small PNGs; each class leans towards its own colour."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for c in range(classes):
            colour = np.array([(c * 97) % 256, (c * 53 + 80) % 256, (c * 151 + 30) % 256])
            for i in range(per_class):
                pixels = (0.4 * rng.integers(0, 255, (size, size, 3)) + 0.6 * colour)
                png = io.BytesIO()
                Image.fromarray(pixels.astype(np.uint8)).save(png, format="PNG")
                zf.writestr(f"class_{c}/img_{i:02d}.png", png.getvalue())
    return buffer.getvalue()


def dataset_state(body: dict) -> str:
    """A dataset's state: ``ready`` when the answer names none (stored at once)."""
    return body.get("state") or body.get("status") or "ready"


def submit_one(session, url: str, name: str, archive: bytes, timeout: float = 300) -> int:
    """Upload a dataset, wait until it is ready, submit an evaluation of every checkpoint;
    return the evaluation's id. ``session`` is a requests (or locust) session."""
    response = session.post(url + "/api/datasets/", data={"name": name},
                            files={"file": (f"{name}.zip", archive, "application/zip")})
    if response.status_code not in (201, 202):
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    deadline = time.monotonic() + timeout
    while dataset_state(body) != "ready":
        if dataset_state(body) != "ingesting" or time.monotonic() > deadline:
            raise RuntimeError(f"dataset {body['id']} is {dataset_state(body)}: "
                               f"{body.get('message', '')}")
        time.sleep(0.5)
        response = session.get(f"{url}/api/datasets/{body['id']}/",
                               name="/api/datasets/<id>/")
        response.raise_for_status()
        body = response.json()
    response = session.post(url + "/api/evaluations/",
                            json={"dataset": body["id"], "checkpoints": "all"})
    if response.status_code != 202:
        raise RuntimeError(f"submission answered {response.status_code}: "
                           f"{response.text[:300]}")
    return response.json()["id"]


def token_session(token: str):
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    original = session.request
    # locust's sessions take a `name` for their statistics; plain requests does not.
    session.request = lambda method, url, name=None, **kw: original(method, url, **kw)
    return session


def evaluation_status(url: str, token: str, evaluation: int) -> str:
    response = token_session(token).get(f"{url}/api/evaluations/{evaluation}/", timeout=30)
    response.raise_for_status()
    return response.json()["status"]


def wait_finished(url: str, owned: list[tuple[str, int]], timeout: float) -> dict[int, str]:
    """Each evaluation's last status, waiting until all have finished or ``timeout``."""
    statuses = {evaluation: "" for _, evaluation in owned}
    deadline = time.monotonic() + timeout
    while True:
        for token, evaluation in owned:
            if statuses[evaluation] not in FINISHED:
                statuses[evaluation] = evaluation_status(url, token, evaluation)
        if all(s in FINISHED for s in statuses.values()) or time.monotonic() > deadline:
            return statuses
        time.sleep(1)


# -- the users -----------------------------------------------------------------------------


def user_classes(accounts: list[dict], uploaders: int, submitted: list, failures: list):
    from gevent import GreenletExit
    from locust import HttpUser, SequentialTaskSet, between, task

    numbered = itertools.count()
    cycle = itertools.cycle(range(len(accounts)))

    class Reading(SequentialTaskSet):
        def read(self, path: str, name: str) -> None:
            with self.client.get(path, name=name, allow_redirects=False,
                                 catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(f"answered {response.status_code}"
                                     + (f" ({response.error})" if response.error else ""))

        @task
        def dashboard(self):
            self.read("/", "/")

        @task
        def zoo(self):
            self.read("/zoo/", "/zoo/")

        @task
        def evaluation_page(self):
            self.read(f"/evaluations/{self.user.evaluation}/", "/evaluations/<id>/")

        @task
        def evaluation_json(self):
            self.read(f"/api/evaluations/{self.user.evaluation}/", "/api/evaluations/<id>/")

    class Reader(HttpUser):
        tasks = [Reading]
        wait_time = between(1, 3)
        weight = 1

        def on_start(self):
            self.account = accounts[next(cycle)]
            self.evaluation = self.account["evaluation"]
            self.log_in()

        def log_in(self):
            form = self.client.get("/accounts/login/", name="/accounts/login/ (form)")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
            with self.client.post(
                    "/accounts/login/", name="/accounts/login/ (post)", allow_redirects=False,
                    data={"username": self.account["username"], "next": "/",
                          "password": self.account["password"],
                          "csrfmiddlewaretoken": token.group(1) if token else ""},
                    catch_response=True) as response:
                if response.status_code != 302 or "sessionid" not in self.client.cookies:
                    response.failure(f"login answered {response.status_code}")

    class Submitter(Reader):
        fixed_count = uploaders

        def on_start(self):
            super().on_start()
            number = next(numbered)
            name = f"load-upload-{number}"
            headers = {"X-CSRFToken": self.client.cookies.get("csrftoken", ""),
                       "Referer": self.host + "/"}
            self.client.headers.update(headers)  # the session authenticates the API calls
            try:
                evaluation = submit_one(self.client, self.host, name,
                                        dataset_zip(seed=1000 + number))
                submitted.append((self.account["token"], evaluation))
            except Exception as exc:  # counted as an error, the user goes on reading
                failures.append(f"{name}: {exc}")
            except GreenletExit:
                failures.append(f"{name}: the run ended before it was submitted")
                raise

    return [Reader, Submitter] if uploaders else [Reader]


# -- the run -------------------------------------------------------------------------------


def percentiles_table(stats, reads: list[str]) -> tuple[str, float]:
    from locust.stats import StatsEntry

    lines = [f"{'route':34s} {'requests':>8s} {'fails':>5s} {'p50 ms':>7s} {'p95 ms':>7s} "
             f"{'p99 ms':>7s} {'max ms':>7s}"]
    combined = StatsEntry(stats, "page reads", "GET")  # the four read routes together
    for entry in sorted(stats.entries.values(), key=lambda e: (e.name not in reads, e.name)):
        lines.append(row(entry.method + " " + entry.name, entry))
        if entry.name in reads and entry.method == "GET":
            combined.extend(entry)
    lines.append(row("GET page reads (4 routes)", combined))
    lines.append(row("all", stats.total))
    return "\n".join(lines), combined.get_response_time_percentile(0.95) or 0.0


def row(label: str, entry) -> str:
    p = entry.get_response_time_percentile
    return (f"{label:34s} {entry.num_requests:8d} {entry.num_failures:5d} {p(0.5) or 0:7.0f} "
            f"{p(0.95) or 0:7.0f} {p(0.99) or 0:7.0f} {entry.max_response_time or 0:7.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--host", help="a running server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--spawn-rate", type=float, default=5,
                        help="users started (and logged in) per second")
    parser.add_argument("--finish-timeout", type=float, default=900,
                        help="seconds to wait for the submitted evaluations after the run")
    parser.add_argument("--database-server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--keep", action="store_true", help="keep the var folder and database")
    parser.add_argument("--prepare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare is not None:
        return prepare(args.prepare)

    n_accounts = max(1, -(-args.users // USERS_PER_ACCOUNT))
    server = None if args.host else Server(args)
    try:
        started = time.monotonic()
        if server:
            print(f"Setting up in {server.var_dir}, database {server.database}, "
                  f"Redis {args.redis_url} ...", flush=True)
            server.start()
            url, env = server.url, server.env
        else:
            url, env = args.host.rstrip("/"), dict(os.environ)
        out = run([str(BIN / "python"), str(Path(__file__).resolve()), "--prepare",
                   str(n_accounts)], env)
        accounts = json.loads(out.strip().splitlines()[-1])
        archive = dataset_zip(seed=0)
        owned = [(a["token"], submit_one(token_session(a["token"]), url, "load-read", archive))
                 for a in accounts]
        statuses = wait_finished(url, owned, timeout=600)
        if any(s != "done" for s in statuses.values()):
            raise RuntimeError(f"the evaluations to read did not finish: {statuses}")
        for account, (_, evaluation) in zip(accounts, owned):
            account["evaluation"] = evaluation
        print(f"Ready in {time.monotonic() - started:.0f} s: {url}, {len(accounts)} accounts, "
              f"{len(ZOO)} checkpoints.", flush=True)

        import gevent
        from locust.env import Environment

        submitted, failures = [], []
        uploaders = args.users // UPLOADER_SHARE
        env = Environment(user_classes=user_classes(accounts, uploaders, submitted, failures),
                          host=url)
        runner = env.create_local_runner()
        reads_timed: list[tuple[float, float]] = []  # (when, ms) of every page read
        spawned_at: list[float] = []

        def on_request(request_type, name, response_time, exception=None, **_kw):
            if request_type == "GET" and name in READS and exception is None:
                reads_timed.append((time.monotonic(), response_time))

        env.events.request.add_listener(on_request)
        env.events.spawning_complete.add_listener(
            lambda user_count: spawned_at.append(time.monotonic()))
        print(f"{args.users} users ({uploaders} submitting) for {args.seconds:.0f} s; load "
              f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores ...", flush=True)
        runner.start(args.users, spawn_rate=args.spawn_rate)
        gevent.spawn_later(args.seconds, runner.quit)
        runner.greenlet.join()

        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        table, p95_reads = percentiles_table(env.stats, READS)
        print(table)
        if spawned_at:
            after = sorted(ms for when, ms in reads_timed if when >= spawned_at[0])
            if after:
                print(f"page reads once every user had logged in: {len(after)} requests, p50 "
                      f"{after[len(after) // 2]:.0f} ms, p95 {after[int(0.95 * (len(after) - 1))]:.0f}"
                      f" ms (the logins, {args.users} password hashes in the first "
                      f"{args.users / args.spawn_rate:.0f} s, are the rest)")
        for error in env.stats.errors.values():
            print(f"  {error.occurrences} x {error.method} {error.name}: {error.error}")
        for failure in failures:
            print(f"  submission failed: {failure}")
        errors = env.stats.total.num_failures + len(failures)

        waited = time.monotonic()
        statuses = wait_finished(url, submitted, args.finish_timeout)
        done = sum(s == "done" for s in statuses.values())
        print(f"Submitted evaluations: {len(submitted)}; {done} done, "
              f"{sum(s == 'failed' for s in statuses.values())} failed, "
              f"{sum(s not in FINISHED for s in statuses.values())} unfinished, "
              f"{time.monotonic() - waited:.0f} s after the run.")
        print(f"p95 page read {p95_reads:.0f} ms, errors {errors}, "
              f"evaluations finished {done}/{len(submitted) + len(failures)}")
    finally:
        if server:
            server.stop(args.keep)


if __name__ == "__main__":
    main()
