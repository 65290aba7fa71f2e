"""Two hosts: two real Celery workers with their own var, media and cache folders, sharing
only PostgreSQL, Redis and an S3-compatible store (moto's server). One evaluation is split
between them; a second one, on the host that is left, finds every feature in the store.

Runs when the suite runs on PostgreSQL (``make test``'s second pass); on SQLite it is
skipped. The hosts take their tasks from a Redis of their own (``redis-server`` on a free
port), so no other worker on the machine takes one; without that binary, from
``ZOORANK_TEST_HOSTS_REDIS_URL`` (a Redis database nobody else uses).
"""

import os
import shutil

import pytest

from drills.hosts import (ZOO, colour_dataset, host_environment, purge, sending_to,
                          start_redis_server, start_worker, stop, tiny_stored_checkpoint,
                          two_host_scenario, wait_ready)
from tests.object_store import s3_endpoint, s3_hosts  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def services(settings, tmp_path):
    """The hosts' Redis URL; skips unless the suite runs on PostgreSQL and Redis answers."""
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine or not os.environ.get("DATABASE_URL"):
        pytest.skip("two hosts share PostgreSQL: run with DATABASE_URL and REDIS_URL "
                    "(make test's second pass)")
    if shutil.which("redis-server"):
        process, url = start_redis_server(tmp_path)
        yield url
        stop(process)
        return
    url = os.environ.get("ZOORANK_TEST_HOSTS_REDIS_URL")
    if not url:
        pytest.skip("no redis-server binary for the hosts' own Redis, and no "
                    "ZOORANK_TEST_HOSTS_REDIS_URL")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as exc:
        pytest.skip(f"Redis at {url} is not reachable: {exc}")
    purge(url)
    yield url


def test_two_hosts_split_an_evaluation_and_share_features_through_the_store(
        services, s3_hosts, owner, tmp_path, monkeypatch):
    from django.db import connection

    sent = []
    monkeypatch.setattr("config.celery.app.send_task", sending_to(services, sent))
    s3_hosts.use("web")
    dataset = colour_dataset(owner, tmp_path)
    checkpoints = [tiny_stored_checkpoint(name, arch, seed) for name, arch, seed in ZOO]

    workers = {}
    try:
        for label in ("host-a", "host-b"):
            env = host_environment(
                tmp_path / label, storage_url=s3_hosts.url, endpoint=s3_hosts.endpoint,
                redis_url=services, database_url=os.environ["DATABASE_URL"],
                database_name=str(connection.settings_dict["NAME"]),
                settings_module="config.test_settings")
            workers[label] = start_worker(env, label, tmp_path / f"{label}.log", wait=False)
            workers[label].env = env
        for worker in workers.values():
            wait_ready(worker)

        failures = []

        def check(ok, what):
            if not ok:
                failures.append(what)

        two_host_scenario(owner, dataset, checkpoints, workers, sent, check)
        logs = "\n".join(f"--- {label}\n{w.log_path.read_text()[-3000:]}"
                         for label, w in workers.items())
        assert not failures, "\n".join(failures) + "\n" + logs
    finally:
        for worker in workers.values():
            stop(worker)
