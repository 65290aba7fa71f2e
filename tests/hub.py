"""A model hub on loopback that speaks what ``huggingface_hub.hf_hub_download`` asks of one.

The real client and the real timm loader talk to it over HTTP, reached through
``HF_ENDPOINT`` as a deployment reaches huggingface.co. It answers the way the hub does:

- ``HEAD``/``GET {endpoint}/{repo_id}/resolve/{revision}/{filename}``. A small file
  (``config.json``) is answered in place, with ``ETag`` (its git blob id), ``Content-Length``
  and ``X-Repo-Commit``. A weights file is stored in LFS: the answer is a 302 to the content
  server with ``X-Linked-Etag`` (its sha256), ``X-Linked-Size`` and ``X-Repo-Commit``.
- The content server (a second port, so another origin: the client stops at the redirect,
  reads the metadata from it and sends no token there, as with the hub's CDN) serves the
  bytes, with ``Range`` when asked.
- Errors carry the hub's ``X-Error-Code``: ``RepoNotFound``, ``RevisionNotFound``,
  ``EntryNotFound``, ``GatedRepo``.

Faults are queued per repository (``fail``) and used up one request at a time: an HTTP
status (404, 500, ...), ``"hang"`` (no answer for ``hang_seconds``, then a closed
connection) or ``"cut"`` (the full ``Content-Length`` announced, half the file sent, the
connection closed). ``bytes_per_second`` slows the content server down, so that a test can
watch a download's progress. A repository added with a ``token`` wants ``Authorization: Bearer
<token>``: a gated one answers 401 ``GatedRepo`` without it, a private one 401
``RepoNotFound``, as the hub does.

huggingface_hub reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` once, at import; zoo/hub.py
passes ``HF_ENDPOINT`` and ``HF_HUB_CACHE`` on every call, so the ``local_hub`` fixture of a
test only sets those variables, and turns the client's import-time offline switch off while
the test runs (the suite runs with ``HF_HUB_OFFLINE=1``).
"""

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

LFS_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


@dataclass
class Repo:
    """A repository's files (treated as fixed: a test that changes them adds the repository
    again); their hashes are computed once, not per request (100 MB cost 0.3 s each)."""

    files: dict[str, bytes]
    token: str | None = None
    gated: bool = False
    sha256: dict[str, str] = field(init=False)
    blob_id: dict[str, str] = field(init=False)  # git blob ids: the ETag of a file in git
    commit: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = {n: hashlib.sha256(c).hexdigest() for n, c in self.files.items()}
        self.blob_id = {n: git_blob_id(c) for n, c in self.files.items()}
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + self.files[name])
        self.commit = digest.hexdigest()

    def by_sha256(self, sha: str) -> bytes | None:
        return next((self.files[n] for n, h in self.sha256.items() if h == sha), None)


@dataclass
class Fault:
    repo_id: str
    kind: int | str
    times: int
    method: str | None = None


@dataclass
class Request:
    method: str
    path: str
    repo_id: str
    filename: str
    authorization: str | None
    range: str | None = None
    answered: int | str = 0


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def timm_repo_files(architecture: str, num_classes: int = 1000, seed: int = 0,
                    label_names: list[str] | None = None, card_license: str | None = None,
                    **model_kwargs) -> tuple[dict[str, bytes], dict]:
    """``model.safetensors`` and ``config.json`` of a timm model with seeded random weights,
    as the hub holds them for timm's own repositories (with ``label_names``, and a model card
    whose metadata gives ``card_license``, when asked); also the state dict, to compare."""
    import timm
    import torch
    from safetensors.torch import save

    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, num_classes=num_classes,
                              **model_kwargs)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    config = {
        "architecture": architecture,
        "num_classes": num_classes,
        "num_features": model.num_features,
        "pretrained_cfg": {k: v for k, v in model.pretrained_cfg.items()
                           if isinstance(v, (str, int, float, list, tuple)) or v is None},
    }
    if model_kwargs:
        config["model_args"] = model_kwargs
    if label_names is not None:
        config["label_names"] = list(label_names)
    files = {"model.safetensors": save(state),
             "config.json": json.dumps(config, indent=2).encode()}
    if card_license:
        files["README.md"] = (f"---\ntags:\n- image-classification\nlicense: {card_license}\n"
                              f"library_name: timm\n---\n# {architecture}\n").encode()
    return files, state


