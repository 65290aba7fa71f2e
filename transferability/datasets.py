"""Turning an uploaded archive into a TargetDataset row and its folder in the store.

Two paths: :func:`accept_upload` (the web page and the API) stores the archive as it
arrived and answers at once with a row in state ``ingesting``, a worker then runs
:func:`ingest_upload`; :func:`create_target_dataset` does both at once in this process
(``manage.py demo``, scripts and tests).
"""

import hashlib
import io
import uuid
import zipfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from PIL import Image

from .archives import (INGEST_POLICY, ArchiveError, ArchiveLimits, read_manifest,
                       unpack_image_folder)
from .dataset_store import datasets_root, publish, remove
from .models import TargetDataset
from .quota import check_upload, storage_use

__all__ = ["ArchiveError", "accept_upload", "create_target_dataset", "datasets_root",
           "image_statistics", "summarise_images", "ensure_statistics", "dataset_warnings",
           "queue_thumbnails"]


def archive_limits(owner=None, leave_out: TargetDataset | None = None) -> ArchiveLimits:
    """This site's limits; with ``owner``, also what their storage quota leaves (not counting
    ``leave_out``, the dataset being ingested, whose upload its unpacked folder replaces)."""
    limits = ArchiveLimits(**settings.ZOORANK_ARCHIVE_LIMITS)
    if owner is None:
        return limits
    use = storage_use(owner, leave_out=leave_out)
    return replace(limits, storage_left=use.left, storage_note=str(use))


def create_target_dataset(owner, name: str, archive) -> TargetDataset:
    """Validate and store ``archive`` (a path or an open binary file) for ``owner``, now.

    Raises ArchiveError with a message naming the problem; then nothing is kept.
    """
    name = _dataset_name(name)
    store_dir = uuid.uuid4().hex
    dest = datasets_root() / store_dir
    unpacked = unpack_image_folder(archive, dest, archive_limits(owner))
    try:
        publish(store_dir, dest)
        with transaction.atomic():
            return TargetDataset.objects.create(
                owner=owner, name=name, store_dir=store_dir, archive_bytes=_size(archive),
                ingested_at=timezone.now(), **unpacked_fields(unpacked))
    except BaseException:
        remove(store_dir)
        raise


def unpacked_fields(unpacked) -> dict:
    """The TargetDataset fields that an unpacked archive fills."""
    labels = [label for _, label in unpacked.files]
    return dict(class_names=unpacked.class_names, class_counts=unpacked.class_counts,
                num_images=unpacked.num_images, content_hash=unpacked.content_hash,
                image_stats=summarise_images(unpacked.images, labels),
                skipped=unpacked.skipped[:TargetDataset.SKIPPED_KEPT],
                skipped_count=len(unpacked.skipped), stored_bytes=unpacked.stored_bytes,
                state=TargetDataset.State.READY, message="")


def _dataset_name(name) -> str:
    name = (name or "").strip()
    if not name:
        raise ArchiveError("give the dataset a name")
    return name[:200]


# Background ingest --------------------------------------------------------------------------

UPLOADS = "uploads"


def accept_upload(owner, name: str, upload) -> TargetDataset:
    """Store an uploaded archive as it is and queue its ingest; the row is ``ingesting``.

    Only what costs nothing is checked here (a name, the size limit, a zip's directory at
    the end of the file); everything else is the worker's (:func:`ingest_upload`). The
    upload (a Django UploadedFile, on disk when large) is copied to storage in chunks.
    """
    name = _dataset_name(name)
    limits = archive_limits()
    size = _size(upload)
    if size > limits.max_bytes:
        raise ArchiveError(f"the archive is {size / 2**20:.0f} MiB; the limit is "
                           f"{limits.max_bytes / 2**20:.0f} MiB")
    check_upload(owner, size)
    if not zipfile.is_zipfile(upload):
        raise ArchiveError("the file is not a zip archive")
    upload.seek(0)
    store_dir = uuid.uuid4().hex
    stored = default_storage.save(f"{UPLOADS}/{store_dir}.zip", upload)
    try:
        with transaction.atomic():
            dataset = TargetDataset.objects.create(
                owner=owner, name=name, store_dir=store_dir, archive_bytes=size,
                state=TargetDataset.State.INGESTING, upload_name=stored,
                heartbeat_at=timezone.now())
            transaction.on_commit(lambda: queue_ingest(dataset.pk))
    except BaseException:
        default_storage.delete(stored)
        raise
    return dataset


