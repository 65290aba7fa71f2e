"""Hub downloads: how fast a worker brings a checkpoint's weights in, against the bare transfer.

Three cases, each beside a baseline measured in the same run:
- from the hub: ``zoo.hub.fetch_weights`` (huggingface_hub's client, our checks: sha256,
  recording, the lock, progress) from a hub on loopback (tests/hub.py, reached through
  HF_ENDPOINT), against one plain HTTP GET of the same file into a file;
- a second host, from the object store: the same call on a host with empty caches whose
  checkpoint recorded the hash, against moto's S3 server (a real S3-compatible server in
  its own process), against boto3's own ``download_file`` of the same object;
- a third call on the same host: read from its cache (no transfer).
Random bytes in a safetensors file: speed does not depend on the values. Not a test.

    .venv/bin/python bench/hub.py [--mb 100] [--repeat 3]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR = Path(tempfile.mkdtemp(prefix="zoorank-bench-hub-"))
os.environ["ZOORANK_VAR_DIR"] = str(VAR)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
for name in ("DATABASE_URL", "REDIS_URL", "HF_TOKEN"):
    os.environ.pop(name, None)
# Online, to the loopback hub only (set below, before huggingface_hub is imported).
os.environ["HF_HUB_OFFLINE"] = "0"

from tests.hub import LocalHub  # noqa: E402

HUB = LocalHub().start()
os.environ["HF_ENDPOINT"] = HUB.endpoint

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import override_settings  # noqa: E402

call_command("migrate", verbosity=0)

import torch  # noqa: E402
from safetensors.torch import save  # noqa: E402

from config.local_cache import s3_storage  # noqa: E402
from drills.hosts import S3_CREDENTIALS, _boto_credentials, create_bucket, start_s3_server, stop  # noqa: E402
from zoo.hub import fetch_weights  # noqa: E402
from zoo.models import Checkpoint  # noqa: E402

REPO = "bench/weights"


def checkpoint(name: str) -> Checkpoint:
    return Checkpoint.objects.create(name=name, architecture="resnet50", hub_id=REPO,
                                     input_size=[3, 224, 224], mean=[0.5] * 3, std=[0.5] * 3)


def plain_get(size: int) -> float:
    """Seconds for one plain GET of the weights from the hub's content server."""
    import hashlib

    import httpx2

    sha = hashlib.sha256(HUB.repos[REPO].files["model.safetensors"]).hexdigest()
    dest = VAR / f"plain-{uuid.uuid4().hex}"
    started = time.perf_counter()
    with httpx2.stream("GET", f"{HUB.content_server}/{REPO}/{sha}") as response, \
            open(dest, "wb") as out:
        for chunk in response.iter_bytes(1 << 20):
            out.write(chunk)
    seconds = time.perf_counter() - started
    assert dest.stat().st_size == size
    dest.unlink()
    return seconds


def as_host(host: str):
    """Settings of a host with caches of its own."""
    os.environ["HF_HUB_CACHE"] = str(VAR / host / "hf")
    return {"ZOORANK_CACHE_DIR": VAR / host / "cache"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=100, help="size of the weights file")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    n = int(args.mb * 1e6 / 4)
    files = {"model.safetensors": save({"weight": torch.randn(n)}),
             "config.json": b'{"architecture": "resnet50"}'}
    HUB.add_repo(REPO, files)
    size = len(files["model.safetensors"])
    mb = size / 1e6
    rows = []

    hub_times, get_times = [], []
    for i in range(args.repeat):
        with override_settings(**as_host(f"hub-{i}")):
            get_times.append(plain_get(size))
            started = time.perf_counter()
            fetched = fetch_weights(checkpoint(f"hub-{i}"))
            hub_times.append(time.perf_counter() - started)
            assert fetched.source == "hub"
            started = time.perf_counter()
            again = fetch_weights(Checkpoint.objects.get(name=f"hub-{i}"))
            cached = time.perf_counter() - started
            assert again.source == "cache"
    rows.append(("from the hub (loopback)", hub_times, "plain GET to file", get_times))

    s3_log = VAR / "moto.log"
    process, endpoint = start_s3_server(s3_log)
    try:
        os.environ.update({**S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        create_bucket(endpoint, bucket)
        url = f"s3://{bucket}/zoorank"
        store = {"STORAGES": {"default": s3_storage(url),
                              "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage."
                                                         "StaticFilesStorage"}},
                 "ZOORANK_STORAGE_URL": url}
        with override_settings(**store, **as_host("first")):
            first = checkpoint("stored")
            started = time.perf_counter()
            fetch_weights(first)  # from the hub, then into the store
            publish = time.perf_counter() - started
        store_times, boto_times = [], []
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, **_boto_credentials())
        sha = Checkpoint.objects.get(name="stored").hub_files["model.safetensors"]
        for i in range(args.repeat):
            dest = VAR / f"plain-{uuid.uuid4().hex}"
            started = time.perf_counter()
            client.download_file(bucket, f"zoorank/hub/{sha}/model.safetensors", str(dest))
            boto_times.append(time.perf_counter() - started)
            assert dest.stat().st_size == size
            dest.unlink()
            with override_settings(**store, **as_host(f"second-{i}")):
                started = time.perf_counter()
                fetched = fetch_weights(Checkpoint.objects.get(name="stored"))
                store_times.append(time.perf_counter() - started)
                assert fetched.source == "store"
        rows.append(("second host, from the object store", store_times, "boto3 download_file",
                     boto_times))
    finally:
        stop(process)
        HUB.stop()

    print(f"weights file: {mb:.1f} MB, {args.repeat} runs each (median)")
    print(f"{'case':38} {'s':>7} {'MB/s':>8} {'baseline':>18} {'s':>7} {'MB/s':>8} {'ratio':>6}")
    for case, ours, base_name, base in rows:
        o, b = statistics.median(ours), statistics.median(base)
        print(f"{case:38} {o:7.2f} {mb / o:8.1f} {base_name:>18} {b:7.2f} {mb / b:8.1f} "
              f"{o / b:6.2f}")
    print(f"{'first host: hub, then into the store':38} {publish:7.2f} {mb / publish:8.1f}")
    print(f"{'same host again, from its cache':38} {cached:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