class LocalHub:
    def __init__(self, hang_seconds: float = 3.0, bytes_per_second: float | None = None):
        self.bytes_per_second = bytes_per_second
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self.hang_seconds = hang_seconds
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    # What the test sets up.
    def add_repo(self, repo_id: str, files: dict[str, bytes], token: str | None = None,
                 gated: bool = False) -> Repo:
        self.repos[repo_id] = Repo(dict(files), token=token, gated=gated)
        return self.repos[repo_id]

    def add_timm_model(self, repo_id: str, architecture: str, num_classes: int = 1000,
                       seed: int = 0, label_names: list[str] | None = None,
                       card_license: str | None = None, **repo) -> dict:
        files, state = timm_repo_files(architecture, num_classes, seed, label_names,
                                       card_license)
        self.add_repo(repo_id, files, **repo)
        return state

    def fail(self, repo_id: str, kind: int | str, times: int = 1, method: str | None = None):
        """The next ``times`` requests for ``repo_id`` (of ``method``, when given) fail so."""
        with self._lock:
            self.faults.append(Fault(repo_id, kind, times, method))

    def downloads(self, repo_id: str, filename: str = "model.safetensors") -> int:
        """Bodies of ``filename`` served in full or in part (GETs, not HEADs)."""
        sha = self.repos[repo_id].sha256[filename]
        return sum(1 for r in self.requests if r.method == "GET" and r.repo_id == repo_id
                   and r.filename in (filename, sha) and r.answered in (200, 206, "cut"))

    # Running.
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def content_server(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def start(self) -> "LocalHub":
        for role in ("hub", "content"):
            handler = type(f"{role.title()}Handler", (_Handler,), {"hub": self, "role": role})
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            server.daemon_threads = True
            server.block_on_close = False  # a hanging answer must not hold the test's end
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _take_fault(self, repo_id: str, method: str) -> int | str | None:
        with self._lock:
            for fault in self.faults:
                if fault.repo_id == repo_id and fault.times > 0 and fault.method in (None, method):
                    fault.times -= 1
                    return fault.kind
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LocalHub
    role: str

    def log_message(self, *args) -> None:  # quiet: the test reads hub.requests instead
        pass

    def do_HEAD(self) -> None:
        self._quietly(body=False)

    def do_GET(self) -> None:
        self._quietly(body=True)

    def _quietly(self, body: bool) -> None:
        try:
            self._answer(body)
        except (BrokenPipeError, ConnectionResetError):  # the client went away (killed)
            self.close_connection = True

    def _answer(self, body: bool) -> None:
        if self.role == "hub":
            repo_id, revision, filename = _parse_resolve(self.path)
        else:  # /{repo_id}/{sha256}
            repo_id, _, filename = self.path.lstrip("/").rpartition("/")
            revision = None
        request = Request(self.command, self.path, repo_id, filename,
                          self.headers.get("Authorization"), self.headers.get("Range"))
        self.hub.requests.append(request)
        fault = self.hub._take_fault(repo_id, self.command)
        if fault == "hang":
            request.answered = "hang"
            time.sleep(self.hub.hang_seconds)
            self.close_connection = True
            return
        if isinstance(fault, int):
            request.answered = fault
            return self._error(fault, "" if fault >= 500 else "RepoNotFound")
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            request.answered = 404
            return self._error(404, "RepoNotFound")
        if self.role == "content":
            return self._content(repo, filename, body, request, cut=fault == "cut")
        if repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
            request.answered = 401
            message = (f"Access to model {repo_id} is restricted. You must have access to it "
                       f"and be authenticated to access it. Please log in."
                       if repo.gated else "Repository not found")
            return self._error(401, "GatedRepo" if repo.gated else "RepoNotFound", message)
        if revision not in ("main", repo.commit):
            request.answered = 404
            return self._error(404, "RevisionNotFound")
        headers = {"X-Repo-Commit": repo.commit}
        content = repo.files.get(filename)
        if content is None:
            request.answered = 404
            return self._error(404, "EntryNotFound", extra=headers)
        if filename.endswith(LFS_SUFFIXES):
            sha = repo.sha256[filename]
            request.answered = 302
            self.send_response(302)
            for name, value in {**headers, "Location": f"{self.hub.content_server}/{repo_id}/{sha}",
                                "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(content)),
                                "ETag": f'"{repo.blob_id[filename]}"', "Content-Length": "0"}.items():
                self.send_header(name, value)
            self.end_headers()
            return
        request.answered = 200
        self._send(200, content, body, {**headers, "ETag": f'"{repo.blob_id[filename]}"'})

    def _content(self, repo: Repo, sha: str, body: bool, request: Request, cut: bool) -> None:
        content = repo.by_sha256(sha)
        if content is None:
            request.answered = 404
            return self._error(404, "")
        start, end = 0, len(content) - 1
        status, headers = 200, {"ETag": f'"{sha}"', "Accept-Ranges": "bytes"}
        asked = self.headers.get("Range", "")
        if asked.startswith("bytes="):
            first, _, last = asked[len("bytes="):].partition("-")
            start = int(first or 0)
            end = min(int(last), end) if last else end
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        part = memoryview(content)[start:end + 1]  # no copy of a 100 MB file per request
        if cut and body:
            request.answered = "cut"
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(part))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(content[start:max(start, len(content) // 2)])
            self.wfile.flush()
            self.close_connection = True
            return
        request.answered = status
        self._send(status, part, body, headers)

    def _send(self, status: int, content: bytes, body: bool, headers: dict) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(content))}.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            chunk = 1 << 16
            for start in range(0, len(content), chunk):
                self.wfile.write(content[start:start + chunk])
                if self.role == "content" and self.hub.bytes_per_second:
                    time.sleep(chunk / self.hub.bytes_per_second)

    def _error(self, status: int, code: str, message: str = "", extra: dict | None = None) -> None:
        payload = json.dumps({"error": message or code or "error"}).encode()
        headers = dict(extra or {})
        if code:
            headers["X-Error-Code"] = code
        if message:
            headers["X-Error-Message"] = message
        self._send(status, payload, self.command == "GET",
                   {**headers, "Content-Type": "application/json"})


def talk_to(hub: LocalHub, monkeypatch, tmp_path) -> None:
    """This process online to ``hub`` alone, with an empty cache under ``tmp_path`` and no
    token, for the rest of the test."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture
def local_hub(monkeypatch, settings, tmp_path):
    """The hub on loopback, an empty cache, no token, short retries.

    The suite runs with HF_HUB_OFFLINE=1, which huggingface_hub reads once at import: the
    variable is turned off for zoo/hub.py and the client's copy of it with it.
    """
    hub = LocalHub(hang_seconds=2).start()
    talk_to(hub, monkeypatch, tmp_path)
    settings.ZOORANK_HUB_TRIES = 3
    settings.ZOORANK_HUB_BACKOFF_SECONDS = 0.05
    settings.ZOORANK_HUB_TIMEOUT_SECONDS = 0.5
    yield hub
    hub.stop()


def _parse_resolve(path: str) -> tuple[str, str, str]:
    """(repo_id, revision, filename) of ``/{repo_id}/resolve/{revision}/{filename}``."""
    path = path.split("?", 1)[0].lstrip("/")
    repo_id, _, rest = path.partition("/resolve/")
    revision, _, filename = rest.partition("/")
    return repo_id, revision, filename