def ingest_policy() -> dict[str, list[str]]:
    """What refuses an archive and what is skipped with a warning, with this site's limits."""
    fraction = f"{archive_limits().max_unreadable_fraction:.1%}".replace(".0%", "%")
    return {outcome: [line.format(fraction=fraction) for line in lines]
            for outcome, lines in INGEST_POLICY.items()}


def queue_ingest(dataset_id: int) -> None:
    from config.celery import app
    app.send_task("workers.tasks.ingest_dataset", args=(dataset_id,), queue="cpu")


THUMBNAILS_QUEUED_SECONDS = 3600  # asked again after this, should that worker have died


def queue_thumbnails(dataset) -> bool:
    """Ask a worker for the thumbnails of a dataset stored before ingest made them, once:
    every thumbnail request of its page lands here until they exist. True when queued now."""
    from config.celery import app
    key = f"thumbnails-queued:{dataset.store_dir}"
    if not cache.add(key, True, THUMBNAILS_QUEUED_SECONDS):
        return False
    app.send_task("workers.tasks.make_thumbnails", args=(dataset.pk,), queue="cpu")
    return True


def _size(archive) -> int:
    if isinstance(archive, (str, Path)):
        return Path(archive).stat().st_size
    return getattr(archive, "size", 0) or 0


# What a dataset's images are like: sizes, colour modes, duplicates -----------------------------

STATS_VERSION = 1
DUPLICATE_EXAMPLES = 5
TINY_IMAGE_SIDE = 32


