"""Hub checkpoints fetched for real: huggingface_hub and timm against a hub on loopback
(tests/hub.py), reached through HF_ENDPOINT as a deployment reaches the real one."""

import hashlib
import threading
from pathlib import Path

import pytest
import torch

from tests.hub import LocalHub, local_hub, timm_repo_files  # noqa: F401  (fixture)
from tests.object_store import s3_endpoint, s3_hosts  # noqa: F401  (fixtures)
from zoo.hub import downloading_message, fetch_weights, remove_from_cache
from zoo.loading import build_model
from zoo.models import Checkpoint
from zoo.weights import WeightsError

REPO = "timm/test_resnet.r160_in1k"


def timm_checkpoint(name="test_resnet.r160_in1k", architecture="test_resnet", tag="r160_in1k",
                    hub_id="") -> Checkpoint:
    return Checkpoint.objects.create(
        name=name, architecture=architecture, pretrained_tag=tag, hub_id=hub_id,
        input_size=[3, 160, 160], mean=[0.5] * 3, std=[0.5] * 3, num_classes=1000)


def assert_same_weights(model, state):
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())


def cache_files(folder, pattern="*"):
    return sorted(p.name for p in Path(folder).rglob(pattern) if p.is_file() or p.is_symlink())


@pytest.mark.django_db
def test_a_timm_name_is_fetched_with_progress_and_its_sha256_recorded(local_hub):
    state = local_hub.add_timm_model(REPO, "test_resnet")
    checkpoint = timm_checkpoint()
    progress = []

    model = build_model(checkpoint, download_progress=lambda done, total:
                        progress.append((done, total)))

    assert_same_weights(model, state)
    size = len(local_hub.repos[REPO].files["model.safetensors"])
    assert progress[0] == (0, size) and progress[-1] == (size, size)
    # Reported as the bytes come, not once at the end (the client's 10 MiB chunks would).
    done = [d for d, _ in progress]
    assert len(done) >= size // (512 * 1024) and done == sorted(done)
    checkpoint.refresh_from_db()
    assert checkpoint.hub_files == {
        "model.safetensors": hashlib.sha256(local_hub.repos[REPO].files["model.safetensors"])
        .hexdigest()}
    assert local_hub.downloads(REPO) == 1


@pytest.mark.django_db
def test_cached_weights_are_read_without_asking_the_hub(local_hub):
    local_hub.add_timm_model(REPO, "test_resnet")
    checkpoint = timm_checkpoint()
    build_model(checkpoint)
    asked = len(local_hub.requests)

    build_model(checkpoint)

    assert len(local_hub.requests) == asked


@pytest.mark.django_db
def test_an_hf_hub_id_is_fetched_from_its_repository(local_hub):
    state = local_hub.add_timm_model("acme/tiny-vit", "test_vit", seed=3)
    checkpoint = timm_checkpoint("acme-tiny-vit", "test_vit", "", hub_id="hf-hub:acme/tiny-vit")

    assert_same_weights(build_model(checkpoint), state)
    assert {r.repo_id for r in local_hub.requests} == {"acme/tiny-vit"}


def test_the_progress_message_reads_in_megabytes():
    assert downloading_message(97_800_000, 102_000_000) == "downloading 97.8 of 102 MB"
    assert downloading_message(1_500_000, 0) == "downloading 1.5 MB"


@pytest.mark.django_db
def test_a_repository_not_on_the_hub_fails_with_its_id(local_hub):
    checkpoint = timm_checkpoint("ghost", hub_id="acme/ghost")
    with pytest.raises(WeightsError, match="not on the hub: acme/ghost"):
        build_model(checkpoint)
    assert len(local_hub.requests) == 1  # not found is not retried


@pytest.mark.django_db
def test_server_errors_are_retried_then_the_download_works(local_hub):
    state = local_hub.add_timm_model(REPO, "test_resnet")
    local_hub.fail(REPO, 500, times=2, method="HEAD")

    assert_same_weights(build_model(timm_checkpoint()), state)
    assert [r.answered for r in local_hub.requests][:2] == [500, 500]


@pytest.mark.django_db
def test_a_hub_that_keeps_failing_gives_a_clear_failure_after_a_few_tries(local_hub):
    local_hub.add_timm_model(REPO, "test_resnet")
    local_hub.fail(REPO, 503, times=100)

    with pytest.raises(WeightsError, match="the hub failed 3 times for timm/test_resnet"):
        build_model(timm_checkpoint())
    assert len(local_hub.requests) == 3


@pytest.mark.django_db
def test_a_hub_that_does_not_answer_times_out_and_is_tried_again(local_hub):
    state = local_hub.add_timm_model(REPO, "test_resnet")
    local_hub.fail(REPO, "hang", times=1, method="HEAD")

    assert_same_weights(build_model(timm_checkpoint()), state)
    assert local_hub.requests[0].answered == "hang"


