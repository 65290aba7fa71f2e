"""Fetching a hub checkpoint's weights: a step of its own, with progress and a clear result.

Files go through ``huggingface_hub.hf_hub_download`` into the host's Hugging Face cache
(``HF_HUB_CACHE``, else ``HF_HOME``/hub, else ~/.cache/huggingface/hub). That is the cache
timm, the ``hf`` command line and every other tool on the host use, so a site without
internet preloads it with the usual tools (``hf download timm/resnet50.a1_in1k``) and
``HF_HUB_OFFLINE=1`` reads it; our own cache folder holds what can be recomputed, which
these downloads are not when the hub is out of reach.

What this adds to the client:
- ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` are read on every call (the client reads them once,
  at import), so a mirror set in the environment is the mirror used.
- A file already in the cache is used without asking the hub: an evaluation of cached
  weights does not stop when the hub does.
- Server errors, timeouts and cut connections are tried again with backoff, a bounded
  number of times (settings ``ZOORANK_HUB_TRIES``, ``ZOORANK_HUB_BACKOFF_SECONDS``); a
  missing, gated or private repository fails at once, with a message that says so.
- The sha256 of every file is computed and checked: against the hub's LFS id (the file's
  sha256; a file in the cache that does not match it is deleted and fetched again) and
  against the hashes recorded on the checkpoint at its first download, so weights that
  changed on the hub are refused rather than silently ranked under the old name.
- One download per repository per host at a time (a file lock in the cache): concurrent
  evaluations that need the same weights wait for the first and then read its files.
- With an object store (config/local_cache.py), the first host to fetch a file from the hub
  stores it there under its sha256 (``hub/<sha256>/<file>``); another host whose checkpoint
  recorded that hash copies it from the store into its own bounded cache instead of asking
  the hub, and checks the hash again.

The client itself never uses a half file: it downloads to a temporary name unique to the
process, checks the size, and renames. A killed worker leaves that temporary file behind;
the next download of the repository on the host deletes it first (under the lock, so it is
nobody's) and starts clean.
"""

import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from .weights import WeightsError, sha256_of_path

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]  # bytes done, bytes in all (0: not known yet)

# Bytes between two progress reports of a download.
PROGRESS_CHUNK_BYTES = 256 * 1024

# What timm looks for in a repository, in its order of preference.
WEIGHTS_FILES = ("model.safetensors", "pytorch_model.bin")

_SHA256 = re.compile(r"[0-9a-f]{64}")
# (real path, size, mtime) -> sha256: a blob is hashed once per process, not per build.
_hashed: dict[tuple[str, int, int], str] = {}


@dataclass
class HubWeights:
    """What a fetch produced: the repository, its files in the local cache and their hashes."""

    repo_id: str
    files: dict[str, Path]
    sha256: dict[str, str]
    downloaded_bytes: int = 0
    seconds: float = 0.0
    weights_file: str = ""
    source: str = "hub"  # "hub" (downloaded now), "cache" (this host's), "store" (object store)

    @property
    def weights_path(self) -> Path:
        return self.files[self.weights_file]


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_endpoint() -> str | None:
    """The hub this host talks to: ``HF_ENDPOINT`` (a mirror), else the client's default."""
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or None


def hub_cache() -> str | None:
    return os.environ.get("HF_HUB_CACHE", "").strip() or None


def hub_repo(checkpoint) -> tuple[str, str | None]:
    """(repository id, file name or None) of a hub checkpoint: its ``hub_id``, else the one
    timm's pretrained config names for ``architecture.pretrained_tag``."""
    if checkpoint.hub_id:
        return checkpoint.hub_id.removeprefix("hf-hub:"), None
    import timm

    name = checkpoint.architecture
    if checkpoint.pretrained_tag:
        name = f"{name}.{checkpoint.pretrained_tag}"
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise WeightsError(f"{checkpoint.name}: timm names no hub repository for {name}")
    return cfg.hf_hub_id, cfg.hf_hub_filename


def downloading_message(done: int, total: int) -> str:
    """"downloading 97.8 of 102 MB", for a result row while its weights come in."""
    if not total:
        return f"downloading {_mb(done)} MB"
    return f"downloading {_mb(done)} of {_mb(total)} MB"