def image_statistics(root: Path, files) -> dict:
    """:func:`summarise_images` of a stored dataset, reading every file once (headers only).

    ``files``: (path under ``root``, label) per image, in sample order.
    """
    root = Path(root)
    images = []
    for path, _ in files:
        data = (root / path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            images.append((*im.size, im.mode, im.format or "?",
                           hashlib.sha256(data).hexdigest(), len(data)))
    return summarise_images(images, [label for _, label in files])


def summarise_images(images, labels) -> dict:
    """Sizes, colour modes, file formats and byte-identical duplicates of a dataset.

    ``images``: (width, height, mode, format, sha256, bytes) per image in sample order,
    as unpacking records them; ``labels`` likewise. Duplicates are files with the same
    bytes; ``duplicates.extra`` counts the copies beyond the first of each group and
    ``duplicates.examples`` lists a few groups as sample indices.
    """
    widths, heights = [], []
    sizes: Counter = Counter()
    modes: Counter = Counter()
    formats: Counter = Counter()
    by_hash: dict[str, list[int]] = {}
    total_bytes = 0
    for index, (width, height, mode, image_format, sha256, size) in enumerate(images):
        total_bytes += size
        by_hash.setdefault(sha256, []).append(index)
        modes[mode] += 1
        formats[image_format] += 1
        widths.append(width)
        heights.append(height)
        sizes[(width, height)] += 1
    groups = [indices for indices in by_hash.values() if len(indices) > 1]
    groups.sort(key=lambda g: (-len(g), g[0]))

    def spread(values):
        return {"min": int(np.min(values)), "median": float(np.median(values)),
                "max": int(np.max(values)), "mean": float(np.mean(values))}

    stats = {"version": STATS_VERSION, "images": len(images), "bytes": total_bytes,
             "modes": dict(modes.most_common()), "formats": dict(formats.most_common()),
             "distinct_sizes": len(sizes),
             "common_sizes": [[w, h, n] for (w, h), n in sizes.most_common(5)],
             "tiny_images": sum(1 for w, h in zip(widths, heights)
                                if min(w, h) < TINY_IMAGE_SIDE),
             "duplicates": {
                 "groups": len(groups),
                 "extra": sum(len(g) - 1 for g in groups),
                 "across_classes": sum(1 for g in groups if len({labels[i] for i in g}) > 1),
                 "examples": [g[:4] for g in groups[:DUPLICATE_EXAMPLES]],
             }}
    if images:
        stats["width"], stats["height"] = spread(widths), spread(heights)
    return stats


def dataset_statistics(dataset) -> dict:
    """:func:`image_statistics` of a stored dataset, from its manifest."""
    _, files = read_manifest(dataset.root)
    return image_statistics(dataset.root, files)


def ensure_statistics(dataset, max_images: int | None = None) -> dict:
    """The dataset's image statistics, computed and saved now if it predates them.

    With ``max_images``, a larger dataset without statistics is left alone (an empty dict
    comes back): computing them reads every file. Returns {} when the files are gone.
    """
    stats = dataset.image_stats or {}
    if stats.get("version") == STATS_VERSION:
        return stats
    if max_images is not None and dataset.num_images > max_images:
        return {}
    try:
        stats = dataset_statistics(dataset)
    except (OSError, ValueError, KeyError):
        return {}
    type(dataset).objects.filter(pk=dataset.pk).update(image_stats=stats)
    dataset.image_stats = stats
    return stats


TINY_CLASS_IMAGES = 5
IMBALANCE_RATIO = 10


def dataset_warnings(dataset, stats: dict) -> list[str]:
    """What may make scores on this dataset misleading, one sentence each."""
    warnings = []
    skipped = max(dataset.skipped_count, len(dataset.skipped))
    if skipped:
        shown = "; ".join(dataset.skipped[:3])
        more = f"; and {skipped - 3} more" if skipped > 3 else ""
        warnings.append(f"{skipped:,} entr{'ies' if skipped > 1 else 'y'} of the archive left "
                        f"out: {shown}{more}.")
    counts = dict(zip(dataset.class_names, dataset.class_counts))
    tiny = sorted(name for name, count in counts.items() if count < TINY_CLASS_IMAGES)
    if tiny:
        shown = ", ".join(f"{name} ({counts[name]})" for name in tiny[:8])
        more = f" and {len(tiny) - 8} more" if len(tiny) > 8 else ""
        warnings.append(f"{len(tiny)} class{'es' if len(tiny) > 1 else ''} with fewer than "
                        f"{TINY_CLASS_IMAGES} images: {shown}{more}. Per-class statistics "
                        f"and the 5-fold probe are unreliable there.")
    if counts and min(counts.values()) > 0:
        largest, smallest = max(counts.values()), min(counts.values())
        if largest / smallest > IMBALANCE_RATIO:
            warnings.append(f"The classes are imbalanced: the largest has {largest} images, "
                            f"the smallest {smallest} ({largest / smallest:.0f}×). Accuracy "
                            f"then mostly reflects the large classes.")
    duplicates = (stats or {}).get("duplicates") or {}
    if duplicates.get("extra"):
        across = duplicates.get("across_classes", 0)
        warnings.append(f"{duplicates['extra']} image{'s are' if duplicates['extra'] > 1 else ' is'}"
                        f" a byte-identical copy of another ({duplicates['groups']} "
                        f"group{'s' if duplicates['groups'] > 1 else ''}"
                        + (f", {across} of them across different classes" if across else "")
                        + "). Copies inflate cross-validated scores.")
    if (stats or {}).get("tiny_images"):
        warnings.append(f"{stats['tiny_images']} images are smaller than {TINY_IMAGE_SIDE} "
                        f"pixels on a side; every checkpoint will upscale them.")
    return warnings
