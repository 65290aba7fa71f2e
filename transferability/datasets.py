"""Turning an uploaded archive into a TargetDataset row and its folder in the store."""

import hashlib
import io
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from PIL import Image

from .archives import ArchiveError, ArchiveLimits, read_manifest, unpack_image_folder
from .dataset_store import datasets_root, publish, remove
from .models import TargetDataset

__all__ = ["ArchiveError", "create_target_dataset", "datasets_root", "image_statistics",
           "ensure_statistics", "dataset_warnings"]


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
        stats = image_statistics(dest, unpacked.files)
        publish(store_dir, dest)
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
                image_stats=stats,
            )
    except BaseException:
        remove(store_dir)
        raise


def _size(archive) -> int:
    if isinstance(archive, (str, Path)):
        return Path(archive).stat().st_size
    return getattr(archive, "size", 0) or 0


# What a dataset's images are like: sizes, colour modes, duplicates -----------------------------

STATS_VERSION = 1
DUPLICATE_EXAMPLES = 5
TINY_IMAGE_SIDE = 32


def image_statistics(root: Path, files) -> dict:
    """Sizes, colour modes, file formats and byte-identical duplicates of a stored dataset.

    ``files``: (path under ``root``, label) per image, in sample order. Reads every file
    once (image headers only, no decoding). Duplicates are files with the same bytes
    (sha256); ``duplicates.extra`` counts the copies beyond the first of each group and
    ``duplicates.examples`` lists a few groups as sample indices.
    """
    root = Path(root)
    widths, heights = [], []
    sizes: Counter = Counter()
    modes: Counter = Counter()
    formats: Counter = Counter()
    by_hash: dict[str, list[int]] = {}
    total_bytes = 0
    for index, (path, _) in enumerate(files):
        data = (root / path).read_bytes()
        total_bytes += len(data)
        by_hash.setdefault(hashlib.sha256(data).hexdigest(), []).append(index)
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            modes[im.mode] += 1
            formats[im.format or "?"] += 1
        widths.append(width)
        heights.append(height)
        sizes[(width, height)] += 1
    groups = [indices for indices in by_hash.values() if len(indices) > 1]
    groups.sort(key=lambda g: (-len(g), g[0]))
    labels = [label for _, label in files]

    def spread(values):
        return {"min": int(np.min(values)), "median": float(np.median(values)),
                "max": int(np.max(values)), "mean": float(np.mean(values))}

    stats = {"version": STATS_VERSION, "images": len(files), "bytes": total_bytes,
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
    if files:
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