@pytest.mark.django_db
def test_a_download_cut_halfway_is_resumed_and_never_used_half(local_hub, tmp_path):
    state = local_hub.add_timm_model(REPO, "test_resnet")
    local_hub.fail(REPO, "cut", times=1, method="GET")

    assert_same_weights(build_model(timm_checkpoint()), state)
    bodies = [r.answered for r in local_hub.requests if r.method == "GET"]
    assert bodies[0] == "cut" and bodies[1] in (200, 206)  # again from the start, or the rest
    assert not cache_files(tmp_path / "hf-cache", "*.incomplete")


@pytest.mark.django_db
def test_a_download_cut_every_time_fails_leaves_nothing_and_the_next_try_starts_clean(
        local_hub, settings, tmp_path):
    settings.ZOORANK_HUB_TRIES = 1  # the client itself resumes five times, a second apart
    state = local_hub.add_timm_model(REPO, "test_resnet")
    local_hub.fail(REPO, "cut", times=100, method="GET")
    checkpoint = timm_checkpoint()

    with pytest.raises(WeightsError, match="the hub failed 1 times"):
        build_model(checkpoint)
    assert not cache_files(tmp_path / "hf-cache", "blobs/*")  # no half file under any name
    assert not cache_files(tmp_path / "hf-cache", "snapshots/*/*")

    local_hub.faults.clear()
    assert_same_weights(build_model(checkpoint), state)


@pytest.mark.django_db
def test_a_damaged_file_in_the_cache_is_fetched_again(local_hub):
    state = local_hub.add_timm_model(REPO, "test_resnet")
    checkpoint = timm_checkpoint()
    blob = fetch_weights(checkpoint).weights_path.resolve()
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])

    assert_same_weights(build_model(checkpoint), state)
    assert local_hub.downloads(REPO) == 2


@pytest.mark.django_db
def test_weights_that_changed_on_the_hub_are_refused(local_hub):
    local_hub.add_timm_model(REPO, "test_resnet", seed=0)
    checkpoint = timm_checkpoint()
    first = fetch_weights(checkpoint).sha256["model.safetensors"]
    files, _ = timm_repo_files("test_resnet", seed=1)
    local_hub.add_repo(REPO, files)
    remove_from_cache(REPO)

    with pytest.raises(WeightsError) as refused:
        build_model(checkpoint)
    message = str(refused.value)
    assert "model.safetensors" in message and first in message
    assert hashlib.sha256(files["model.safetensors"]).hexdigest() in message


