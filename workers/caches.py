"""On-disk caches keyed by content: preprocessed images and extracted features.

Both are plain ``.npy`` files written to a temporary name and renamed into place, so a
reader never sees half a file and two workers racing on one key both end with a valid one.
"""

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np
from django.conf import settings


def cache_root() -> Path:
    return Path(settings.ZOORANK_CACHE_DIR)


def content_key(**parts) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ArrayStore:
    """A folder of ``<key>/<name>.npy`` arrays."""

    def __init__(self, kind: str):
        self.kind = kind

    @property
    def root(self) -> Path:
        return cache_root() / self.kind

    def path(self, key: str, name: str) -> Path:
        return self.root / key[:2] / key / f"{name}.npy"

    def has(self, key: str, name: str) -> bool:
        return self.path(key, name).exists()

    def load(self, key: str, name: str, mmap: bool = False) -> np.ndarray:
        return np.load(self.path(key, name), mmap_mode="r" if mmap else None)

    def save(self, key: str, name: str, array: np.ndarray) -> Path:
        final = self.path(key, name)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.stem}.{uuid.uuid4().hex}.npy")
        np.save(tmp, np.ascontiguousarray(array))
        os.replace(tmp, final)
        return final

    def open_for_writing(self, key: str, name: str, shape, dtype) -> tuple[np.memmap, Path]:
        """A memory-mapped array to fill; call ``commit`` with the returned path when full."""
        final = self.path(key, name)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.stem}.{uuid.uuid4().hex}.npy")
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        return array, tmp

    def commit(self, array: np.memmap, tmp: Path, key: str, name: str) -> None:
        array.flush()
        del array
        os.replace(tmp, self.path(key, name))

    def discard(self, tmp: Path) -> None:
        tmp.unlink(missing_ok=True)


images = ArrayStore("images")
features = ArrayStore("features")
