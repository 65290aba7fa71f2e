"""Background ingest of an uploaded archive (workers/ingest.py), as a worker runs it."""

import io
import zipfile
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from tests.builders import image_folder_zip, png_bytes, saved_checkpoint
from transferability import archives
from transferability.archives import unpacking_folder
from transferability.datasets import accept_upload, dataset_warnings
from transferability.models import TargetDataset
from transferability.submission import SubmissionError, submit_evaluation
from workers import healing, ingest
from workers.ingest import ingest_upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def uploaded(owner, data: bytes, name="d") -> TargetDataset:
    return accept_upload(owner, name, SimpleUploadedFile(f"{name}.zip", data))


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def images(prefix: str, n: int, rng) -> dict[str, bytes]:
    return {f"{prefix}/{i:03d}.png": png_bytes(rng) for i in range(n)}


def leftovers(media_root) -> list[str]:
    return sorted(str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file())


def test_it_unpacks_in_the_background_and_reports_progress(owner, media_root, sent_tasks,
                                                           monkeypatch):
    monkeypatch.setattr(archives, "PROGRESS_SECONDS", 0.0)  # report every entry
    seen = []
    real_check = ingest.healing.check_deadline
    monkeypatch.setattr(ingest.healing, "check_deadline",
                        lambda: seen.append(TargetDataset.objects.values_list(
                            "ingest_done", "ingest_total").get()) or real_check())
    archive = image_folder_zip(media_root.parent / "a.zip", {"cat": 6, "dog": 4})
    dataset = uploaded(owner, archive.read_bytes())
    assert dataset.state == "ingesting" and dataset.num_images == 0 and dataset.upload_name

    assert ingest_upload(dataset.pk) == "ready"

    dataset.refresh_from_db()
    assert (dataset.class_names, dataset.class_counts) == (["cat", "dog"], [6, 4])
    assert (dataset.ingest_done, dataset.ingest_total) == (10, 10)
    assert dataset.image_stats["images"] == 10 and dataset.ingested_at is not None
    assert seen[0] == (0, 0) and seen[-1][1] == 10  # progress was visible while it ran
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert leftovers(media_root) == sorted(
        str(p.relative_to(media_root)) for p in dataset.root.rglob("*") if p.is_file())


def test_a_few_unreadable_images_are_skipped_with_a_warning(owner, media_root):
    rng = np.random.default_rng(0)
    entries = {**images("cat", 120, rng), **images("dog", 120, rng),
               "dog/broken.png": png_bytes(rng)[:40], "cat/notes.txt": b"taken in 2024"}
    dataset = uploaded(owner, zip_bytes(entries))

    assert ingest_upload(dataset.pk) == "ready"

    dataset.refresh_from_db()
    assert dataset.num_images == 240
    assert dataset.skipped[0] == "cat/notes.txt: not an image file type"
    assert dataset.skipped[1].startswith("dog/broken.png: ")
    assert any("2 entries of the archive left out" in w
               for w in dataset_warnings(dataset, dataset.image_stats))


def test_too_many_unreadable_images_refuse_the_archive_and_keep_nothing(owner, media_root):
    rng = np.random.default_rng(1)
    entries = {**images("cat", 50, rng), **images("dog", 48, rng),
               "dog/a.png": b"\x89PNG broken", "dog/b.png": b"\x89PNG broken too"}
    dataset = uploaded(owner, zip_bytes(entries))

    assert ingest_upload(dataset.pk) == "refused"

    dataset.refresh_from_db()
    assert dataset.message.startswith("2 images could not be used: dog/a.png")
    assert "more than 1% of the 100 images" in dataset.message
    assert dataset.upload_name == "" and leftovers(media_root) == []


def test_a_claim_after_a_dead_worker_starts_afresh(owner, media_root):
    archive = image_folder_zip(media_root.parent / "a.zip", {"cat": 3, "dog": 3})
    dataset = uploaded(owner, archive.read_bytes())
    # What a worker killed mid-unpacking leaves: one claim spent, a half-filled folder.
    TargetDataset.objects.filter(pk=dataset.pk).update(attempts=1)
    half = unpacking_folder(dataset.root)
    (half / "00000").mkdir(parents=True)
    (half / "00000" / "0000000.png").write_bytes(b"half")

    assert ingest_upload(dataset.pk) == "ready"

    assert not half.exists() and TargetDataset.objects.get().attempts == 2
    assert ingest_upload(dataset.pk) is None  # a redelivered message changes nothing
    assert TargetDataset.objects.get().state == "ready"


def test_an_archive_that_kills_its_worker_twice_is_recorded_as_failed(owner, media_root):
    archive = image_folder_zip(media_root.parent / "a.zip", {"cat": 3, "dog": 3})
    dataset = uploaded(owner, archive.read_bytes())
    TargetDataset.objects.filter(pk=dataset.pk).update(attempts=2)

    assert ingest_upload(dataset.pk) is None

    dataset.refresh_from_db()
    assert dataset.state == "failed"
    assert dataset.message == "the worker stopped while ingesting this archive, 2 times"
    assert leftovers(media_root) == []


def test_a_dataset_deleted_while_it_is_ingested_leaves_nothing(owner, media_root, monkeypatch):
    archive = image_folder_zip(media_root.parent / "a.zip", {"cat": 3, "dog": 3})
    dataset = uploaded(owner, archive.read_bytes())
    real_publish = ingest.publish

    def publish_then_delete(store_dir, local_dir):
        real_publish(store_dir, local_dir)
        TargetDataset.objects.get(pk=dataset.pk).delete()  # the owner pressed Delete

    monkeypatch.setattr(ingest, "publish", publish_then_delete)

    assert ingest_upload(dataset.pk) is None
    assert leftovers(media_root) == []


def test_the_sweep_queues_a_silent_ingest_again_on_the_cpu_queue(owner, media_root, sent_tasks):
    archive = image_folder_zip(media_root.parent / "a.zip", {"cat": 3, "dog": 3})
    silent = uploaded(owner, archive.read_bytes(), "silent")
    fresh = uploaded(owner, archive.read_bytes(), "fresh")
    TargetDataset.objects.filter(pk=silent.pk).update(
        heartbeat_at=timezone.now() - timedelta(hours=1))

    assert healing.sweep()["ingests"] == [silent.pk]
    assert ("workers.tasks.ingest_dataset", (silent.pk,), "cpu") in sent_tasks
    assert all(args != (fresh.pk,) for _, args, _ in sent_tasks)
    assert healing.sweep()["ingests"] == []  # stamped: not queued twice


def test_an_evaluation_waits_for_the_dataset_to_be_ready(owner, media_root):
    archive = image_folder_zip(media_root.parent / "a.zip", {"cat": 3, "dog": 3})
    dataset = uploaded(owner, archive.read_bytes())
    checkpoint = saved_checkpoint("ck-a")

    with pytest.raises(SubmissionError, match="the dataset is ingesting, not ready"):
        submit_evaluation(owner, dataset, [checkpoint], enqueue_work=False)
    ingest_upload(dataset.pk)
    dataset.refresh_from_db()
    assert submit_evaluation(owner, dataset, [checkpoint], enqueue_work=False).pk
