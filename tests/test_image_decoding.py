"""Images are decoded as they are meant to be seen, the same way for the checkpoints
(feature extraction) and for the thumbnails made at ingest: turned upright by their EXIF
orientation, 16-bit images scaled by their range instead of clipped at 255, float images
scaled from [0, 1] instead of coming out black, and large images decoded only as large as a
thumbnail needs.
"""

import io

import numpy as np
import pytest
from PIL import Image

from transferability.archives import unpack_image_folder
from workers.extraction import ImageFiles

RED, BLUE = (220, 30, 30), (30, 30, 220)


def as_features_see_it(path) -> np.ndarray:
    """The RGB pixels feature extraction gets for one image file, before its transforms."""
    files = ImageFiles(path.parent, [path.name], [np.asarray])
    (pixels,) = files[0]
    return pixels


def decoded(path, fit=None) -> Image.Image:
    from transferability.decoding import upright_rgb

    with Image.open(path) as im:
        return upright_rgb(im, fit=fit)


def stored_thumbnail(tmp_path, image: bytes, suffix: str) -> np.ndarray:
    """The thumbnail ingest stores for ``image`` (unpacked beside a second class)."""
    import zipfile

    from tests.builders import png_bytes
    from transferability.archives import thumbnail_name

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"a/image{suffix}", image)
        zf.writestr("b/other.png", png_bytes(np.random.default_rng(0)))
    unpack_image_folder(archive, tmp_path / "ds")
    with Image.open(tmp_path / "ds" / thumbnail_name(0)) as im:
        return np.asarray(im.convert("RGB"))


def rotated_jpeg(path) -> bytes:
    """A wide JPEG, red on its left half, blue on its right, with EXIF orientation 6: a
    camera held upright, so it is meant to be seen tall, red on top."""
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :30], pixels[:, 30:] = RED, BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path.read_bytes()


def sixteen_bit_png(path) -> np.ndarray:
    values = np.linspace(28000, 32000, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(values).save(path, format="PNG")
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # Pillow reads it as 16-bit, not 8-bit
    return values


def float_tiff(path) -> np.ndarray:
    values = np.linspace(0.0, 1.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray(values, mode="F").save(path, format="TIFF")
    return values


def test_an_exif_rotated_jpeg_comes_out_upright_for_the_checkpoints(tmp_path):
    rotated_jpeg(tmp_path / "photo.jpg")

    pixels = as_features_see_it(tmp_path / "photo.jpg")

    assert pixels.shape == (60, 40, 3)
    assert np.abs(pixels[5, 20].astype(int) - RED).max() < 30
    assert np.abs(pixels[55, 20].astype(int) - BLUE).max() < 30


def test_an_exif_rotated_jpeg_comes_out_upright_in_its_thumbnail(tmp_path):
    thumbnail = stored_thumbnail(tmp_path, rotated_jpeg(tmp_path / "photo.jpg"), ".jpg")

    assert thumbnail.shape == (96, 64, 3)
    assert np.abs(thumbnail[10, 32].astype(int) - RED).max() < 30
    assert np.abs(thumbnail[85, 32].astype(int) - BLUE).max() < 30


def test_a_16_bit_png_is_scaled_by_its_range_not_clipped(tmp_path):
    values = sixteen_bit_png(tmp_path / "deep.png")

    pixels = as_features_see_it(tmp_path / "deep.png")

    grey = pixels[..., 0].astype(int)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    assert (grey == 255).mean() < 0.01
    np.testing.assert_allclose(grey, values / 257, atol=0.51)
    order = np.argsort(values.ravel(), kind="stable")
    assert (np.diff(grey.ravel()[order]) >= 0).all()  # brighter stays brighter
    assert grey.max() - grey.min() >= 15  # 4000 levels of 65535 span 15 of 255


def test_a_16_bit_png_thumbnail_is_not_white(tmp_path):
    sixteen_bit_png(tmp_path / "deep.png")

    thumbnail = stored_thumbnail(tmp_path, (tmp_path / "deep.png").read_bytes(), ".png")

    assert (thumbnail == 255).mean() < 0.01
    assert 105 <= thumbnail.mean() <= 125  # about 30000 / 257


def test_a_float_tiff_in_0_1_is_not_black(tmp_path):
    values = float_tiff(tmp_path / "float.tif")

    pixels = as_features_see_it(tmp_path / "float.tif")

    grey = pixels[..., 0].astype(int)
    np.testing.assert_allclose(grey, values * 255, atol=0.51)
    assert grey.max() == 255 and grey.min() == 0
    assert stored_thumbnail(tmp_path, (tmp_path / "float.tif").read_bytes(), ".tif").mean() > 100


def test_a_float_tiff_outside_0_1_is_stretched_from_its_minimum_to_its_maximum(tmp_path):
    values = np.linspace(-40.0, 900.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    Image.fromarray(values, mode="F").save(tmp_path / "float.tif", format="TIFF")

    grey = as_features_see_it(tmp_path / "float.tif")[..., 0].astype(int)

    np.testing.assert_allclose(grey, (values + 40) / 940 * 255, atol=0.51)


@pytest.mark.parametrize("image_format, size", [("JPEG", (4000, 3000)), ("PNG", (3000, 2000))])
def test_a_large_image_is_decoded_only_as_large_as_a_thumbnail_needs(tmp_path, image_format,
                                                                      size):
    path = tmp_path / f"large.{image_format.lower()}"
    Image.new("RGB", size, (90, 160, 30)).save(path, format=image_format)

    small = decoded(path, fit=96)

    assert small.mode == "RGB"
    assert 192 <= max(small.size) <= 600  # a JPEG at 1/8 scale, a PNG reduced by 15
    assert small.size[0] / small.size[1] == pytest.approx(size[0] / size[1], rel=0.02)
    assert np.abs(np.asarray(small)[50, 50].astype(int) - (90, 160, 30)).max() < 6
    assert decoded(path).size == size  # for the checkpoints: the whole image


def test_a_large_jpeg_is_read_at_reduced_scale_at_ingest(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    path = tmp_path / "large.jpg"
    Image.new("RGB", (4000, 3000), (90, 160, 30)).save(path, format="JPEG")
    loaded = []
    real_load = JpegImagePlugin.JpegImageFile.load
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load",
                        lambda self: loaded.append(self.size) or real_load(self))

    thumbnail = stored_thumbnail(tmp_path, path.read_bytes(), ".jpg")

    assert thumbnail.shape == (72, 96, 3)
    assert loaded and max(w * h for w, h in loaded) <= 4000 * 3000 // 16
