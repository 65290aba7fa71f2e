"""Validating and unpacking an uploaded ImageFolder archive into the dataset store.

Only this module unpacks archives. It refuses absolute paths, ``..``, links, encrypted
entries, too many entries, too many bytes, suspicious compression ratios and images with
too many pixels; every image must decode. Nothing is written outside the destination: the
archive is unpacked into a temporary folder next to it and renamed into place only when
everything passed.
"""

import hashlib
import json
import os
import shutil
import stat
import uuid
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
MANIFEST = "manifest.json"
_JUNK_PARTS = {"__MACOSX", "Thumbs.db", "desktop.ini"}
_RATIO_MIN_BYTES = 1 << 20  # small files may compress well without being a bomb
_MAX_LISTED = 5
# What zipfile raises for a damaged archive: bad CRC, truncated data, unknown compression.
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError)


class ArchiveError(ValueError):
    """The archive cannot become a target dataset; the message says why."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int = 2 << 30
    max_entries: int = 200_000
    max_unpacked_bytes: int = 8 << 30
    max_ratio: int = 200
    max_pixels: int = 50_000_000


@dataclass
class UnpackedDataset:
    class_names: list[str]
    class_counts: list[int]
    content_hash: str
    files: list[tuple[str, int]] = field(repr=False)  # (path under the dataset root, label)

    @property
    def num_images(self) -> int:
        return len(self.files)


def unpack_image_folder(archive: BinaryIO | str | Path, dest: Path,
                        limits: ArchiveLimits = ArchiveLimits()) -> UnpackedDataset:
    """Validate ``archive`` (a zip in ImageFolder layout) and unpack it into ``dest``.

    ``dest`` must not exist. On any problem an ArchiveError is raised and nothing is left.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(dest)
    size = _size_of(archive)
    if size > limits.max_bytes:
        raise ArchiveError(f"the archive is {size / 2**20:.0f} MiB; the limit is "
                           f"{limits.max_bytes / 2**20:.0f} MiB")
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise ArchiveError("the file is not a zip archive") from None
    except _DAMAGED as exc:
        raise ArchiveError(f"the archive is damaged: {exc}") from None
    with zf:
        members = _image_members(zf, limits)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".unpacking-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            unpacked = _extract(zf, members, tmp, limits)
            os.replace(tmp, dest)
        except ArchiveError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        except _DAMAGED as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ArchiveError(f"the archive is damaged: {exc}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return unpacked


def read_manifest(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (path, label) pairs of an unpacked dataset, in sample order."""
    data = json.loads((Path(root) / MANIFEST).read_text())
    return data["class_names"], [(path, label) for path, label, _ in data["files"]]


def _size_of(archive) -> int:
    if isinstance(archive, (str, Path)):
        return Path(archive).stat().st_size
    pos = archive.tell()
    archive.seek(0, os.SEEK_END)
    end = archive.tell()
    archive.seek(pos)
    return end


def _image_members(zf: zipfile.ZipFile, limits: ArchiveLimits) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveError(f"the archive has {len(infos)} entries; the limit is "
                           f"{limits.max_entries}")
    files: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    total = 0
    for info in infos:
        name = info.filename
        path = PurePosixPath(name)
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or "\\" in name:
            raise ArchiveError(f"entry {name!r} has an absolute or non-portable path")
        if ".." in path.parts:
            raise ArchiveError(f"entry {name!r} points outside the archive ('..')")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ArchiveError(f"entry {name!r} is a link; links are not allowed")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"entry {name!r} is encrypted")
        if info.is_dir() or _is_junk(path):
            continue
        total += info.file_size
        if total > limits.max_unpacked_bytes:
            raise ArchiveError(f"the archive unpacks to more than "
                               f"{limits.max_unpacked_bytes / 2**20:.0f} MiB")
        if (info.file_size > _RATIO_MIN_BYTES
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            raise ArchiveError(f"entry {name!r} is compressed more than {limits.max_ratio}:1, "
                               f"which looks like a zip bomb")
        files.append((info, path))
    files = _strip_common_folder(files)
    members, stray = [], []
    for info, rel in files:
        if rel.suffix.lower() not in IMAGE_SUFFIXES:
            if len(rel.parts) == 1:
                continue  # a README or licence beside the class folders
            stray.append(str(rel))
        elif len(rel.parts) == 1:
            raise ArchiveError(f"image {info.filename!r} is not inside a class folder; "
                               f"expected class_name/image.jpg")
        else:
            members.append((info, rel))
    if stray:
        raise ArchiveError(f"{len(stray)} files are not images ({_listed(stray)}); allowed: "
                           f"{', '.join(sorted(IMAGE_SUFFIXES))}")
    classes = {rel.parts[0] for _, rel in members}
    if len(classes) < 2:
        found = f"found {len(classes)}" + (f" ({next(iter(classes))!r})" if classes else "")
        raise ArchiveError(f"a target dataset needs at least 2 class folders with images; {found}")
    return members


def _is_junk(path: PurePosixPath) -> bool:
    return any(part in _JUNK_PARTS or part.startswith(".") for part in path.parts)


def _strip_common_folder(files):
    """Archives often wrap the class folders in one top-level folder; look inside it.

    Only images decide the wrapping folder; a README beside it is dropped.
    """
    while True:
        images = [rel for _, rel in files if rel.suffix.lower() in IMAGE_SUFFIXES]
        heads = {rel.parts[0] for rel in images}
        if not images or len(heads) != 1 or not all(len(rel.parts) > 2 for rel in images):
            return files
        head = heads.pop()
        files = [(info, PurePosixPath(*rel.parts[1:])) for info, rel in files
                 if len(rel.parts) > 1 and rel.parts[0] == head]


def _extract(zf, members, tmp: Path, limits: ArchiveLimits) -> UnpackedDataset:
    members = sorted(members, key=lambda m: (m[1].parts[0], str(m[1])))
    class_names = sorted({rel.parts[0] for _, rel in members})
    index = {name: i for i, name in enumerate(class_names)}
    bad: list[str] = []
    records = []
    digest = hashlib.sha256()
    for n, (info, rel) in enumerate(members):
        label = index[rel.parts[0]]
        # Our own file names: nothing from the archive reaches the file system.
        stored = f"{label:05d}/{n:07d}{rel.suffix.lower()}"
        target = tmp / stored
        target.parent.mkdir(exist_ok=True)
        file_hash = _copy_member(zf, info, target)
        problem = _check_image(target, limits.max_pixels)
        if problem:
            bad.append(f"{rel}: {problem}")
            continue
        records.append((stored, label, str(rel)))
        digest.update(f"{rel.parts[0]}\0{file_hash}\n".encode())
    if bad:
        raise ArchiveError(f"{len(bad)} images could not be used: {_listed(bad)}")
    counts = Counter(label for _, label, _ in records)
    manifest = {
        "class_names": class_names,
        "files": [list(r) for r in records],
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest))
    return UnpackedDataset(
        class_names=class_names,
        class_counts=[counts[i] for i in range(len(class_names))],
        content_hash=digest.hexdigest(),
        files=[(stored, label) for stored, label, _ in records],
    )


def _copy_member(zf, info, target: Path) -> str:
    """Copy one entry, never writing more than it declared; return its sha256."""
    digest = hashlib.sha256()
    written = 0
    with zf.open(info) as src, open(target, "wb") as out:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            written += len(chunk)
            if written > info.file_size:
                raise ArchiveError(f"entry {info.filename!r} is larger than it declares")
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _check_image(path: Path, max_pixels: int) -> str | None:
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > max_pixels:
                return f"{width}x{height} pixels is over the limit of {max_pixels}"
            im.load()
    except UnidentifiedImageError:
        return "not an image format that can be read"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"does not decode ({str(exc).splitlines()[0][:120] or type(exc).__name__})"
    except Image.DecompressionBombError as exc:
        return str(exc)[:160]
    return None


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    return shown + (f"; and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")
