import io
import stat
import zipfile

import pytest

from tests.builders import image_folder_zip, png_bytes
from transferability.archives import ArchiveError, ArchiveLimits, read_manifest, unpack_image_folder

import numpy as np


def make_zip(path, entries: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def png(seed=0, size=8):
    return png_bytes(np.random.default_rng(seed), size)


def test_it_unpacks_an_image_folder(tmp_path):
    archive = image_folder_zip(tmp_path / "a.zip", {"cat": 3, "dog": 2})
    unpacked = unpack_image_folder(archive, tmp_path / "store" / "ds")
    assert unpacked.class_names == ["cat", "dog"]
    assert unpacked.class_counts == [3, 2]
    assert unpacked.num_images == 5
    names, files = read_manifest(tmp_path / "store" / "ds")
    assert names == ["cat", "dog"]
    assert [label for _, label in files] == [0, 0, 0, 1, 1]
    assert all((tmp_path / "store" / "ds" / p).is_file() for p, _ in files)


def test_it_looks_inside_one_wrapping_folder_and_ignores_junk(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {
        "top/a/1.png": png(1), "top/b/2.png": png(2), "top/README.txt": b"hello",
        "__MACOSX/top/a/._1.png": b"junk", "top/a/.DS_Store": b"junk",
    })
    unpacked = unpack_image_folder(archive, tmp_path / "ds")
    assert unpacked.class_names == ["a", "b"]
    assert unpacked.num_images == 2


def test_the_content_hash_follows_content_not_the_archive(tmp_path):
    a = unpack_image_folder(image_folder_zip(tmp_path / "a.zip", {"x": 2, "y": 2}), tmp_path / "a")
    b = unpack_image_folder(image_folder_zip(tmp_path / "b.zip", {"x": 2, "y": 2}, prefix="w/"),
                            tmp_path / "b")
    c = unpack_image_folder(image_folder_zip(tmp_path / "c.zip", {"x": 2, "y": 2}, seed=1),
                            tmp_path / "c")
    assert a.content_hash == b.content_hash
    assert a.content_hash != c.content_hash


@pytest.mark.parametrize("entries, message", [
    ({"a/1.png": b"\x89PNG"}, "at least 2 class folders"),
    ({"1.png": b"x", "a/2.png": b"x"}, "not inside a class folder"),
    ({"a/1.png": b"not an image", "b/2.png": b"x"}, "could not be used"),
    ({"a/notes.txt": b"x", "b/2.png": b"x"}, "not images"),
    ({"../evil/1.png": b"x", "b/2.png": b"x"}, "outside the archive"),
    ({"/etc/1.png": b"x", "b/2.png": b"x"}, "absolute"),
])
def test_it_refuses_bad_archives_with_a_clear_message(tmp_path, entries, message):
    entries = {k: (png() if v == b"x" else v) for k, v in entries.items()}
    archive = make_zip(tmp_path / "bad.zip", entries)
    with pytest.raises(ArchiveError, match=message) as refused:
        unpack_image_folder(archive, tmp_path / "store" / "ds")
    assert str(tmp_path) not in str(refused.value)  # no server paths in what users read
    assert not (tmp_path / "store" / "ds").exists()
    assert list((tmp_path / "store").glob("*")) == [] if (tmp_path / "store").exists() else True


def test_it_refuses_links(tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("a/link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
        zf.writestr("b/1.png", png())
    with pytest.raises(ArchiveError, match="link"):
        unpack_image_folder(path, tmp_path / "ds")


def test_it_refuses_what_is_not_a_zip(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(b"plain text")
    with pytest.raises(ArchiveError, match="not a zip"):
        unpack_image_folder(path, tmp_path / "ds")


def test_limits_on_entries_pixels_and_ratio(tmp_path):
    archive = image_folder_zip(tmp_path / "a.zip", {"a": 3, "b": 3}, size=20)
    with pytest.raises(ArchiveError, match="entries"):
        unpack_image_folder(archive, tmp_path / "d1", ArchiveLimits(max_entries=4))
    with pytest.raises(ArchiveError, match="pixels"):
        unpack_image_folder(archive, tmp_path / "d2", ArchiveLimits(max_pixels=100))
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/1.png", b"\0" * (4 << 20))
        zf.writestr("b/1.png", png())
    with pytest.raises(ArchiveError, match="zip bomb"):
        unpack_image_folder(bomb, tmp_path / "d3")
    assert not any((tmp_path / d).exists() for d in ("d1", "d2", "d3"))


def test_a_file_object_works_like_a_path(tmp_path):
    archive = image_folder_zip(tmp_path / "a.zip", {"a": 2, "b": 2})
    unpacked = unpack_image_folder(io.BytesIO(archive.read_bytes()), tmp_path / "ds")
    assert unpacked.class_counts == [2, 2]


def test_a_damaged_archive_is_refused_with_a_message_and_leaves_nothing(tmp_path):
    archive = image_folder_zip(tmp_path / "a.zip", {"a": 3, "b": 3}, size=20)
    data = bytearray(archive.read_bytes())
    start = data.index(b"IHDR")  # inside the first stored PNG: its CRC no longer matches
    data[start:start + 8] = b"XXXXXXXX"
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(data))
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(archive.read_bytes()[: len(data) // 2])

    with pytest.raises(ArchiveError, match="damaged"):
        unpack_image_folder(damaged, tmp_path / "store" / "d1")
    with pytest.raises(ArchiveError, match="not a zip|damaged"):
        unpack_image_folder(truncated, tmp_path / "store" / "d2")
    assert not any((tmp_path / "store").iterdir())


def test_an_archive_over_the_size_limit_is_refused(tmp_path):
    archive = image_folder_zip(tmp_path / "a.zip", {"a": 2, "b": 2})
    with pytest.raises(ArchiveError, match="the limit is"):
        unpack_image_folder(archive, tmp_path / "ds", ArchiveLimits(max_bytes=10))
