"""Validating and unpacking an uploaded ImageFolder archive into the dataset store.

Only this module unpacks archives. What refuses an archive (nothing is kept, the reason
names the entry) and what is only skipped with a warning (listed on the dataset) is
:data:`INGEST_POLICY`, which the upload page shows; the share of unreadable images that is
skipped rather than refused is ``ArchiveLimits.max_unreadable_fraction``.

Every kept image's thumbnail is made here, once, beside the images
(:func:`thumbnail_name`); the pages only ever read those (:mod:`.images`), so no web request
decodes an original. Making it is also the check that the image decodes, and it decodes
only as large as the thumbnail needs (:func:`.decoding.upright_rgb`): a 49-megapixel JPEG
costs a fraction of its full size.

Nothing is written outside the destination: the archive is unpacked into a temporary
folder next to it and renamed into place only when everything passed.
"""

import hashlib
import json
import os
import shutil
import stat
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from .decoding import thumbnail_png

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
MANIFEST = "manifest.json"
THUMBNAILS = "thumbnails"
_JUNK_PARTS = {"__MACOSX", "Thumbs.db", "desktop.ini"}
_RATIO_MIN_BYTES = 1 << 20  # small files may compress well without being a bomb
# What refuses an archive and what is only skipped with a warning (shown on the upload page).
INGEST_POLICY = {
    "refused": [
        "not a zip archive, or a damaged one",
        "an encrypted entry, an absolute path, '..' or a link",
        "over a limit: archive size, number of entries, unpacked size, compression ratio "
        "(of each large entry, and of all entries together), your storage quota",
        "an image outside a class folder; fewer than 2 class folders with images",
        "more than {fraction} of the images unreadable (not decodable, or too many pixels)",
    ],
    "skipped": [
        "unreadable images, up to {fraction} of the images: listed on the dataset page",
        "files inside a class folder that are not images: listed on the dataset page",
        "README or licence files beside the class folders, __MACOSX and dot files",
    ],
}
_MAX_LISTED = 5
PROGRESS_SECONDS = 1.0
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
    max_unreadable_fraction: float = 0.01
    # What the owner's storage quota leaves (transferability.quota); None: no quota.
    storage_left: int | None = None
    storage_note: str = ""


@dataclass
class UnpackedDataset:
    class_names: list[str]
    class_counts: list[int]
    content_hash: str
    files: list[tuple[str, int]] = field(repr=False)  # (path under the dataset root, label)
    # Per kept image, in sample order: (width, height, mode, format, sha256, bytes).
    images: list[tuple] = field(default_factory=list, repr=False)
    skipped: list[str] = field(default_factory=list)  # "entry: reason", left out with a warning
    stored_bytes: int = 0  # what the unpacked folder takes in the store

    @property
    def num_images(self) -> int:
        return len(self.files)


def unpack_image_folder(archive: BinaryIO | str | Path, dest: Path,
                        limits: ArchiveLimits = ArchiveLimits(),
                        progress: Callable[[int, int], None] | None = None) -> UnpackedDataset:
    """Validate ``archive`` (a zip in ImageFolder layout) and unpack it into ``dest``.

    ``dest`` must not exist. On any problem an ArchiveError is raised and nothing is left.
    ``progress(done, total)`` is called as image entries are unpacked (about once a
    second); an exception it raises stops the unpacking, leaving nothing.
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
        members, skipped = _image_members(zf, limits, size)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = unpacking_folder(dest)
        shutil.rmtree(tmp, ignore_errors=True)  # left by an attempt whose process died
        tmp.mkdir()
        try:
            unpacked = _extract(zf, members, tmp, limits, progress)
            unpacked.skipped = skipped + unpacked.skipped
            unpacked.stored_bytes = folder_bytes(tmp)
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


def unpacking_folder(dest: Path) -> Path:
    """Where ``dest`` is unpacked before it is renamed into place."""
    return Path(dest).parent / f".unpacking-{Path(dest).name}"


def read_manifest(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and (path, label) pairs of an unpacked dataset, in sample order."""
    data = json.loads((Path(root) / MANIFEST).read_text())
    return data["class_names"], [(path, label) for path, label, _ in data["files"]]


def thumbnail_name(index: int) -> str:
    """Where the thumbnail of image ``index`` (in sample order) lies under the dataset's
    folder. Datasets stored before thumbnails were made at ingest have no THUMBNAILS folder."""
    return f"{THUMBNAILS}/{index:07d}.png"


def folder_bytes(folder: Path) -> int:
    """The bytes of every file under ``folder``."""
    return sum(entry.stat().st_size for entry in Path(folder).rglob("*") if entry.is_file())


def _size_of(archive) -> int:
    if isinstance(archive, (str, Path)):
        return Path(archive).stat().st_size
    pos = archive.tell()
    archive.seek(0, os.SEEK_END)
    end = archive.tell()
    archive.seek(pos)
    return end


