"""The object store behind Django's default storage, and each host's bounded cache of it.

With the default file-system storage nothing here changes how files are kept: MEDIA_ROOT
is the store and every process reads it directly (:func:`store_is_remote` is False).

With an object store (``ZOORANK_STORAGE_URL=s3://bucket/prefix``) every host keeps the
objects it works on in :class:`LocalCache` under ``ZOORANK_CACHE_DIR``: entries are files
or folders named by a relative path (``datasets/<store_dir>``, ``weights/<sha>/<file>``,
``features/<k2>/<key>/<name>.npy``, ``images/...``), each written under a temporary name
and renamed into place, so a reader never sees part of one. A small SQLite index beside
them records each entry's size and last use; after every addition the least recently used
entries are deleted until the total is within ``ZOORANK_LOCAL_CACHE_GB``. Two processes on
one host share the index (SQLite's locking) and take a per-entry file lock while fetching,
so the second one waits for the first one's copy instead of downloading it again.

An entry deleted by eviction while another process still reads it stays readable through
the handles already open (POSIX unlink); keep the bound well above one evaluation's data.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from django.conf import settings

__all__ = ["s3_storage", "LocalCache", "local_cache", "store_is_remote", "upload",
           "upload_if_absent", "download", "delete_object", "object_exists", "fetch_file",
           "publish_file"]

INDEX = ".lru.sqlite3"
TOUCH_EVERY_SECONDS = 30.0  # a read refreshes an entry's last use at most this often


def s3_storage(url: str) -> dict:
    """``STORAGES["default"]`` for ``s3://bucket/prefix``: django-storages' S3Storage.

    Endpoint, credentials and region come from boto3's own environment variables
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_DEFAULT_REGION``).
    """
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"ZOORANK_STORAGE_URL must look like s3://bucket/prefix, got {url!r}")
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": parsed.netloc,
        "location": parsed.path.strip("/"),
        "file_overwrite": True,
        "default_acl": None,
        # A download is spooled to a temporary file beyond this, never held in memory whole.
        "max_memory_size": 64 * 2**20,
    }}


def store_is_remote() -> bool:
    """True when Django's default storage is not the local file system."""
    from django.core.files.storage import FileSystemStorage, default_storage

    return not isinstance(default_storage, FileSystemStorage)


def local_cache() -> LocalCache:
    """This host's cache, as the settings configure it now."""
    return LocalCache(Path(settings.ZOORANK_CACHE_DIR),
                      int(float(settings.ZOORANK_LOCAL_CACHE_GB) * 2**30))


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)



def _use_wal(db: sqlite3.Connection, attempts: int = 50) -> None:
    """Put the index in WAL mode (persistent in the file: once is enough). Switching needs
    the file to itself, and SQLite answers "database is locked" at once, without waiting
    for its busy timeout, when another process opens the new index at the same moment:
    try again for a few seconds."""
    for attempt in range(attempts):
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)

class LocalCache:
    """Files and folders under ``root``, bounded to ``max_bytes`` by least recent use."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = max_bytes

    # The index ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _db(self):
        self.root.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.root / INDEX, timeout=60, isolation_level=None)
        try:
            _use_wal(db)
            db.execute("CREATE TABLE IF NOT EXISTS entries (name TEXT PRIMARY KEY, "
                       "bytes INTEGER NOT NULL, used REAL NOT NULL)")
            yield db
        finally:
            db.close()

    def path(self, name: str) -> Path:
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts or parts[0].startswith("."):
            raise ValueError(f"not a cache entry name: {name!r}")
        return self.root / name

    def entries(self) -> dict[str, int]:
        """Entry name: bytes, of every indexed entry."""
        with self._db() as db:
            return dict(db.execute("SELECT name, bytes FROM entries"))

    def total_bytes(self) -> int:
        with self._db() as db:
            return db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries").fetchone()[0]

    def lookup(self, name: str) -> Path | None:
        """The entry's local path, marked as used now; None when it is not here."""
        path = self.path(name)
        if not path.exists():
            with self._db() as db:
                db.execute("DELETE FROM entries WHERE name = ?", (name,))
            return None
        now = time.time()
        with self._db() as db:
            row = db.execute("SELECT used FROM entries WHERE name = ?", (name,)).fetchone()
            if row is not None and now - row[0] > TOUCH_EVERY_SECONDS:
                db.execute("UPDATE entries SET used = ? WHERE name = ?", (now, name))
        return path

    def add(self, name: str, size: int | None = None) -> Path:
        """Index the entry already at ``path(name)`` (size measured unless given); evict."""
        path = self.path(name)
        size = _tree_bytes(path) if size is None else size
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO entries (name, bytes, used) VALUES (?, ?, ?)",
                       (name, size, time.time()))
        self.evict(keep=[name])
        return path

    # Writing entries ---------------------------------------------------------------------

    def temporary(self, suffix: str = "") -> Path:
        """A fresh name on the cache's file system, for something to rename into place."""
        tmp = self.root / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp / f"{uuid.uuid4().hex}{suffix}"

    def put_file(self, name: str, write: Callable[[Path], None]) -> Path:
        """``write(tmp)`` writes the file; it replaces the entry atomically and is indexed."""
        final = self.path(name)
        tmp = self.temporary(final.suffix)
        try:
            write(tmp)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return self.add(name)

    def put_dir(self, name: str, fill: Callable[[Path], int | None]) -> Path:
        """``fill(tmp)`` fills a new folder (returning its bytes, or None to measure); it is
        renamed into place. When another process put the entry first, that one is kept."""
        final = self.path(name)
        tmp = self.temporary()
        tmp.mkdir()
        try:
            size = fill(tmp)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
                size = None  # someone else's complete copy
        finally:
            _remove(tmp)
        return self.add(name, size)

    @contextlib.contextmanager
    def fetching(self, name: str):
        """Held while fetching ``name``: a second process waits, then finds the entry."""
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        lock = locks / hashlib.sha256(name.encode()).hexdigest()[:32]
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # Removing entries --------------------------------------------------------------------

    def discard(self, name: str) -> None:
        """Delete the entry from this host."""
        with self._db() as db:
            db.execute("DELETE FROM entries WHERE name = ?", (name,))
        self._delete(self.path(name))

    def _delete(self, path: Path) -> None:
        if not path.exists():
            return
        trash = self.temporary(".gone")
        try:
            os.rename(path, trash)  # gone from its name at once; then removed
        except OSError:
            trash = path
        _remove(trash)

    def evict(self, keep: Iterable[str] = ()) -> list[str]:
        """Delete least recently used entries until the total fits; return their names."""
        keep = set(keep)
        evicted = []
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # one evicting process at a time
            try:
                total = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries").fetchone()[0]
                if total > self.max_bytes:
                    rows = db.execute("SELECT name, bytes FROM entries ORDER BY used").fetchall()
                    for name, size in rows:
                        if total <= self.max_bytes:
                            break
                        if name in keep:
                            continue
                        db.execute("DELETE FROM entries WHERE name = ?", (name,))
                        self._delete(self.path(name))
                        total -= size
                        evicted.append(name)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return evicted


