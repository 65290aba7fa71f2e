"""A web process streams uploads into its own folder and clears what dead ones left."""

import os
import subprocess
import sys

from config.uploads import clear_dead_uploads, uploads_root, use_own_upload_folder


def test_a_killed_web_process_leaves_no_partial_upload(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    partial = uploads_root() / str(dead.pid) / "tmpab12.upload.zip"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half an archive")
    live = uploads_root() / str(os.getppid()) / "tmpcd34.upload.zip"  # a running process
    live.parent.mkdir(parents=True)
    live.write_bytes(b"arriving")

    mine = use_own_upload_folder()

    assert not partial.parent.exists() and live.exists()
    assert mine == uploads_root() / str(os.getpid()) and mine.is_dir()
    assert settings.FILE_UPLOAD_TEMP_DIR == str(mine)
    assert clear_dead_uploads() == [mine]  # its own folder only once it is started again


def test_uploads_are_read_in_large_pieces():
    from django.http import HttpRequest

    from config.uploads import UPLOAD_CHUNK

    request = HttpRequest()
    assert [h.chunk_size for h in request.upload_handlers] == [UPLOAD_CHUNK, UPLOAD_CHUNK]
