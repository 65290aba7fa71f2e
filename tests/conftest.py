import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache (drawn charts, throttle counts): database ids
    are reused from one test to the next."""
    from django.core.cache import caches

    for cache in caches.all():
        cache.clear()


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password-1")


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("mallory", password="mallory-password-1")


def _token_client(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    token = Token.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(owner):
    return _token_client(owner)


@pytest.fixture
def outsider_api(outsider):
    return _token_client(outsider)


@pytest.fixture
def sent_tasks(monkeypatch):
    """Tasks sent to the queue, as (task name, args, queue), instead of sending them."""
    sent = []
    monkeypatch.setattr("config.celery.app.send_task",
                        lambda name, args, queue: sent.append((name, args, queue)))
    return sent


def _purge_broker() -> None:
    from config.celery import app

    with app.connection_for_write() as conn:
        try:
            conn.default_channel.queue_purge("gpu")
        except Exception:  # the queue does not exist yet
            pass


@pytest.fixture(scope="session")
def session_hub(tmp_path_factory):
    """The model hub the suite's worker talks to: tests/hub.py on loopback, empty until a
    test adds a repository. The worker reaches it through HF_ENDPOINT, as a deployment
    reaches the real hub, with a cache of its own (``session_hub.cache``)."""
    from tests.hub import LocalHub

    hub = LocalHub(hang_seconds=2).start()
    hub.cache = tmp_path_factory.mktemp("worker-hf-home") / "hub"
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def worker_process(django_db_setup, django_db_blocker, tmp_path_factory, session_hub):
    """A real Celery worker, in its own process, on the test database and broker, online to
    the suite's own hub (``session_hub``) and to nothing else."""
    from django.conf import settings
    from django.db import connection

    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "ZOORANK_VAR_DIR": str(settings.VAR_DIR),
        "ZOORANK_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": session_hub.endpoint,
        "HF_HOME": str(session_hub.cache.parent),
        "HF_HUB_CACHE": str(session_hub.cache),
        "ZOORANK_HUB_TRIES": "3",
        "ZOORANK_HUB_BACKOFF_SECONDS": "0.1",
        "ZOORANK_HUB_TIMEOUT_SECONDS": "2",
        "ZOORANK_LOADER_WORKERS": "0",
        # Tests make stalled rows on purpose: the suite's worker does not sweep them away
        # (drills/run.py exercises the sweep with real workers).
        "ZOORANK_SWEEP_SECONDS": "86400",
    })
    _purge_broker()
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu,cpu", "-P", "solo",
         "-c", "1", "--without-gossip", "--without-mingle", "--loglevel=INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while "ready." not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.3)
    process.log_path = log_path
    yield process
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def wait_for(predicate, timeout: float = 180, interval: float = 0.3, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def browser():
    """Headless Debian Chromium that keeps the page's console messages (browser tests)."""
    import shutil
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.test_browser import CHROMEDRIVER, CHROMIUM

    profile = tempfile.mkdtemp(prefix="zoorank-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium-manager never looks for (or downloads) one.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def private_stores(settings, tmp_path):
    """The test's own media folder and feature cache."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"
