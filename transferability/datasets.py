"""Turning an uploaded archive into a TargetDataset row and its folder in the store."""

import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction

from .archives import ArchiveError, ArchiveLimits, unpack_image_folder
from .models import TargetDataset

__all__ = ["ArchiveError", "create_target_dataset", "datasets_root"]


def datasets_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "datasets"


def archive_limits() -> ArchiveLimits:
    return ArchiveLimits(**settings.ZOORANK_ARCHIVE_LIMITS)


def create_target_dataset(owner, name: str, archive) -> TargetDataset:
    """Validate and store ``archive`` (a path or an open binary file) for ``owner``.

    Raises ArchiveError with a message naming the problem; then nothing is kept.
    """
    name = (name or "").strip()
    if not name:
        raise ArchiveError("give the dataset a name")
    store_dir = uuid.uuid4().hex
    dest = datasets_root() / store_dir
    unpacked = unpack_image_folder(archive, dest, archive_limits())
    try:
        with transaction.atomic():
            return TargetDataset.objects.create(
                owner=owner,
                name=name[:200],
                store_dir=store_dir,
                class_names=unpacked.class_names,
                class_counts=unpacked.class_counts,
                num_images=unpacked.num_images,
                content_hash=unpacked.content_hash,
                archive_bytes=_size(archive),
            )
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _size(archive) -> int:
    if isinstance(archive, (str, Path)):
        return Path(archive).stat().st_size
    return getattr(archive, "size", 0) or 0
