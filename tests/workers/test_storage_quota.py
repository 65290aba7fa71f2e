"""The storage quota per user and the archive-wide expansion limit, through the real upload
and ingest path: what would go over either is refused and leaves nothing behind."""

import io
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from tests.builders import png_bytes
from transferability.archives import ArchiveError, ArchiveLimits, unpack_image_folder
from transferability.datasets import accept_upload
from transferability.models import TargetDataset
from transferability.quota import storage_use
from workers.ingest import ingest_upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def files_in(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def deflated(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def bmp(side: int, seed: int | None = None) -> bytes:
    """A BMP of ``side`` x ``side`` pixels: all zero (compresses about 1000:1), or a few
    random grey levels (compresses a few times)."""
    pixels = np.zeros((side, side, 3), np.uint8)
    if seed is not None:
        pixels[:] = np.random.default_rng(seed).integers(0, 4, (side, side, 1), np.uint8) * 60
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="BMP")
    return out.getvalue()


def small_file_bomb(count: int = 40) -> bytes:
    """All-zero BMPs of just under 1 MiB each: no entry is over the per-entry ratio check's
    size, all of them together expand about 900:1."""
    zero = bmp(590)
    assert len(zero) < 1 << 20
    return deflated({f"{'ab'[i % 2]}/{i:03d}.bmp": zero for i in range(count)})


def test_a_small_file_bomb_is_refused_by_the_archive_wide_ratio(tmp_path):
    archive = small_file_bomb()
    dest = tmp_path / "store" / "d"
    with pytest.raises(ArchiveError, match=r"entries together unpack to 40 MiB from 4[0-9] KiB, more "
                                           r"than 200:1, which looks like a zip bomb"):
        unpack_image_folder(io.BytesIO(archive), dest, ArchiveLimits())
    assert not dest.exists() and files_in(tmp_path) == []


def test_a_small_file_bomb_uploaded_ends_refused_with_nothing_on_disk(owner, media_root):
    dataset = accept_upload(owner, "bomb", SimpleUploadedFile("bomb.zip", small_file_bomb()))
    assert ingest_upload(dataset.pk) == "refused"
    dataset.refresh_from_db()
    assert "looks like a zip bomb" in dataset.message
    assert files_in(media_root) == []
    assert storage_use(owner).used == 0


def test_an_upload_that_would_go_over_the_quota_is_not_stored(owner, media_root, settings):
    settings.ZOORANK_USER_QUOTA_GB = 20_000 / 2**30  # 20 kB
    rng = np.random.default_rng(0)
    archive = deflated({f"{c}/{i}.png": png_bytes(rng, 48) for c in "ab" for i in range(8)})
    assert len(archive) > 20_000
    with pytest.raises(ArchiveError, match=r"would go over your storage quota: 0 bytes of "
                                           r"20 KiB in use"):
        accept_upload(owner, "big", SimpleUploadedFile("big.zip", archive))
    assert not TargetDataset.objects.exists()
    assert files_in(media_root) == []


def test_an_archive_that_expands_past_the_quota_is_refused_while_unpacking(owner, media_root,
                                                                          settings):
    """Small enough to store, under the ratio limit, but its images take more than the quota
    leaves: refused by the worker, nothing kept."""
    archive = deflated({f"{c}/{i}.bmp": bmp(64, seed=i) for c in "ab" for i in range(6)})
    unpacked = 12 * len(bmp(64, seed=0))
    settings.ZOORANK_USER_QUOTA_GB = (len(archive) + unpacked) / 2 / 2**30
    assert len(archive) < unpacked / 2
    dataset = accept_upload(owner, "grey", SimpleUploadedFile("grey.zip", archive))
    assert ingest_upload(dataset.pk) == "refused"
    dataset.refresh_from_db()
    assert "more than the" in dataset.message and "left of your storage quota" in \
        dataset.message, dataset.message
    assert files_in(media_root) == []


def test_usage_counts_datasets_and_waiting_uploads_and_the_pages_show_it(owner, media_root,
                                                                          client):
    rng = np.random.default_rng(1)
    archive = deflated({f"{c}/{i}.png": png_bytes(rng, 24) for c in "ab" for i in range(4)})
    first = accept_upload(owner, "one", SimpleUploadedFile("one.zip", archive))
    assert storage_use(owner).used == len(archive)  # the upload, waiting
    assert ingest_upload(first.pk) == "ready"
    first.refresh_from_db()
    on_disk = sum((media_root / "datasets" / first.store_dir / f).stat().st_size
                  for f in files_in(media_root / "datasets" / first.store_dir))
    assert first.stored_bytes == on_disk > 0
    waiting = accept_upload(owner, "two", SimpleUploadedFile("two.zip", archive))
    assert storage_use(owner).used == on_disk + len(archive)
    client.force_login(owner)
    for url in (reverse("dashboard"), first.get_absolute_url(), reverse("dataset-upload")):
        page = client.get(url).content.decode()
        assert 'id="storage"' in page and "20.0\xa0GB" in page, url
    assert waiting.pk


def test_the_api_refuses_an_upload_over_the_quota_before_reading_it(owner, media_root,
                                                                    settings):
    settings.ZOORANK_USER_QUOTA_GB = 1000 / 2**30
    api = APIClient()
    api.force_authenticate(owner)
    rng = np.random.default_rng(2)
    archive = deflated({f"{c}/{i}.png": png_bytes(rng, 48) for c in "ab" for i in range(4)})
    response = api.post("/api/datasets/", {"name": "x", "file": io.BytesIO(archive)},
                        format="multipart")
    assert response.status_code == 400
    assert "would go over your storage quota" in response.json()["file"][0]
    assert files_in(media_root) == [] and not TargetDataset.objects.exists()


def test_skipped_entries_are_kept_to_the_first_hundred_with_their_count(owner, media_root,
                                                                       client):
    rng = np.random.default_rng(3)
    entries = {f"{c}/{i}.png": png_bytes(rng) for c in "ab" for i in range(3)}
    entries.update({f"a/note{i:04d}.txt": b"x" for i in range(250)})
    dataset = accept_upload(owner, "notes", SimpleUploadedFile("n.zip", deflated(entries)))
    assert ingest_upload(dataset.pk) == "ready"
    dataset.refresh_from_db()
    assert dataset.skipped_count == 250 and len(dataset.skipped) == 100
    api = APIClient()
    api.force_authenticate(owner)
    body = api.get(f"/api/datasets/{dataset.pk}/").json()
    assert body["skipped_count"] == 250 and len(body["skipped"]) == 100
    client.force_login(owner)
    assert "250 entries of the archive left out" in client.get(
        dataset.get_absolute_url()).content.decode()
