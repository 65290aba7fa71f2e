"""The slow-clients drill: 60 clients that send their request headers a line every 5 s,
against gunicorn alone and then through nginx (deploy/nginx/zoorank.conf.template), while
another user asks for their dashboard once a second.

gunicorn (deploy/gunicorn.conf.py, 2 processes of 4 threads here) reads each request with
one of its threads, so the slow clients hold every thread and the dashboard waits. nginx
reads each request whole before gunicorn sees it, and drops a client whose header is not
complete within its client_header_timeout (10 s); the slow clients reconnect at once, as
an attacker would. Loopback only, bounded: 60 connections, about 45 s in all.

Run by drills/run.py (``--only slow-clients``); needs nginx (``apt-get install
nginx-light``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "nginx" / "zoorank.conf.template"

SLOW_CLIENTS = 60
LINE_EVERY_S = 5.0
SAMPLES = 12          # dashboard requests per phase, one a second
WITHIN_S = 1.0        # what "answering" means for the dashboard
DIRECT_TIMEOUT_S = 4.0


def nginx_config(folder: Path, listen: int, upstream: str) -> Path:
    """A whole nginx.conf for a proxy of the drill's own, around the deployed server block:
    its pid, logs and temporary files in ``folder``, in the foreground."""
    server = string.Template(TEMPLATE.read_text()).safe_substitute(
        ZOORANK_UPSTREAM=upstream, ZOORANK_PROXY_LISTEN=f"127.0.0.1:{listen}",
        ZOORANK_PROXY_MAX_BODY="2100m")
    (folder / "zoorank.conf").write_text(server)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {folder}/nginx.pid;\n"
        f"error_log {folder}/error.log warn;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {folder}/body;\n"
        f"  proxy_temp_path {folder}/proxy;\n  include {folder}/zoorank.conf;\n}}\n")
    return conf


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


class SlowClients:
    """``count`` connections that each send a request line and then one header line every
    ``every`` seconds, never finishing the header; a closed one is opened again."""

    def __init__(self, port: int, count: int = SLOW_CLIENTS, every: float = LINE_EVERY_S):
        self.port, self.count, self.every = port, count, every
        self.sockets: list[socket.socket | None] = [None] * count
        self.opened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        for i in range(self.count):
            self._open(i)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)
        for s in self.sockets:
            if s is not None:
                s.close()

    def _open(self, i: int) -> None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            s.sendall(b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            self.sockets[i] = s
            self.opened += 1
        except OSError:
            self.sockets[i] = None

    def _run(self) -> None:
        line = 0
        while not self.stop.wait(self.every):
            line += 1
            for i, s in enumerate(self.sockets):
                try:
                    if s is None:
                        raise OSError
                    s.sendall(f"X-Slow-{line}: {'a' * 20}\r\n".encode())
                except OSError:
                    if s is not None:
                        s.close()
                    self._open(i)


def timed_dashboard(session, url: str, timeout: float) -> tuple[float, int | str]:
    started = time.monotonic()
    try:
        code = session.get(url, timeout=timeout).status_code
    except Exception as exc:  # noqa: BLE001 - a timeout is the finding
        code = type(exc).__name__
    return time.monotonic() - started, code


def sample(session, url: str, timeout: float) -> list[tuple[float, int | str]]:
    out = []
    for _ in range(SAMPLES):
        out.append(timed_dashboard(session, url, timeout))
        time.sleep(max(0.0, 1.0 - out[-1][0]))
    return out


def logged_in(base: str, username: str, password: str):
    import requests

    session = requests.Session()
    page = session.get(f"{base}/accounts/login/", timeout=10).text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    session.post(f"{base}/accounts/login/", data={"csrfmiddlewaretoken": csrf,
                                                  "username": username,
                                                  "password": password}, timeout=10)
    return session


def describe(samples) -> str:
    times = [t for t, _ in samples]
    codes = [c for _, c in samples]
    late = sum(1 for t, c in samples if c != 200 or t > WITHIN_S)
    return (f"{late} of {len(samples)} later than {WITHIN_S:.0f} s or failed; slowest "
            f"{max(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s; "
            f"answers {sorted(set(map(str, codes)))}")


def slow_clients(drill, env: dict, free_port) -> None:
    from django.contrib.auth import get_user_model

    nginx = nginx_binary()
    if nginx is None:
        drill.check(False, "nginx is not installed (apt-get install nginx-light): the drill "
                           "needs the proxy it checks")
        return
    get_user_model().objects.create_user("drill-carol", password="carol-password-1")
    folder = Path(env["ZOORANK_VAR_DIR"]) / "proxy"
    folder.mkdir()
    web_port, proxy_port = free_port(), free_port()
    web_env = dict(env, ZOORANK_WEB_WORKERS="2", ZOORANK_WEB_THREADS="4")
    gunicorn = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py",
         "--bind", f"127.0.0.1:{web_port}", "config.wsgi"],
        cwd=ROOT, env=web_env, stdout=open(folder / "web.log", "a"), stderr=subprocess.STDOUT,
        start_new_session=True)
    drill.workers.append(gunicorn)
    conf = nginx_config(folder, proxy_port, f"127.0.0.1:{web_port}")
    test = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(folder)],
                          capture_output=True, text=True)
    drill.check(test.returncode == 0, f"nginx accepts the deployed server block: "
                                      f"{test.stderr.strip().splitlines()[-1]}")
    proxy = subprocess.Popen([nginx, "-c", str(conf), "-p", str(folder)], cwd=folder,
                             stdout=open(folder / "nginx.out", "a"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    drill.workers.append(proxy)
    from drills.run import wait_for

    direct, proxied = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{proxy_port}"
    session = wait_for(lambda: _try_login(proxied), 60, "gunicorn behind nginx to answer")
    calm = sample(session, f"{proxied}/", DIRECT_TIMEOUT_S)[:3]
    drill.check(all(c == 200 for _, c in calm),
                f"drill-carol's dashboard through the proxy, nobody else there: {describe(calm)}")

    # gunicorn alone: what the proxy is for. Reported, not checked: how badly it stalls
    # depends on its thread count.
    with SlowClients(web_port) as slow:
        time.sleep(1)
        # Cookies are per host name, not port: the session is hers on gunicorn too.
        bare = sample(session, f"{direct}/", DIRECT_TIMEOUT_S)
    print(f"  [info] without the proxy, {SLOW_CLIENTS} slow clients on gunicorn "
          f"({slow.opened} connections opened): her dashboard {describe(bare)}", flush=True)
    time.sleep(2)  # the threads they held are free again

    with SlowClients(proxy_port) as slow:
        time.sleep(1)
        behind = sample(session, f"{proxied}/", 10.0)
        held = sum(1 for s in slow.sockets if s is not None)
    late = [t for t, c in behind if c != 200 or t > WITHIN_S]
    drill.check(not late, f"through the proxy, {SLOW_CLIENTS} slow clients ({slow.opened} "
                          f"connections opened in all, {held} open at the end): her dashboard "
                          f"{describe(behind)}")
    drill.check(proxy.poll() is None and gunicorn.poll() is None,
                "nginx and gunicorn still running")


def _try_login(base: str):
    try:
        session = logged_in(base, "drill-carol", "carol-password-1")
        return session if "sessionid" in session.cookies else None
    except Exception:  # noqa: BLE001 - not up yet
        return None