# The object store, through Django's default storage ---------------------------------------

def object_exists(name: str) -> bool:
    from django.core.files.storage import default_storage

    return default_storage.exists(name)


def upload(name: str, local_path: Path) -> None:
    """Store the local file as object ``name``, replacing any object of that name."""
    from django.core.files import File
    from django.core.files.storage import default_storage

    if default_storage.exists(name):  # a storage that renames on a clash must not keep both
        default_storage.delete(name)
    with open(local_path, "rb") as f:
        saved = default_storage.save(name, File(f, name=Path(name).name))
    if saved != name:
        raise RuntimeError(f"the store kept {name} as {saved}")


def upload_if_absent(name: str, local_path: Path) -> None:
    """Store the file unless an object of that name exists (content-addressed names)."""
    if not object_exists(name):
        upload(name, local_path)


def download(name: str, dest: Path) -> None:
    """Copy object ``name`` into the local file ``dest`` (FileNotFoundError if absent).

    From S3, one GET streamed straight into ``dest``: through ``Storage.open`` the object
    is spooled to a temporary file first and copied again (10 x a plain GET's time for a
    100 MB file, bench/hub.py), and boto3's ranged parallel transfer took 5 x against the
    S3-compatible server the tests use."""
    from django.core.files.storage import default_storage

    if store_is_remote() and _is_s3(default_storage):
        from botocore.exceptions import ClientError
        from storages.utils import clean_name

        key = default_storage._normalize_name(clean_name(name))
        try:
            body = default_storage.bucket.Object(key).get()["Body"]
            with contextlib.closing(body), open(dest, "wb") as out:
                for chunk in body.iter_chunks(8 * 2**20):
                    out.write(chunk)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise FileNotFoundError(f"no object {name} in the store") from exc
            raise
        return
    with default_storage.open(name, "rb") as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 8 * 2**20)


def _is_s3(storage) -> bool:
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:
        return False
    return isinstance(storage, S3Storage)


def delete_object(name: str) -> None:
    from django.core.files.storage import default_storage

    default_storage.delete(name)


def fetch_file(object_name: str, entry: str) -> Path:
    """The local path of cache entry ``entry``, downloaded from ``object_name`` if absent."""
    cache = local_cache()
    found = cache.lookup(entry)
    if found is not None:
        return found
    with cache.fetching(entry):
        found = cache.lookup(entry)
        if found is not None:
            return found
        return cache.put_file(entry, lambda tmp: download(object_name, tmp))


def publish_file(object_name: str, local_path: Path, entry: str) -> Path:
    """Store the local file as ``object_name`` and keep it as this host's cache ``entry``
    (moved there, so this host does not fetch it back); return the entry's path."""
    upload(object_name, local_path)
    cache = local_cache()
    final = cache.path(entry)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(local_path, final)
    except OSError:  # another file system: copy under a temporary name, then rename
        tmp = cache.temporary(final.suffix)
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, final)
        Path(local_path).unlink(missing_ok=True)
    return cache.add(entry)