def _mb(n: int) -> str:
    mb = n / 1e6
    return f"{mb:.1f}" if mb < 100 else f"{mb:.0f}"


def fetch_weights(checkpoint, progress: ProgressCallback | None = None) -> HubWeights:
    """Bring a hub checkpoint's weights into the host's cache, check them and record their
    sha256 on the checkpoint (first download) or refuse them (a different hash later).

    Raises WeightsError with a message a user can act on.
    """
    from filelock import FileLock

    repo_id, filename = hub_repo(checkpoint)
    started = time.perf_counter()
    wanted = (filename,) if filename else WEIGHTS_FILES
    # This host's hub cache first: the host that fetched (and shared) the file reads it here.
    in_cache = any(_cached(repo_id, f) is not None for f in wanted)
    stored = None if in_cache else _from_object_store(checkpoint, wanted)
    if stored is not None:
        weights_file, path = stored
        result = HubWeights(repo_id, {weights_file: path},
                            {weights_file: checkpoint.hub_files[weights_file]},
                            0, time.perf_counter() - started, weights_file, source="store")
        record_hashes(checkpoint, result.sha256)
        _record_size(checkpoint, path)
        return result
    cache = Path(hub_cache() or _default_cache())
    lock_path = cache / ".zoorank-locks" / (repo_id.replace("/", "--") + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        with FileLock(str(lock_path)):
            _remove_stale_partials(cache, repo_id)
            weights_file, path, downloaded = _fetch_first(checkpoint.name, repo_id, wanted,
                                                          progress)
            try:
                sha = _checked_sha256(checkpoint, repo_id, weights_file, path)
                break
            except WeightsError:
                if attempt:  # fetched again and still not what the hub announced
                    raise
                log.warning("%s: %s in the cache was not what the hub announced; fetching "
                            "it again", repo_id, weights_file)
    result = HubWeights(repo_id, {weights_file: path}, {weights_file: sha}, downloaded,
                        time.perf_counter() - started, weights_file,
                        source="hub" if downloaded else "cache")
    record_hashes(checkpoint, result.sha256)
    _record_size(checkpoint, path)
    _share_through_object_store(repo_id, weights_file, sha, path)
    return result


def _remove_stale_partials(cache: Path, repo_id: str) -> None:
    """Delete the partial downloads a killed process left in the repository's cache folder.

    The client names each partial file ``<etag>.<id>.incomplete``, per process, and holds
    ``.locks/<repository>/<etag>.lock`` while it writes one. A partial file whose lock can be
    taken at once is a stopped process's, never to be finished or read: it is deleted, and
    the next download starts clean. One whose lock is held (a download in progress: another
    worker, the web process reading a config, ``hf download``) is left alone."""
    from filelock import FileLock, Timeout
    from huggingface_hub.file_download import repo_folder_name

    folder = repo_folder_name(repo_id=repo_id, repo_type="model")
    for partial in (cache / folder / "blobs").glob("*.incomplete"):
        etag = partial.name.split(".", 1)[0]
        lock = FileLock(str(cache / ".locks" / folder / f"{etag}.lock"), timeout=0)
        try:
            with lock:
                size = partial.stat().st_size
                partial.unlink()
        except (Timeout, OSError):  # being written, or gone already
            continue
        log.warning("%s: removed %s, a download a stopped process left unfinished (%d bytes)",
                    repo_id, partial.name, size)


def store_object_name(sha256: str, filename: str) -> str:
    """Where a hub file is kept in the object store: by content, so any checkpoint (or host)
    that recorded this hash finds it."""
    return f"hub/{sha256}/{filename}"


def _from_object_store(checkpoint, filenames) -> tuple[str, Path] | None:
    """(file name, local path) of a recorded hub file another host put in the object store."""
    from config.local_cache import delete_object, fetch_file, local_cache, store_is_remote

    if not store_is_remote():
        return None
    for filename in filenames:
        sha = (checkpoint.hub_files or {}).get(filename)
        if not sha:
            continue
        name = store_object_name(sha, filename)
        try:
            path = fetch_file(name, entry=name)
        except FileNotFoundError:  # no host has put it there yet
            continue
        except Exception as exc:  # the store is down: the hub is still there
            log.warning("%s: could not read %s from the object store (%s); asking the hub",
                        checkpoint.name, name, _short(exc))
            continue
        if sha256_of_path(path) == sha:
            return filename, path
        # A damaged copy: never used, dropped from this host and from the store (the hub's
        # file takes its place), and the hub asked instead.
        log.warning("%s: %s in the object store is not the recorded file; asking the hub",
                    checkpoint.name, name)
        local_cache().discard(name)
        delete_object(name)
    return None


def _share_through_object_store(repo_id: str, filename: str, sha: str, path: Path) -> None:
    from config.local_cache import store_is_remote, upload_if_absent

    if not store_is_remote():
        return
    try:
        upload_if_absent(store_object_name(sha, filename), path.resolve())
    except Exception as exc:  # the weights are here; other hosts will ask the hub
        log.warning("%s: could not put %s in the object store (%s)", repo_id, filename,
                    _short(exc))


def _record_size(checkpoint, path: Path) -> None:
    from .models import Checkpoint

    size = path.stat().st_size
    if checkpoint.weights_bytes != size:
        Checkpoint.objects.filter(pk=checkpoint.pk).update(weights_bytes=size)
        checkpoint.weights_bytes = size


def record_hashes(checkpoint, sha256: dict[str, str]) -> None:
    """Keep the first hash seen for each file; refuse a file whose hash has changed since."""
    from .models import Checkpoint

    recorded = dict(checkpoint.hub_files or {})
    for name, sha in sha256.items():
        if recorded.get(name, sha) != sha:
            raise WeightsError(
                f"{checkpoint.name}: {name} on the hub has sha256 {sha}, but {recorded[name]} "
                f"was recorded at its first download; refused (the weights changed under the "
                f"same name: clear the checkpoint's hub files in the admin to accept them)")
    if all(name in recorded for name in sha256):
        return
    merged = {**recorded, **sha256}
    # Only over what this process read: two first downloads racing keep one answer.
    changed = Checkpoint.objects.filter(pk=checkpoint.pk, hub_files=checkpoint.hub_files or {}) \
        .update(hub_files=merged)
    if changed:
        checkpoint.hub_files = merged
        return
    checkpoint.refresh_from_db(fields=["hub_files"])
    record_hashes(checkpoint, sha256)


def _default_cache() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _fetch_first(label: str, repo_id: str, filenames, progress) -> tuple[str, Path, int]:
    """The first of ``filenames`` the repository has: (name, local path, bytes downloaded)."""
    from huggingface_hub.errors import RemoteEntryNotFoundError

    missing = None
    for filename in filenames:
        try:
            return fetch_file(label, repo_id, filename, progress)
        except RemoteEntryNotFoundError as exc:
            missing = exc
    raise WeightsError(f"{label}: {repo_id} on the hub has no weights file "
                       f"({' or '.join(filenames)})") from missing


def fetch_file(label: str, repo_id: str, filename: str, progress=None,
               tries: int | None = None, max_bytes: int | None = None) -> tuple[str, Path, int]:
    """One file of a repository in the host's cache: (name, local path, bytes downloaded).

    ``label`` starts the messages (a checkpoint's name). A file the hub says is larger than
    ``max_bytes`` is refused before it is downloaded. Raises WeightsError, or
    RemoteEntryNotFoundError when the repository exists but has no such file."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError,
                                        RemoteEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    cached = _cached(repo_id, filename)
    if cached is not None:
        return filename, cached, 0
    if hub_offline():
        raise WeightsError(
            f"{label}: {'weights are' if filename in WEIGHTS_FILES else filename + ' is'} "
            f"not in the local hub cache and the hub is offline (HF_HUB_OFFLINE is set)")
    endpoint, timeout = hub_endpoint(), settings.ZOORANK_HUB_TIMEOUT_SECONDS
    tries = max(1, tries or settings.ZOORANK_HUB_TRIES)
    last: Exception | None = None
    for attempt in range(tries):
        if attempt:
            wait = settings.ZOORANK_HUB_BACKOFF_SECONDS * 2 ** (attempt - 1)
            log.warning("%s: hub try %d of %d failed (%s); again in %.1fs",
                        repo_id, attempt, tries, _short(last), wait)
            time.sleep(wait)
        try:
            # Asked without the client's own retries: ours are bounded and configured here.
            meta = get_hf_file_metadata(hf_hub_url(repo_id, filename, endpoint=endpoint),
                                        timeout=timeout, endpoint=endpoint)
            if max_bytes is not None and (meta.size or 0) > max_bytes:
                raise WeightsError(f"{label}: {filename} of {repo_id} is {_mb(meta.size)} MB; "
                                   f"at most {_mb(max_bytes)} MB is read")
            # The client reports progress once per chunk it reads, 10 MiB by default: a
            # 100 MB file would move in ten jumps. Smaller chunks cost nothing measurable.
            constants.DOWNLOAD_CHUNK_SIZE = PROGRESS_CHUNK_BYTES
            # On "main" as timm asks, so that the cache's refs/main finds the file next time.
            path = hf_hub_download(
                repo_id, filename, cache_dir=hub_cache(),
                endpoint=endpoint, etag_timeout=timeout,
                tqdm_class=_progress_bar(progress) if progress else None)
            return filename, Path(path), meta.size or Path(path).stat().st_size
        except GatedRepoError as exc:
            raise WeightsError(
                f"{label}: {repo_id} is gated on the hub: a token is needed "
                f"(set HF_TOKEN to a token whose account was granted access)"
                + ("; the token in HF_TOKEN was refused" if _token() else "")) from exc
        except RepositoryNotFoundError as exc:
            hint = ("" if _token() else
                    " (if it is private, set HF_TOKEN to a token that can read it)")
            raise WeightsError(f"{label}: not on the hub: {repo_id}{hint}") from exc
        except RevisionNotFoundError as exc:
            raise WeightsError(f"{label}: not on the hub: {repo_id} "
                               f"(no such revision)") from exc
        except LocalEntryNotFoundError as exc:
            last = exc.__cause__ or exc  # the hub failed between our two requests
        except RemoteEntryNotFoundError:
            raise  # the next of WEIGHTS_FILES may be there
        except WeightsError:
            raise
        except Exception as exc:  # server errors, timeouts, cut connections, size mismatch
            if not _transient(exc):
                raise WeightsError(f"{label}: could not fetch {filename} from "
                                   f"{repo_id}: {_short(exc)}") from exc
            last = exc
    raise WeightsError(f"{label}: the hub failed {tries} times for {repo_id} "
                       f"({filename}); last: {_short(last)}") from last


def _cached(repo_id: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache())
    return Path(found) if isinstance(found, str) else None


def _checked_sha256(checkpoint, repo_id: str, filename: str, path: Path) -> str:
    """The file's sha256, checked against its LFS id (the blob's name in the cache)."""
    blob = path.resolve()
    stat = blob.stat()
    key = (str(blob), stat.st_size, stat.st_mtime_ns)
    if key not in _hashed:
        _hashed[key] = sha256_of_path(blob)
    sha = _hashed[key]
    if _SHA256.fullmatch(blob.name) and blob.name != sha:
        # Not what the hub announced (a truncated or altered copy): never read it.
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        _hashed.pop(key, None)
        raise WeightsError(
            f"{checkpoint.name}: {filename} of {repo_id} in the local cache has sha256 {sha}, "
            f"not the {blob.name} the hub announced")
    return sha


def _transient(exc: Exception) -> bool:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        return status is None or status >= 500 or status in (408, 429)
    return isinstance(exc, (httpx2.TransportError, OSError))


def _token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def _short(exc: Exception | None) -> str:
    text = str(exc).strip().splitlines()[0] if exc and str(exc).strip() else type(exc).__name__
    return text[:300]


def _progress_bar(progress: ProgressCallback):
    """A tqdm class for huggingface_hub that reports bytes to ``progress`` and prints nothing."""
    from huggingface_hub.utils import tqdm as hub_tqdm

    class ProgressBar(hub_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self.bytes_done = int(kwargs.get("initial") or 0)
            progress(self.bytes_done, int(self.total or 0))

        def update(self, n=1):
            self.bytes_done += int(n or 0)
            progress(self.bytes_done, int(self.total or 0))

    return ProgressBar


def remove_from_cache(repo_id: str) -> None:
    """Delete a repository's files from the host's cache (tests; an admin starting over)."""
    from huggingface_hub.file_download import repo_folder_name

    folder = Path(hub_cache() or _default_cache()) / repo_folder_name(repo_id=repo_id,
                                                                    repo_type="model")
    shutil.rmtree(folder, ignore_errors=True)
