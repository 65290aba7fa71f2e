"""Where an unpacked target dataset lives, and how a process gets a local copy of it.

The dataset store holds one folder per dataset (``store_dir``: our own file names and a
``manifest.json``, see :mod:`.archives`). On the default file-system storage the folder
under ``MEDIA_ROOT/datasets`` is the store itself: :func:`publish` has nothing to do and
:func:`local_root` is that folder. Every reader goes through :func:`local_root` and every
writer through :func:`publish`, so another backend only has to change this module.
"""

import shutil
from pathlib import Path

from django.conf import settings

__all__ = ["datasets_root", "local_root", "publish", "remove"]


def datasets_root() -> Path:
    """The local folder that holds unpacked datasets on this host."""
    return Path(settings.MEDIA_ROOT) / "datasets"


def local_root(store_dir: str) -> Path:
    """A local folder holding the dataset's files and manifest."""
    return datasets_root() / store_dir


def publish(store_dir: str, local_dir: Path) -> None:
    """Make the unpacked folder ``local_dir`` the stored copy of dataset ``store_dir``."""
    if Path(local_dir).resolve() != local_root(store_dir).resolve():
        raise ValueError(f"{local_dir} is not where dataset {store_dir} is kept")


def remove(store_dir: str) -> None:
    """Delete the dataset's files from the store (and from this host)."""
    shutil.rmtree(local_root(store_dir), ignore_errors=True)
