"""Thumbnails are made once, by the worker that ingests an archive, and stored beside the
images; the thumbnail page only reads them, so no web request decodes an original image.

A dataset stored before that has no thumbnails: its page gets a grey placeholder, never
the original decoded, and a worker is asked (once) to make them.
"""

import io
import shutil
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from tests.builders import png_bytes
from transferability.archives import folder_bytes
from transferability.datasets import accept_upload
from transferability.models import TargetDataset
from workers import ingest

pytestmark = pytest.mark.django_db

BIG = (3000, 2000)
REAL_OPEN = Image.open  # for the test's own reading, once decoding is refused


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def alice(client, owner):
    client.force_login(owner)
    return client


def jpeg_bytes(size, colour=(200, 60, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def ingested(owner, sent_tasks) -> TargetDataset:
    """A dataset as the worker ingests an upload: two classes of small PNGs, and one large
    JPEG, sample 0."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("big/a-photo.jpg", jpeg_bytes(BIG))
        for i in range(3):
            zf.writestr(f"big/p{i}.png", png_bytes(rng, 12))
            zf.writestr(f"small/{i}.png", png_bytes(rng, 30))
    dataset = accept_upload(owner, "d", SimpleUploadedFile("d.zip", buffer.getvalue()))
    assert ingest.ingest_upload(dataset.pk) == "ready"
    dataset.refresh_from_db()
    return dataset


def thumbnails(dataset) -> list:
    return sorted((dataset.root / "thumbnails").glob("*.png"))


def no_decoding(monkeypatch):
    """Any decode in this process from now on fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded in the web process")
    monkeypatch.setattr(Image, "open", refuse)


def test_ingest_stores_a_small_thumbnail_for_every_image(owner, sent_tasks):
    from transferability.archives import thumbnail_name

    dataset = ingested(owner, sent_tasks)

    assert len(thumbnails(dataset)) == dataset.num_images == 7
    for index in range(dataset.num_images):
        with Image.open(dataset.root / thumbnail_name(index)) as im:
            assert im.format == "PNG" and max(im.size) == 96
    with Image.open(dataset.root / thumbnail_name(0)) as im:  # the 3000 x 2000 photo
        assert im.size == (96, 64)
        assert im.getpixel((48, 32)) == pytest.approx((200, 60, 40), abs=6)


def test_the_stored_thumbnails_count_in_the_datasets_stored_bytes(owner, sent_tasks):
    dataset = ingested(owner, sent_tasks)

    thumbnail_bytes = sum(path.stat().st_size for path in thumbnails(dataset))
    assert thumbnail_bytes > 0
    assert dataset.stored_bytes == folder_bytes(dataset.root)
    originals = dataset.image_stats["bytes"]
    assert dataset.stored_bytes >= originals + thumbnail_bytes


def test_the_thumbnail_page_answers_without_decoding_the_original(alice, owner, sent_tasks,
                                                                   monkeypatch):
    dataset = ingested(owner, sent_tasks)
    for original in (dataset.root / "00000").iterdir():
        original.write_bytes(b"not an image any more")
    (dataset.root / "00001" / "0000004.png").unlink()  # an original gone altogether
    no_decoding(monkeypatch)

    for index in range(dataset.num_images):
        response = alice.get(reverse("dataset-image", args=[dataset.pk, index]))
        assert response.status_code == 200, index
        assert response["Content-Type"] == "image/png"
        assert response.content == sorted(thumbnails(dataset))[index].read_bytes()
        assert "private" in response["Cache-Control"] and response["ETag"]


def test_a_dataset_stored_before_gets_a_placeholder_and_a_worker_makes_them(
        alice, owner, sent_tasks, monkeypatch):
    dataset = ingested(owner, sent_tasks)
    shutil.rmtree(dataset.root / "thumbnails", ignore_errors=True)  # as stored before
    TargetDataset.objects.filter(pk=dataset.pk).update(
        stored_bytes=folder_bytes(dataset.root))
    before = folder_bytes(dataset.root)
    with monkeypatch.context() as patched:
        no_decoding(patched)
        answers = [alice.get(reverse("dataset-image", args=[dataset.pk, i])) for i in (0, 1, 0)]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a["Content-Type"] == "image/png" and a["Cache-Control"] == "no-store"
               and not a.has_header("ETag") for a in answers)
    with Image.open(io.BytesIO(answers[0].content)) as placeholder:
        assert placeholder.size == (96, 96)
    assert [(name, args) for name, args, _ in sent_tasks
            if name == "workers.tasks.make_thumbnails"] == [("workers.tasks.make_thumbnails",
                                                             (dataset.pk,))]  # asked once

    assert ingest.make_thumbnails(dataset.pk) == dataset.num_images
    dataset.refresh_from_db()
    assert len(thumbnails(dataset)) == dataset.num_images
    assert dataset.stored_bytes == folder_bytes(dataset.root) > before
    no_decoding(monkeypatch)
    response = alice.get(reverse("dataset-image", args=[dataset.pk, 0]))
    assert response.status_code == 200 and response["ETag"]
    with REAL_OPEN(io.BytesIO(response.content)) as im:
        assert im.size == (96, 64)
