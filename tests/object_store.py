"""Fixtures for tests against a real S3-compatible server (moto's, in its own process)."""

import uuid
from pathlib import Path

import pytest

from config.local_cache import s3_storage
from drills.hosts import S3_CREDENTIALS, _boto_credentials, create_bucket, start_s3_server, stop


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """The endpoint URL of moto's S3 server, started once for the session."""
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    try:
        process, endpoint = start_s3_server(log)
    except Exception as exc:  # not installed, or no port: say why instead of failing
        pytest.skip(f"moto's S3 server could not start: {exc}")
    yield endpoint
    stop(process)


class Hosts:
    """One S3 bucket; each host a cache folder and a media folder of its own."""

    def __init__(self, settings, endpoint: str, bucket: str, base: Path):
        self.settings, self.endpoint, self.bucket, self.base = settings, endpoint, bucket, base
        self.url = f"s3://{bucket}/zoorank"

    def use(self, host: str) -> Path:
        """Make this process act as ``host``: its own cache and media; returns the cache."""
        cache = self.base / host / "cache"
        self.settings.ZOORANK_CACHE_DIR = cache
        self.settings.MEDIA_ROOT = self.base / host / "media"
        return cache

    def keys(self, prefix: str = "") -> list[str]:
        """Object keys in the bucket under the storage's prefix (without it)."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        found = []
        for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"zoorank/{prefix}"):
            found += [o["Key"].removeprefix("zoorank/") for o in page.get("Contents", [])]
        return sorted(found)


@pytest.fixture
def s3_hosts(s3_endpoint, settings, monkeypatch, tmp_path):
    """The default storage switched to a fresh bucket on the S3 server; this process is
    host "a" until ``use`` says otherwise."""
    for name, value in {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    bucket = f"zoorank-{uuid.uuid4().hex[:12]}"
    create_bucket(s3_endpoint, bucket)
    hosts = Hosts(settings, s3_endpoint, bucket, tmp_path)
    settings.STORAGES = {**settings.STORAGES, "default": s3_storage(hosts.url)}
    settings.ZOORANK_STORAGE_URL = hosts.url
    hosts.use("a")
    yield hosts


__all__ = ["s3_endpoint", "s3_hosts", "Hosts"]
