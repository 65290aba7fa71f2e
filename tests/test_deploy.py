"""Production serving: `make serve` (gunicorn, collected static files, a worker on both
queues) and the deployment files in deploy/."""

import configparser
import os
import re
import runpy
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from drills.slow_clients import nginx_binary as drills_nginx
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
APP_ENVIRONMENT = {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS",
                   "ZOORANK_STORAGE_URL", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                   "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "ZOORANK_LOCAL_CACHE_GB"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_environment(var_dir: Path) -> dict:
    """What `make serve` runs with in these tests: no Redis even where one answers (the
    SERVE_REDIS_URL it would try is a closed port), two gunicorn processes, 3 submissions
    an hour."""
    return {"DJANGO_SETTINGS_MODULE": "config.settings", "ZOORANK_VAR_DIR": str(var_dir),
            "ZOORANK_WEB_WORKERS": "2", "ZOORANK_LOADER_WORKERS": "0",
            "ZOORANK_SWEEP_SECONDS": "86400", "SERVE_REDIS_URL": "redis://127.0.0.1:9/0",
            "ZOORANK_SUBMIT_RATE": "3/hour"}


@pytest.fixture
def make_serve(tmp_path):
    """`make serve` on a throwaway var folder (SQLite, on-disk broker) and a free port."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "ZOORANK_STORAGE_URL")}
    env.update(serve_environment(tmp_path), PORT=str(port))
    log_path = tmp_path / "serve.log"
    process = subprocess.Popen(["make", "--no-print-directory", "serve"], cwd=ROOT, env=env,
                               stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # migrate and collectstatic come first
    try:
        while True:
            try:
                if requests.get(url + "/accounts/login/", timeout=30).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still booting
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make serve did not answer:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, log_path
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.worker
def test_make_serve_without_redis_counts_one_limit_for_all_its_processes(make_serve, tmp_path):
    """Two gunicorn processes, many connections: the submission limit is one count (files
    under the var folder), not one per process; the log says where it is counted."""
    url, log_path = make_serve
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    token = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "shell", "-c",
         "from django.contrib.auth.models import User; from rest_framework.authtoken.models "
         "import Token; u = User.objects.create_user('lim', password='lim-password-1'); "
         "print(Token.objects.create(user=u).key)"],
        cwd=ROOT, env={**env, **serve_environment(tmp_path)}, capture_output=True, text=True,
        check=True).stdout.strip().splitlines()[-1]
    codes = []
    for _ in range(8):  # a new connection each: the processes take turns
        codes.append(requests.post(url + "/api/evaluations/", json={"dataset": 999},
                                   headers={"Authorization": f"Token {token}",
                                            "Connection": "close"}, timeout=30).status_code)
    assert codes.count(429) == 5 and codes[:3] == [400] * 3, codes
    assert "submission limits are counted in files under the var folder" in \
        log_path.read_text()


@pytest.mark.worker
def test_make_serve_answers_through_gunicorn_with_compressed_hashed_static_files(make_serve):
    url, log_path = make_serve
    login = requests.get(url + "/accounts/login/", timeout=30)
    assert login.headers["Server"].startswith("gunicorn")
    assert 'name="csrfmiddlewaretoken"' in login.text
    stylesheet = re.search(r'/static/zoorank/zoorank\.[0-9a-f]{12}\.css', login.text)
    assert stylesheet, "the login page links the collected, hashed stylesheet"

    response = requests.get(url + stylesheet.group(0), headers={"Accept-Encoding": "gzip"},
                            timeout=30, stream=True)
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert "immutable" in response.headers["Cache-Control"]
    assert "body" in response.content.decode()  # requests decompressed it

    # The worker it started consumes both queues.
    deadline = time.monotonic() + 120
    while "ready." not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    log = log_path.read_text()
    assert ".> gpu " in log and ".> cpu " in log, log[-3000:]


def test_gunicorn_takes_its_processes_threads_and_address_from_the_environment(monkeypatch):
    monkeypatch.setenv("ZOORANK_WEB_WORKERS", "3")
    monkeypatch.setenv("ZOORANK_WEB_THREADS", "7")
    monkeypatch.setenv("ZOORANK_WEB_BIND", "0.0.0.0:9000")
    config = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert (config["workers"], config["threads"], config["bind"]) == (3, 7, "0.0.0.0:9000")
    assert config["worker_class"] == "gthread"

    monkeypatch.delenv("ZOORANK_WEB_WORKERS")
    assert runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))["workers"] >= 3


def test_compose_runs_web_a_worker_per_gpu_and_the_shared_services():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"web", "worker-gpu0", "worker-gpu1", "postgres", "redis", "minio"} <= set(services)
    assert "gunicorn -c deploy/gunicorn.conf.py" in " ".join(services["web"]["command"])

    devices = set()
    for name in ("worker-gpu0", "worker-gpu1"):
        worker = services[name]
        command = worker["command"]
        assert command[:4] == ["celery", "-A", "config", "worker"]
        assert command[command.index("-Q") + 1] == "gpu,cpu"
        devices.add(worker["environment"]["CUDA_VISIBLE_DEVICES"])
        assert APP_ENVIRONMENT <= set(worker["environment"])
    assert devices == {"0", "1"}
    environment = services["web"]["environment"]
    assert APP_ENVIRONMENT <= set(environment)
    assert environment["ZOORANK_STORAGE_URL"].startswith("s3://")
    assert environment["AWS_ENDPOINT_URL"] == "http://minio:9000"


def test_compose_publishes_only_the_proxy_and_the_web_server_trusts_it():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    published = sorted(name for name, service in services.items() if service.get("ports"))
    assert published == ["proxy"]
    proxy, web = services["proxy"], services["web"]
    assert proxy["environment"]["ZOORANK_UPSTREAM"] == "web:8000"
    assert any(v.startswith("./nginx/zoorank.conf.template:/etc/nginx/templates/")
               for v in proxy["volumes"])
    address = proxy["networks"]["front"]["ipv4_address"]
    assert web["environment"]["ZOORANK_TRUSTED_PROXIES"] == address
    assert web["environment"]["FORWARDED_ALLOW_IPS"] == address


@pytest.mark.skipif(drills_nginx() is None, reason="nginx is not installed")
def test_the_proxy_template_is_a_valid_nginx_server_with_the_slow_client_timeouts(tmp_path):
    from drills.slow_clients import nginx_config

    conf = nginx_config(tmp_path, _free_port(), "127.0.0.1:8000")
    server = (tmp_path / "zoorank.conf").read_text()
    assert "${" not in server  # every value filled in
    for directive in ("client_header_timeout 10s", "client_body_timeout 30s",
                      "proxy_request_buffering on", "client_max_body_size 2100m",
                      "X-Forwarded-For $proxy_add_x_forwarded_for"):
        assert directive in server
    checked = subprocess.run([drills_nginx(), "-t", "-c", str(conf), "-p", str(tmp_path)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def _unit(name: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str  # systemd's keys are case-sensitive
    unit.read_string((DEPLOY / "systemd" / name).read_text())
    return unit


def test_systemd_units_run_gunicorn_and_one_worker_per_gpu_index():
    web = _unit("zoorank-web.service")["Service"]
    assert "gunicorn -c deploy/gunicorn.conf.py config.wsgi" in web["ExecStart"]
    assert "collectstatic" in web["ExecStartPre"]

    worker = _unit("zoorank-worker@.service")["Service"]
    assert "CUDA_VISIBLE_DEVICES=%i" in worker["Environment"]
    command = " ".join(worker["ExecStart"].replace("\\\n", " ").split())
    assert "celery -A config worker -Q gpu,cpu -P solo -c 1" in command
    assert "-n gpu%i@%H" in command
    example = (DEPLOY / "systemd" / "zoorank.env.example").read_text()
    assert APP_ENVIRONMENT <= set(re.findall(r"^([A-Z_0-9]+)=", example, re.M))
