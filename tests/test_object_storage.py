"""Object storage against moto's real S3-compatible server, and each host's bounded cache.

A "host" here is a cache folder and a media folder of its own (``s3_hosts.use``): what one
host stores, another finds through the store only.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from config.local_cache import LocalCache, local_cache, s3_storage, store_is_remote
from tests.builders import png_bytes
from tests.object_store import s3_endpoint, s3_hosts  # noqa: F401  (fixtures)
from transferability import dataset_store
from workers import caches
from zoo.weights import WeightsError, sha256_of_path

ROOT = Path(__file__).resolve().parent.parent


# Settings -------------------------------------------------------------------------------------

def test_a_storage_url_names_the_bucket_and_the_prefix():
    storage = s3_storage("s3://zoo-bucket/team/zoorank/")
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    assert storage["OPTIONS"]["bucket_name"] == "zoo-bucket"
    assert storage["OPTIONS"]["location"] == "team/zoorank"
    assert s3_storage("s3://zoo-bucket")["OPTIONS"]["location"] == ""
    for bad in ("zoo-bucket/prefix", "https://zoo-bucket/x", "s3:///prefix"):
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            s3_storage(bad)


def _settings_with(monkeypatch, **env) -> dict:
    """The settings module's values with this environment (run afresh, not installed)."""
    import importlib.util

    monkeypatch.delenv("ZOORANK_STORAGE_URL", raising=False)
    monkeypatch.delenv("ZOORANK_LOCAL_CACHE_GB", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("config.settings_probe",
                                                  ROOT / "config" / "settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return vars(module)


def test_the_environment_switches_the_default_storage_and_the_file_system_stays_the_default(
        monkeypatch):
    values = _settings_with(monkeypatch)
    assert values["STORAGES"]["default"] == {
        "BACKEND": "django.core.files.storage.FileSystemStorage"}
    assert values["ZOORANK_LOCAL_CACHE_GB"] == 50
    values = _settings_with(monkeypatch, ZOORANK_STORAGE_URL="s3://b/p",
                            ZOORANK_LOCAL_CACHE_GB="2.5")
    default = values["STORAGES"]["default"]
    assert default["BACKEND"] == "storages.backends.s3.S3Storage"
    assert default["OPTIONS"]["bucket_name"] == "b" and default["OPTIONS"]["location"] == "p"
    assert values["ZOORANK_LOCAL_CACHE_GB"] == 2.5
    assert values["STORAGES"]["staticfiles"]["BACKEND"] == "config.storage.StaticStorage"


def test_on_the_file_system_the_dataset_folder_is_the_store(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"
    assert not store_is_remote()
    folder = dataset_store.datasets_root() / "abc"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    dataset_store.publish("abc", folder)
    assert dataset_store.local_root("abc") == tmp_path / "media" / "datasets" / "abc"
    assert not (tmp_path / "cache").exists()  # no index, no copy
    with pytest.raises(ValueError):
        dataset_store.publish("abc", tmp_path / "elsewhere")
    dataset_store.remove("abc")
    assert not folder.exists()


# The bounded local cache ------------------------------------------------------------------------

def _put(cache: LocalCache, name: str, size: int) -> None:
    cache.put_file(name, lambda tmp: tmp.write_bytes(b"x" * size))


def test_the_cache_evicts_the_least_recently_used_beyond_its_bound(tmp_path, monkeypatch):
    monkeypatch.setattr("config.local_cache.TOUCH_EVERY_SECONDS", 0.0)
    cache = LocalCache(tmp_path, max_bytes=3000)
    for name in ("a/1.bin", "a/2.bin", "a/3.bin"):
        _put(cache, name, 1000)
    assert cache.total_bytes() == 3000
    assert cache.lookup("a/1.bin") is not None  # 1 is now the most recently used
    _put(cache, "a/4.bin", 1000)
    assert set(cache.entries()) == {"a/1.bin", "a/3.bin", "a/4.bin"}
    assert not (tmp_path / "a" / "2.bin").exists()
    assert cache.lookup("a/2.bin") is None

    def fill(folder: Path) -> None:
        for i in range(3):
            (folder / f"{i}.bin").write_bytes(b"y" * 500)

    cache.put_dir("d/set", fill)  # 1500 bytes: the two least recently used go
    assert set(cache.entries()) == {"a/4.bin", "d/set"}
    assert cache.total_bytes() == 2500 <= cache.max_bytes
    assert sorted(p.name for p in (tmp_path / "d" / "set").iterdir()) == ["0.bin", "1.bin", "2.bin"]
    # An entry larger than the bound is kept (it was just asked for); everything else goes.
    _put(cache, "a/big.bin", 5000)
    assert set(cache.entries()) == {"a/big.bin"}
    assert not list((tmp_path / ".tmp").iterdir())  # no partial or deleted files left


def test_entry_names_stay_inside_the_cache(tmp_path):
    cache = LocalCache(tmp_path, max_bytes=10)
    for bad in ("../x", "/etc/passwd", ".tmp/x", ".lru.sqlite3"):
        with pytest.raises(ValueError):
            cache.path(bad)


WRITER = """
import sys
from pathlib import Path
from config.local_cache import LocalCache

root, worker, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cache = LocalCache(root, max_bytes=20_000)
for i in range(count):
    cache.put_file(f"w{worker}/{i}.bin", lambda tmp: tmp.write_bytes(bytes([worker]) * 1000))
    cache.lookup(f"w{worker}/{max(i - 1, 0)}.bin")
"""


def test_two_processes_share_one_bound_and_leave_no_partial_files(tmp_path):
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), "40"],
                                  cwd=ROOT) for w in (1, 2)]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    cache = LocalCache(tmp_path, max_bytes=20_000)
    entries = cache.entries()
    assert len(entries) >= 10 and sum(entries.values()) <= 20_000
    on_disk = {str(p.relative_to(tmp_path)) for p in tmp_path.glob("w*/*.bin")}
    assert on_disk == set(entries)  # the index and the files agree
    for name in entries:
        data = (tmp_path / name).read_bytes()
        assert len(data) == 1000 and len(set(data)) == 1  # whole files only
    assert not list((tmp_path / ".tmp").iterdir())


