"""Where a web process streams uploads to disk, and clearing what dead processes left there.

Django writes an upload larger than ``FILE_UPLOAD_MAX_MEMORY_SIZE`` to a temporary file
while it arrives and deletes it when the request ends; a web process killed mid-upload
leaves it behind. Each web process therefore streams into its own folder,
``var/tmp/uploads/<pid>``, and at start removes the folders of processes that are gone
(config/wsgi.py calls :func:`use_own_upload_folder`), so a killed upload leaves no file.
"""

import os
import shutil
from pathlib import Path

from django.conf import settings
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler

# Django reads upload bodies in 64 KiB pieces; WSGI servers that copy their buffer on every
# read (gunicorn does) then take seconds over a large archive. 1 MiB pieces take it in at
# about the speed of the socket (bench/ingest.py).
UPLOAD_CHUNK = 1 << 20


class LargeChunkMemoryUploadHandler(MemoryFileUploadHandler):
    chunk_size = UPLOAD_CHUNK


class LargeChunkTemporaryUploadHandler(TemporaryFileUploadHandler):
    chunk_size = UPLOAD_CHUNK


def uploads_root() -> Path:
    return Path(settings.VAR_DIR) / "tmp" / "uploads"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clear_dead_uploads() -> list[Path]:
    """Remove the upload folders of web processes that no longer run; returns them."""
    root = uploads_root()
    removed = []
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.name.isdigit() and (int(folder.name) == os.getpid()
                                      or not _alive(int(folder.name))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def use_own_upload_folder() -> Path:
    """Clear what dead web processes left, then stream this process's uploads to its own
    folder."""
    clear_dead_uploads()
    mine = uploads_root() / str(os.getpid())
    mine.mkdir(parents=True, exist_ok=True)
    settings.FILE_UPLOAD_TEMP_DIR = str(mine)
    return mine
