"""Where an unpacked target dataset lives, and how a process gets a local copy of it.

The dataset store holds one folder per dataset (``store_dir``: our own file names and a
``manifest.json``, see :mod:`.archives`). On the default file-system storage the folder
under ``MEDIA_ROOT/datasets`` is the store itself: :func:`publish` has nothing to do and
:func:`local_root` is that folder. Every reader goes through :func:`local_root` and every
writer through :func:`publish`, so another backend only has to change this module.

With an object store (``ZOORANK_STORAGE_URL``, see :mod:`config.local_cache`) a dataset is
ONE object, ``datasets/<store_dir>.tar``: an uncompressed tar of the folder (the images are
compressed already; one object instead of up to 200,000 small ones makes a publish or a
fetch a single streamed transfer, and a removal one delete). Hosts keep unpacked copies in
their local cache as the entry ``datasets/<store_dir>``: the folder is unpacked under a
temporary name and renamed into place. :func:`datasets_root` is then the cache's
``datasets`` folder, so the host that ingests an upload unpacks it where its own copy stays.
"""

import os
import shutil
import tarfile
from pathlib import Path

from django.conf import settings

from config.local_cache import (delete_object, download, local_cache, store_is_remote,
                                upload)

__all__ = ["datasets_root", "local_root", "publish", "remove", "object_name"]


def datasets_root() -> Path:
    """The local folder that holds unpacked datasets on this host."""
    if store_is_remote():
        return local_cache().root / "datasets"
    return Path(settings.MEDIA_ROOT) / "datasets"


def object_name(store_dir: str) -> str:
    """The dataset's object in an object store."""
    return f"datasets/{store_dir}.tar"


def _entry(store_dir: str) -> str:
    return f"datasets/{store_dir}"


def local_root(store_dir: str) -> Path:
    """A local folder holding the dataset's files and manifest.

    From an object store it is fetched into this host's cache when absent; a dataset that
    is not in the store gives a folder that does not exist, as on the file system.
    """
    local = datasets_root() / store_dir
    if not store_is_remote():
        return local
    cache = local_cache()
    if cache.lookup(_entry(store_dir)) is not None or local.is_dir():
        return local  # cached, or being ingested on this host (not yet published)
    with cache.fetching(_entry(store_dir)):
        if local.is_dir():
            return local
        try:
            cache.put_dir(_entry(store_dir), lambda tmp: _fetch_into(store_dir, tmp))
        except FileNotFoundError:
            pass
    return local


def _fetch_into(store_dir: str, folder: Path) -> int:
    """Download and unpack the dataset's tar into ``folder``; return the bytes unpacked."""
    tar_path = local_cache().temporary(".tar")
    try:
        download(object_name(store_dir), tar_path)
        size = 0
        with tarfile.open(tar_path, "r:") as tar:
            for member in tar:
                # Only regular files and folders of our own layout; nothing outside it.
                tar.extract(member, folder, filter="data")
                size += member.size if member.isfile() else 0
        return size
    finally:
        tar_path.unlink(missing_ok=True)


def publish(store_dir: str, local_dir: Path) -> None:
    """Make the unpacked folder ``local_dir`` the stored copy of dataset ``store_dir``."""
    expected = datasets_root() / store_dir
    if Path(local_dir).resolve() != expected.resolve():
        raise ValueError(f"{local_dir} is not where dataset {store_dir} is kept")
    if not store_is_remote():
        return
    cache = local_cache()
    tar_path = cache.temporary(".tar")
    try:
        size = _pack(expected, tar_path)
        upload(object_name(store_dir), tar_path)
    finally:
        tar_path.unlink(missing_ok=True)
    cache.add(_entry(store_dir), size)  # this host's copy, now bounded like any other


def _pack(folder: Path, tar_path: Path) -> int:
    """An uncompressed tar of the folder's files, in a stable order; the bytes packed."""
    size = 0
    with tarfile.open(tar_path, "w:", format=tarfile.PAX_FORMAT) as tar:
        for current, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = Path(current) / name
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(folder)))
                if not info.isfile():
                    continue
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(path, "rb") as f:
                    tar.addfile(info, f)
                size += info.size
    return size


def remove(store_dir: str) -> None:
    """Delete the dataset's files from the store (and from this host)."""
    if store_is_remote():
        delete_object(object_name(store_dir))
        local_cache().discard(_entry(store_dir))
    shutil.rmtree(datasets_root() / store_dir, ignore_errors=True)