def _image_members(zf: zipfile.ZipFile, limits: ArchiveLimits, archive_bytes: int):
    """The image entries to unpack, and the entries skipped with a warning."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveError(f"the archive has {len(infos)} entries; the limit is "
                           f"{limits.max_entries}")
    _check_expansion(infos, limits, archive_bytes)
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
    classes = {rel.parts[0] for _, rel in members}
    if len(classes) < 2:
        found = f"found {len(classes)}" + (f" ({next(iter(classes))!r})" if classes else "")
        hint = (f" ({len(stray)} files are not images: {_listed(stray)}; allowed: "
                f"{', '.join(sorted(IMAGE_SUFFIXES))})" if stray else "")
        raise ArchiveError(f"a target dataset needs at least 2 class folders with images; "
                           f"{found}{hint}")
    return members, [f"{path}: not an image file type" for path in stray]


def _check_expansion(infos, limits: ArchiveLimits, archive_bytes: int) -> None:
    """All entries together, small ones included: a bomb of many small files that each
    compress well is refused as surely as one big one. Sizes are what the entries declare;
    :func:`_copy_member` never writes more than that."""
    total = sum(info.file_size for info in infos if not info.is_dir())
    if total > limits.max_ratio * max(archive_bytes, 1) and total > _RATIO_MIN_BYTES:
        raise ArchiveError(f"the archive's entries together unpack to {readable(total)} from "
                           f"{readable(archive_bytes)}, more than {limits.max_ratio}:1, which "
                           f"looks like a zip bomb")
    if limits.storage_left is not None and total > limits.storage_left:
        raise ArchiveError(f"the archive unpacks to {readable(total)}, more than the "
                           f"{readable(max(limits.storage_left, 0))} left of your storage quota"
                           + (f" ({limits.storage_note})" if limits.storage_note else ""))


def readable(count: int) -> str:
    """A byte count as a person reads it: "39 MiB", "4.2 KiB"."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{count} bytes"


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


def _extract(zf, members, tmp: Path, limits: ArchiveLimits, progress=None) -> UnpackedDataset:
    members = sorted(members, key=lambda m: (m[1].parts[0], str(m[1])))
    class_names = sorted({rel.parts[0] for _, rel in members})
    index = {name: i for i, name in enumerate(class_names)}
    bad: list[str] = []
    records, images = [], []
    digest = hashlib.sha256()
    allowed_bad = int(limits.max_unreadable_fraction * len(members))
    if progress is not None:
        progress(0, len(members))  # the index is read: the total is known
    last_report = time.monotonic()
    (tmp / THUMBNAILS).mkdir()
    for n, (info, rel) in enumerate(members):
        if progress is not None and time.monotonic() - last_report >= PROGRESS_SECONDS:
            progress(n, len(members))
            last_report = time.monotonic()
        label = index[rel.parts[0]]
        # Our own file names: nothing from the archive reaches the file system.
        stored = f"{label:05d}/{n:07d}{rel.suffix.lower()}"
        target = tmp / stored
        target.parent.mkdir(exist_ok=True)
        file_hash = _copy_member(zf, info, target)
        problem, described, thumbnail = _check_image(target, limits.max_pixels)
        if problem:
            bad.append(f"{rel}: {problem}")
            target.unlink()
            if len(bad) > allowed_bad:
                break
            continue
        (tmp / thumbnail_name(len(records))).write_bytes(thumbnail)
        records.append((stored, label, str(rel)))
        images.append(described + (file_hash, info.file_size))
        digest.update(f"{rel.parts[0]}\0{file_hash}\n".encode())
    if len(bad) > allowed_bad:
        share = f"{limits.max_unreadable_fraction:.0%}".replace(".0%", "%")
        raise ArchiveError(f"{len(bad)} images could not be used: {_listed(bad)}. That is "
                           f"more than {share} of the {len(members)} images (up to "
                           f"{allowed_bad} are skipped with a warning)")
    counts = Counter(label for _, label, _ in records)
    if sum(1 for c in counts.values() if c) < 2:
        raise ArchiveError("a target dataset needs at least 2 class folders with readable "
                           f"images; unreadable: {_listed(bad)}")
    if progress is not None:
        progress(len(members), len(members))
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
        images=images,
        skipped=bad,
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


def _check_image(path: Path, max_pixels: int) -> tuple[str | None, tuple, bytes]:
    """(the problem, or None; (width, height, mode, format) of a good image, as stored; and
    its thumbnail PNG). Making the thumbnail decodes the whole file: it is the check."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > max_pixels:
                return f"{width}x{height} pixels is over the limit of {max_pixels}", (), b""
            described = (width, height, im.mode, im.format or "?")
            return None, described, thumbnail_png(im)
    except UnidentifiedImageError:
        return "not an image format that can be read", (), b""
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        return f"does not decode ({reason})", (), b""
    except Image.DecompressionBombError as exc:
        return str(exc)[:160], (), b""


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    return shown + (f"; and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")
