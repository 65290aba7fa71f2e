"""On-disk caches keyed by content: preprocessed images and extracted features (their key
also names the dataset's owner, ``workers.jobs.feature_key``: each user's own).

Both are plain ``.npy`` files written to a temporary name and renamed into place, so a
reader never sees half a file and two workers racing on one key both end with a valid one.

With an object store (``ZOORANK_STORAGE_URL``, :mod:`config.local_cache`) the local files
are entries of the host's bounded cache. Features are shared: each array is uploaded as
``cache/features/<k2>/<key>/<name>.npy`` once written, and ``has``/``load`` look on this
host, then in the store (fetching into the local cache), so one host's features serve
every host. Preprocessed images stay on the host that decoded them (counted in its bound):
they are as large as the dataset and quicker to decode again than to download.
"""

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np
from django.conf import settings

from config.local_cache import (fetch_file, local_cache, object_exists, store_is_remote,
                                upload_if_absent)


def cache_root() -> Path:
    return Path(settings.ZOORANK_CACHE_DIR)


def content_key(**parts) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ArrayStore:
    """A folder of ``<key>/<name>.npy`` arrays; ``shared`` ones also go to the object store."""

    def __init__(self, kind: str, shared: bool = False):
        self.kind = kind
        self.shared = shared

    @property
    def root(self) -> Path:
        return cache_root() / self.kind

    def path(self, key: str, name: str) -> Path:
        return self.root / key[:2] / key / f"{name}.npy"

    def entry(self, key: str, name: str) -> str:
        """The file's name in the host's cache (relative to the cache root)."""
        return f"{self.kind}/{key[:2]}/{key}/{name}.npy"

    def object_name(self, key: str, name: str) -> str:
        return f"cache/{self.entry(key, name)}"

    def has(self, key: str, name: str) -> bool:
        if self.path(key, name).exists():
            return True
        return self.shared and store_is_remote() and object_exists(self.object_name(key, name))

    def load(self, key: str, name: str, mmap: bool = False) -> np.ndarray:
        if not store_is_remote():
            return np.load(self.path(key, name), mmap_mode="r" if mmap else None)
        for attempt in range(2):  # evicted by another process between lookup and open
            path = self._local(key, name)
            try:
                return np.load(path, mmap_mode="r" if mmap else None)
            except FileNotFoundError:
                if attempt:
                    raise

    def _local(self, key: str, name: str) -> Path:
        """This host's copy, fetched from the store when a shared array is not here."""
        entry = self.entry(key, name)
        if not self.shared:
            return local_cache().lookup(entry) or self.path(key, name)
        return fetch_file(self.object_name(key, name), entry)

    def save(self, key: str, name: str, array: np.ndarray) -> Path:
        final = self.path(key, name)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.stem}.{uuid.uuid4().hex}.npy")
        np.save(tmp, np.ascontiguousarray(array))
        os.replace(tmp, final)
        self._saved(key, name)
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
        self._saved(key, name)

    def discard(self, tmp: Path) -> None:
        tmp.unlink(missing_ok=True)

    def _saved(self, key: str, name: str) -> None:
        """With an object store: share the new file, and count it in this host's bound."""
        if not store_is_remote():
            return
        if self.shared:
            upload_if_absent(self.object_name(key, name), self.path(key, name))
        local_cache().add(self.entry(key, name))


images = ArrayStore("images")
features = ArrayStore("features", shared=True)
