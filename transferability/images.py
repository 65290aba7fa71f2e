"""Reading a stored dataset's thumbnails by index, for the pages.

A page asks for image ``i`` of a dataset it may show; the path comes from the dataset's
own manifest (file names the unpacker chose, see :mod:`transferability.archives`), never
from the request, and must resolve inside the dataset's folder in the store.

The page gets the thumbnail that ingest stored beside the images: no request decodes an
image, however large the original. A dataset stored before ingest made thumbnails has none
(:class:`ThumbnailsNotMade`); the page then shows :func:`placeholder_png` while a worker
makes them (``workers.ingest.make_thumbnails``).
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from PIL import Image

from .archives import MANIFEST, THUMBNAILS, read_manifest, thumbnail_name
from .decoding import THUMBNAIL_SIZE

__all__ = ["ImageNotFound", "ThumbnailsNotMade", "dataset_files", "thumbnail_path",
           "placeholder_png", "THUMBNAIL_SIZE"]


class ImageNotFound(LookupError):
    """No such image in the dataset (bad index, or the store lost the file)."""


class ThumbnailsNotMade(ImageNotFound):
    """The dataset was stored before ingest made thumbnails."""


@lru_cache(maxsize=8)
def _manifest(root: str, mtime_ns: int) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    class_names, files = read_manifest(Path(root))
    return tuple(class_names), tuple((path, int(label)) for path, label in files)


def dataset_files(dataset) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    """(class names, (path, label) per image) of a stored dataset, in sample order.

    Raises ImageNotFound when the dataset's folder or manifest is gone.
    """
    manifest = dataset.root / MANIFEST
    try:
        mtime = manifest.stat().st_mtime_ns
        return _manifest(str(dataset.root), mtime)
    except (OSError, ValueError, KeyError) as exc:
        raise ImageNotFound(f"the dataset's images are not in the store ({exc})") from None


def thumbnail_path(dataset, index: int) -> Path:
    """The stored thumbnail of image ``index``, whose manifest entry must lie inside the
    dataset's folder (a tampered manifest shows nothing). The original is not needed."""
    _, files = dataset_files(dataset)
    if not 0 <= index < len(files):
        raise ImageNotFound(f"the dataset has {len(files)} images; there is no image {index}")
    root = dataset.root.resolve()
    if not (root / files[index][0]).resolve().is_relative_to(root):
        raise ImageNotFound(f"image {index} is missing from the store")
    path = root / thumbnail_name(index)
    if not path.is_file():
        if not (root / THUMBNAILS).is_dir():
            raise ThumbnailsNotMade("the dataset was stored before thumbnails were made; "
                                    "they are being made")
        raise ImageNotFound(f"the thumbnail of image {index} is missing from the store")
    return path


@lru_cache(maxsize=1)
def placeholder_png(size: int = THUMBNAIL_SIZE) -> bytes:
    """A plain grey square shown where a thumbnail is not made yet."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (224, 224, 224)).save(buffer, format="PNG")
    return buffer.getvalue()
