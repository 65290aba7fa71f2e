"""Ingesting an uploaded archive in the background: validate, unpack, describe, publish.

The web process stored the archive as it arrived (``transferability.datasets.accept_upload``)
and answered at once; this job, on the ``cpu`` queue, turns the row ``ingesting`` into
``ready`` or ``refused``. It claims the row like every worker job (a conditional update, at
most ``MAX_ATTEMPTS`` claims: an archive that kills its worker twice is recorded as failed),
beats while it unpacks (so the sweep in :mod:`.healing` queues it again if its worker dies),
reports progress over the image entries, and keeps nothing of a refused archive.

Unpacking also makes each image's thumbnail (transferability/archives.py). A dataset stored
before that has none; :func:`make_thumbnails` makes them when its page first asks.
"""

import logging
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

from django.core.files.storage import default_storage
from django.db.models import F
from django.utils import timezone
from PIL import Image

from transferability.archives import (THUMBNAILS, ArchiveError, folder_bytes, read_manifest,
                                      thumbnail_name, unpack_image_folder, unpacking_folder)
from transferability.decoding import thumbnail_png
from transferability.dataset_store import datasets_root, publish, remove
from transferability.datasets import archive_limits, unpacked_fields
from transferability.models import TargetDataset

from . import healing

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
State = TargetDataset.State


def claim(dataset_id: int) -> bool:
    """Take an ``ingesting`` row for this worker; give up on it after MAX_ATTEMPTS claims."""
    rows = TargetDataset.objects.filter(pk=dataset_id, state=State.INGESTING)
    if rows.filter(attempts__lt=MAX_ATTEMPTS).update(
            attempts=F("attempts") + 1, heartbeat_at=timezone.now(), ingest_done=0):
        return True
    if rows.update(state=State.FAILED, message=f"the worker stopped while ingesting this "
                                               f"archive, {MAX_ATTEMPTS} times"):
        _discard_upload(dataset_id)
    return False


def ingest_upload(dataset_id: int) -> str | None:
    """Ingest one uploaded archive; returns the row's final state (None: not ours)."""
    if not claim(dataset_id):
        return None
    dataset = TargetDataset.objects.get(pk=dataset_id)
    dest = datasets_root() / dataset.store_dir
    # A claim after a dead worker starts afresh: what that one left is not trusted.
    remove(dataset.store_dir)
    shutil.rmtree(unpacking_folder(dest), ignore_errors=True)

    def progress(done: int, total: int) -> None:
        healing.check_deadline()
        still_ours = TargetDataset.objects.filter(pk=dataset_id, state=State.INGESTING).update(
            ingest_done=done, ingest_total=total, heartbeat_at=timezone.now())
        if not still_ours:
            raise Abandoned("the dataset was deleted while it was ingested")

    try:
        with healing.deadline(), local_copy(dataset.upload_name) as archive:
            limits = archive_limits(dataset.owner, leave_out=dataset)
            unpacked = unpack_image_folder(archive, dest, limits, progress=progress)
            publish(dataset.store_dir, dest)
    except ArchiveError as exc:
        return _end(dataset, State.REFUSED, str(exc))
    except Abandoned:
        remove(dataset.store_dir)
        _delete_upload(dataset.upload_name)
        return None
    except Exception as exc:  # ours, not the archive's: a full disk, the time limit
        log.exception("ingest of dataset %s failed", dataset_id)
        remove(dataset.store_dir)
        return _end(dataset, State.FAILED, f"ingest failed: {exc}"[:2000])
    fields = unpacked_fields(unpacked)
    if not TargetDataset.objects.filter(pk=dataset_id, state=State.INGESTING).update(
            ingest_done=unpacked.num_images + len(unpacked.skipped),
            ingested_at=timezone.now(), upload_name="", **fields):
        remove(dataset.store_dir)  # deleted meanwhile
        _delete_upload(dataset.upload_name)
        return None
    _delete_upload(dataset.upload_name)
    return State.READY


def make_thumbnails(dataset_id: int) -> int | None:
    """Make the thumbnails of a ready dataset stored before ingest made them; returns how
    many were made (None: no such dataset, or it has them already).

    They are written to a folder of their own and renamed into place when all are made, so a
    page never sees part of them, and a second worker doing the same loses only its time.
    An image that does not decode is left without one (its page answers 404). The dataset's
    ``stored_bytes`` then counts them, as for a dataset ingested with them.
    """
    dataset = TargetDataset.objects.filter(pk=dataset_id, state=State.READY).first()
    if dataset is None:
        return None
    root = dataset.root
    if (root / THUMBNAILS).is_dir() or not root.is_dir():
        return None
    _, files = read_manifest(root)
    making = root / f".{THUMBNAILS}-{uuid.uuid4().hex}"
    making.mkdir()
    made = 0
    try:
        with healing.deadline():
            for index, (path, _) in enumerate(files):
                if index % 100 == 0:
                    healing.check_deadline()
                try:
                    with Image.open(root / path) as im:
                        png = thumbnail_png(im)
                except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
                    continue
                (making / Path(thumbnail_name(index)).name).write_bytes(png)
                made += 1
        os.rename(making, root / THUMBNAILS)
    except OSError:
        if (root / THUMBNAILS).is_dir():
            return None  # another worker's are in place
        raise
    finally:
        shutil.rmtree(making, ignore_errors=True)
    publish(dataset.store_dir, root)
    if not TargetDataset.objects.filter(pk=dataset_id).update(stored_bytes=folder_bytes(root)):
        remove(dataset.store_dir)  # deleted meanwhile
        return None
    return made


class Abandoned(Exception):
    """The row is gone (deleted) or no longer ours: stop and keep nothing."""


def _end(dataset, state: str, message: str) -> str:
    TargetDataset.objects.filter(pk=dataset.pk, state=State.INGESTING).update(
        state=state, message=message, upload_name="", ingested_at=timezone.now())
    _delete_upload(dataset.upload_name)
    return state


def _discard_upload(dataset_id: int) -> None:
    name = (TargetDataset.objects.filter(pk=dataset_id)
            .values_list("upload_name", flat=True).first())
    TargetDataset.objects.filter(pk=dataset_id).update(upload_name="")
    _delete_upload(name)


def _delete_upload(name: str | None) -> None:
    if name:
        default_storage.delete(name)


@contextmanager
def local_copy(name: str):
    """A local path of the stored upload: the file itself on the file system, else a
    temporary download (object storage), removed afterwards."""
    try:
        on_disk = Path(default_storage.path(name))
    except NotImplementedError:
        on_disk = None
    if on_disk is not None:
        yield on_disk
        return
    with tempfile.TemporaryDirectory(prefix="zoorank-upload-") as folder:
        path = Path(folder) / "archive.zip"
        with default_storage.open(name, "rb") as src, open(path, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        yield path