@pytest.mark.django_db
def test_offline_without_a_cached_copy_says_so_and_with_one_reads_it(local_hub, monkeypatch):
    state = local_hub.add_timm_model(REPO, "test_resnet")
    checkpoint = timm_checkpoint()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="not in the local hub cache and the hub is offline"):
        build_model(checkpoint)
    assert local_hub.requests == []

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    build_model(checkpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert_same_weights(build_model(checkpoint), state)


@pytest.mark.django_db
def test_a_gated_repository_asks_for_a_token_and_works_with_hf_token(local_hub, monkeypatch):
    state = local_hub.add_timm_model("acme/gated", "test_resnet", token="s3cret", gated=True)
    checkpoint = timm_checkpoint("acme-gated", hub_id="acme/gated")
    with pytest.raises(WeightsError, match="gated on the hub: a token is needed .*HF_TOKEN"):
        build_model(checkpoint)

    monkeypatch.setenv("HF_TOKEN", "s3cret")
    assert_same_weights(build_model(checkpoint), state)
    assert local_hub.requests[-2].authorization == "Bearer s3cret"  # the HEAD before the body


@pytest.mark.django_db
def test_a_private_repository_without_a_token_says_to_set_one(local_hub):
    local_hub.add_timm_model("acme/private", "test_resnet", token="s3cret")
    checkpoint = timm_checkpoint("acme-private", hub_id="acme/private")
    with pytest.raises(WeightsError, match="not on the hub: acme/private .*set HF_TOKEN"):
        build_model(checkpoint)


@pytest.mark.django_db(transaction=True)
def test_concurrent_fetches_of_one_repository_download_it_once(local_hub):
    local_hub.add_timm_model(REPO, "test_resnet")
    checkpoint = timm_checkpoint()
    errors = []

    def fetch():
        try:
            fetch_weights(Checkpoint.objects.get(pk=checkpoint.pk))
        except Exception as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            from django.db import connection
            connection.close()

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [] and local_hub.downloads(REPO) == 1
    assert sum(1 for r in local_hub.requests if r.method == "HEAD") <= 2


@pytest.mark.django_db
def test_an_evaluation_records_a_missing_hub_checkpoint_and_ranks_the_others(
        local_hub, owner, tmp_path, private_stores):
    from tests.builders import colours_dataset, evaluated, saved_checkpoint
    from transferability.models import Status

    local_hub.add_timm_model(REPO, "test_resnet")
    present = saved_checkpoint("local-one", "test_resnet")
    from_hub = timm_checkpoint()
    ghost = timm_checkpoint("ghost", hub_id="acme/ghost")
    evaluation = evaluated(owner, colours_dataset(owner, tmp_path), [present, from_hub, ghost],
                           metrics=["logme"])

    results = {r.checkpoint.name: r for r in evaluation.results.all()}
    assert results["local-one"].status == Status.DONE
    assert results[from_hub.name].status == Status.DONE
    assert results[from_hub.name].message == ""  # "downloading ..." is gone once it is in
    from_hub.refresh_from_db()
    assert set(from_hub.hub_files) == {"model.safetensors"}
    assert results["ghost"].status == Status.FAILED
    assert "not on the hub: acme/ghost" in results["ghost"].message

    from workers.jobs import _download_writer
    _download_writer(results[from_hub.name].pk)(102_000_000, 102_000_000)
    results[from_hub.name].refresh_from_db()
    assert results[from_hub.name].message == "downloading 102 of 102 MB"



@pytest.mark.django_db
def test_a_second_host_copies_the_weights_from_the_object_store_not_the_hub(
        local_hub, s3_hosts, monkeypatch, tmp_path):
    state = local_hub.add_timm_model(REPO, "test_resnet")
    checkpoint = timm_checkpoint()
    sha = hashlib.sha256(local_hub.repos[REPO].files["model.safetensors"]).hexdigest()

    first = fetch_weights(checkpoint)  # host "a": from the hub, then into the store
    assert first.source == "hub" and local_hub.downloads(REPO) == 1
    assert s3_hosts.keys("hub/") == [f"hub/{sha}/model.safetensors"]
    again = fetch_weights(Checkpoint.objects.get(pk=checkpoint.pk))  # host "a" again
    assert again.source == "cache" and not (tmp_path / "a" / "cache" / "hub").exists()

    s3_hosts.use("b")  # another host: its own bounded cache and its own hub cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "host-b-hf-cache"))
    local_hub.fail(REPO, 500, times=100)  # the hub is down for host b: it must not matter
    second = fetch_weights(Checkpoint.objects.get(pk=checkpoint.pk))

    assert second.source == "store" and second.sha256 == {"model.safetensors": sha}
    assert str(second.weights_path).startswith(str(tmp_path / "b" / "cache"))
    assert local_hub.downloads(REPO) == 1
    assert_same_weights(build_model(Checkpoint.objects.get(pk=checkpoint.pk)), state)


@pytest.mark.django_db
def test_a_damaged_copy_in_the_object_store_is_never_used_and_the_hub_is_asked(
        local_hub, s3_hosts):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    state = local_hub.add_timm_model(REPO, "test_resnet")
    sha = hashlib.sha256(local_hub.repos[REPO].files["model.safetensors"]).hexdigest()
    checkpoint = timm_checkpoint()
    Checkpoint.objects.filter(pk=checkpoint.pk).update(hub_files={"model.safetensors": sha})
    default_storage.save(f"hub/{sha}/model.safetensors", ContentFile(b"not these weights"))

    fetched = fetch_weights(Checkpoint.objects.get(pk=checkpoint.pk))

    assert fetched.source == "hub" and local_hub.downloads(REPO) == 1
    assert_same_weights(build_model(Checkpoint.objects.get(pk=checkpoint.pk)), state)
    with default_storage.open(f"hub/{sha}/model.safetensors") as stored:  # replaced
        assert hashlib.sha256(stored.read()).hexdigest() == sha


@pytest.mark.django_db
def test_a_partial_file_left_by_a_killed_worker_is_removed_and_the_download_starts_clean(
        local_hub, tmp_path):
    from huggingface_hub.file_download import repo_folder_name

    state = local_hub.add_timm_model(REPO, "test_resnet")
    blobs = tmp_path / "hf-cache" / repo_folder_name(repo_id=REPO, repo_type="model") / "blobs"
    blobs.mkdir(parents=True)
    weights = local_hub.repos[REPO].files["model.safetensors"]
    left = blobs / f"{hashlib.sha256(weights).hexdigest()}.dead-worker.incomplete"
    left.write_bytes(weights[:1000])  # what a SIGKILLed download leaves

    model = build_model(timm_checkpoint())

    assert_same_weights(model, state)
    assert not left.exists() and not cache_files(tmp_path / "hf-cache", "*.incomplete")
    assert local_hub.downloads(REPO) == 1


def test_a_partial_file_whose_writer_is_at_work_is_left_alone(tmp_path):
    from filelock import FileLock
    from huggingface_hub.file_download import repo_folder_name

    from zoo.hub import _remove_stale_partials

    cache, etag = tmp_path / "hf-cache", "a" * 64
    folder = repo_folder_name(repo_id=REPO, repo_type="model")
    blobs = cache / folder / "blobs"
    blobs.mkdir(parents=True)
    dead = blobs / f"{'b' * 64}.1234abcd.incomplete"
    busy = blobs / f"{etag}.5678ef01.incomplete"
    dead.write_bytes(b"x" * 10)
    busy.write_bytes(b"y" * 10)
    # The client holds .locks/<repository>/<etag>.lock while it writes (another process:
    # another worker, the web process reading a config, `hf download`).
    (cache / ".locks" / folder).mkdir(parents=True)
    with FileLock(str(cache / ".locks" / folder / f"{etag}.lock")):
        _remove_stale_partials(cache, REPO)

    assert busy.exists() and not dead.exists()
