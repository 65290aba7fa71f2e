"""Reading a stored dataset's images by index, for thumbnails on the pages.

A page asks for image ``i`` of a dataset it may show; the path comes from the dataset's
own manifest (file names the unpacker chose, see :mod:`transferability.archives`), never
from the request, and must resolve inside the dataset's folder in the store.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from PIL import Image

from .archives import MANIFEST, read_manifest

__all__ = ["ImageNotFound", "dataset_files", "image_path", "thumbnail_png", "THUMBNAIL_SIZE"]

THUMBNAIL_SIZE = 96


class ImageNotFound(LookupError):
    """No such image in the dataset (bad index, or the store lost the file)."""


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


def image_path(dataset, index: int) -> tuple[Path, int]:
    """(path, label index) of image ``index``, checked to lie inside the dataset's folder."""
    _, files = dataset_files(dataset)
    if not 0 <= index < len(files):
        raise ImageNotFound(f"the dataset has {len(files)} images; there is no image {index}")
    relative, label = files[index]
    root = dataset.root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise ImageNotFound(f"image {index} is missing from the store")
    return path, label


def thumbnail_png(path: Path, size: int = THUMBNAIL_SIZE) -> bytes:
    """A PNG at most ``size`` pixels on a side, aspect kept; small images scaled up
    (nearest neighbour, so 28 x 28 digits stay crisp)."""
    with Image.open(path) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
        rgb = im.convert("RGB")
    width, height = rgb.size
    scale = size / max(width, height)
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    rgb = rgb.resize(target, resample)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