# Datasets -----------------------------------------------------------------------------------------

def _dataset_folder(store_dir: str, images: int = 6) -> dict[str, bytes]:
    rng = np.random.default_rng(3)
    folder = dataset_store.datasets_root() / store_dir
    files = {f"{c}/img_{i}.png": png_bytes(rng)
             for c in ("cats", "dogs") for i in range(images // 2)}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "manifest.json").write_text(json.dumps({"files": sorted(files)}))
    files["manifest.json"] = (folder / "manifest.json").read_bytes()
    return files


def test_a_published_dataset_is_one_object_fetched_by_a_host_with_an_empty_cache(s3_hosts):
    cache_a = s3_hosts.use("a")
    assert store_is_remote()
    files = _dataset_folder("d1")
    assert dataset_store.datasets_root() == cache_a / "datasets"
    dataset_store.publish("d1", dataset_store.datasets_root() / "d1")
    assert s3_hosts.keys("datasets/") == ["datasets/d1.tar"]
    assert "datasets/d1" in local_cache().entries()  # the ingesting host keeps its copy

    cache_b = s3_hosts.use("b")
    assert not cache_b.exists()
    root = dataset_store.local_root("d1")
    assert root == cache_b / "datasets" / "d1"
    got = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert got == files
    assert local_cache().entries()["datasets/d1"] == sum(len(v) for v in files.values())
    assert dataset_store.local_root("d1") == root  # a second call fetches nothing
    assert not list((cache_b / ".tmp").iterdir())

    dataset_store.remove("d1")
    assert s3_hosts.keys("datasets/") == []
    assert not root.exists() and "datasets/d1" not in local_cache().entries()
    s3_hosts.use("c")
    assert not dataset_store.local_root("d1").exists()  # gone from the store too


def test_an_evicted_dataset_is_fetched_again(s3_hosts, settings):
    _dataset_folder("d2", images=4)
    dataset_store.publish("d2", dataset_store.datasets_root() / "d2")
    s3_hosts.use("b")
    settings.ZOORANK_LOCAL_CACHE_GB = 1e-9  # one byte: each new entry evicts the last
    root = dataset_store.local_root("d2")
    _dataset_folder("d3", images=4)
    dataset_store.publish("d3", dataset_store.datasets_root() / "d3")
    assert not root.exists() and set(local_cache().entries()) == {"datasets/d3"}
    assert (dataset_store.local_root("d2") / "manifest.json").is_file()
    assert set(local_cache().entries()) == {"datasets/d2"}


# Weights ------------------------------------------------------------------------------------------

def _uploaded_checkpoint(name="stored-resnet", seed=0):
    from drills.hosts import tiny_stored_checkpoint

    return tiny_stored_checkpoint(name, "test_resnet", seed)


@pytest.mark.django_db
def test_uploaded_weights_are_in_the_store_and_fetched_into_the_host_cache(s3_hosts):
    import torch

    from zoo.loading import build_model

    checkpoint = _uploaded_checkpoint()
    assert s3_hosts.keys("weights/") == [checkpoint.weights_file.name]
    assert not (s3_hosts.base / "a" / "media").exists()  # nothing under MEDIA_ROOT

    cache_b = s3_hosts.use("b")
    path = checkpoint.weights_location()
    assert path.is_relative_to(cache_b) and path.suffix == ".safetensors"
    assert sha256_of_path(path) == checkpoint.weights_sha256
    model = build_model(checkpoint)
    assert model(torch.zeros(1, 3, 32, 32)).shape[0] == 1

    checkpoint.weights_file.storage.delete(checkpoint.weights_file.name)
    s3_hosts.use("c")
    with pytest.raises(WeightsError, match="not in the store"):
        checkpoint.weights_location()


@pytest.mark.django_db
def test_the_model_card_asks_the_store_without_downloading(s3_hosts, client, admin_user):
    checkpoint = _uploaded_checkpoint()
    cache_b = s3_hosts.use("b")
    client.force_login(admin_user)

    html = client.get(f"/zoo/{checkpoint.pk}/").content.decode()

    assert "in the object store" in html
    assert not any(cache_b.rglob("*.safetensors"))  # nothing fetched for the page
    checkpoint.weights_file.storage.delete(checkpoint.weights_file.name)
    assert "missing from the object store" in client.get(f"/zoo/{checkpoint.pk}/").content.decode()


@pytest.mark.django_db
def test_demo_weights_go_to_the_store(s3_hosts):
    from zoo.demo_zoo import DEMO_ZOO, build_checkpoint, is_current

    recipe = DEMO_ZOO[0]
    checkpoint, trained = build_checkpoint(recipe, seed=0, limit=40)
    assert trained
    assert checkpoint.weights_source == "upload" and not checkpoint.weights_path
    assert s3_hosts.keys("weights/") == [f"weights/{recipe.name}.safetensors"]
    s3_hosts.use("b")
    assert is_current(checkpoint, recipe.describe(0, 40))  # fetched, and its sha256 matches
    again, trained = build_checkpoint(recipe, seed=0, limit=40)
    assert not trained and again.pk == checkpoint.pk


# Features -----------------------------------------------------------------------------------------

def test_features_stored_by_one_host_are_found_by_another(s3_hosts):
    key = caches.content_key(test="features-across-hosts")
    features = np.arange(12, dtype=np.float32).reshape(4, 3)
    cache_a = s3_hosts.use("a")
    caches.features.save(key, "pre_logits", features)
    array, tmp = caches.features.open_for_writing(key, "logits", (4, 2), np.float32)
    array[:] = 7
    caches.features.commit(array, tmp, key, "logits")
    caches.images.save(key, "pixels", np.zeros((4, 3, 2, 2), dtype=np.uint8))
    assert s3_hosts.keys("cache/") == [f"cache/features/{key[:2]}/{key}/logits.npy",
                                       f"cache/features/{key[:2]}/{key}/pre_logits.npy"]
    assert f"images/{key[:2]}/{key}/pixels.npy" in local_cache().entries()  # local only

    cache_b = s3_hosts.use("b")
    assert caches.features.has(key, "pre_logits") and caches.features.has(key, "logits")
    assert not caches.features.has(key, "stage_names")
    assert not caches.images.has(key, "pixels")
    np.testing.assert_array_equal(caches.features.load(key, "pre_logits"), features)
    np.testing.assert_array_equal(caches.features.load(key, "logits", mmap=True), 7)
    assert caches.features.path(key, "pre_logits").is_relative_to(cache_b)
    assert caches.features.path(key, "pre_logits").is_file()  # now on host b as well
    assert f"features/{key[:2]}/{key}/pre_logits.npy" in local_cache().entries()
    assert cache_a != cache_b


@pytest.mark.django_db
def test_distilled_weights_go_to_the_store(s3_hosts):
    from types import SimpleNamespace

    import timm

    from workers.transfers import save_distilled
    from zoo.loading import build_model

    student = _uploaded_checkpoint("student", seed=1)
    teacher = _uploaded_checkpoint("teacher", seed=2)
    dataset = SimpleNamespace(pk=3, class_names=["cats", "dogs"], name="pets", content_hash="h")
    transfer = SimpleNamespace(pk=7, student=student, teacher=teacher, teachers=[teacher],
                               variant="supervised", mode="sequential", order="ascending",
                               evaluation=SimpleNamespace(dataset=dataset, owner_id=None),
                               evaluation_id=3)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=2)  # the dataset's
    distilled = save_distilled(transfer, model, {"delta": {"accuracy_after": 61.0},
                                                 "recipe": {}})
    assert distilled.weights_source == "upload" and not distilled.weights_path
    assert distilled.weights_file.name == "weights/distilled/transfer_7.safetensors"
    assert "weights/distilled/transfer_7.safetensors" in s3_hosts.keys("weights/")
    assert not (s3_hosts.base / "a" / "media").exists()
    s3_hosts.use("b")
    assert sha256_of_path(distilled.weights_location()) == distilled.weights_sha256
    build_model(distilled)
