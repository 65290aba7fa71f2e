"""Batched extraction: same features whatever the batch, cache reuse, OOM back-off."""

import numpy as np
import pytest
import timm
import torch

from tests.builders import image_folder_zip
from transferability.archives import unpack_image_folder
from workers import caches
from workers.extraction import extract, pixel_batches, pixel_key

CONFIG = {"input_size": (3, 32, 32), "interpolation": "bilinear", "crop_pct": 0.9,
          "crop_mode": "center", "mean": (0.5, 0.4, 0.3), "std": (0.2, 0.25, 0.3)}


@pytest.fixture
def images(tmp_path, settings):
    settings.ZOORANK_CACHE_DIR = tmp_path / "cache"
    unpacked = unpack_image_folder(image_folder_zip(tmp_path / "a.zip", {"a": 7, "b": 6}, size=40),
                                   tmp_path / "ds")
    return tmp_path / "ds", [p for p, _ in unpacked.files]


def model():
    torch.manual_seed(0)
    return timm.create_model("test_resnet", pretrained=False, num_classes=5).eval()


def run(images, batch_size, net=None):
    root, paths = images
    return extract(net or model(), torch.device("cpu"),
                   pixel_batches(root, "hash-1", paths, CONFIG, batch_size), total=len(paths),
                   data_config=CONFIG, want_logits=True, batch_size=batch_size)


def test_features_match_timms_own_transform_and_forward(images):
    from PIL import Image
    from timm.data import create_transform

    root, paths = images
    out = run(images, batch_size=4)
    transform = create_transform(**CONFIG)
    x = torch.stack([transform(Image.open(root / p).convert("RGB")) for p in paths])
    net = model()
    with torch.inference_mode():
        expected = net.forward_head(net.forward_features(x), pre_logits=True).numpy()
        logits = net(x).numpy()
    np.testing.assert_allclose(out.arrays["pre_logits"], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.arrays["logits"], logits, rtol=1e-4, atol=1e-4)


def test_the_image_cache_is_filled_once_and_gives_the_same_features(images):
    root, paths = images
    key = caches.content_key(dataset="hash-1", pixels=pixel_key(CONFIG))
    assert not caches.images.has(key, "pixels")
    first = run(images, batch_size=5)
    assert caches.images.has(key, "pixels")
    assert caches.images.load(key, "pixels").shape == (len(paths), 3, 32, 32)
    second = run(images, batch_size=3)
    np.testing.assert_allclose(first.arrays["pre_logits"], second.arrays["pre_logits"],
                               rtol=1e-5, atol=1e-5)


class RunsOutOfMemoryAbove(torch.nn.Module):
    """Wraps a model and raises OutOfMemoryError for batches larger than ``limit``."""

    def __init__(self, net, limit):
        super().__init__()
        self.net, self.limit, self.sizes = net, limit, []

    def forward_features(self, x):
        if len(x) > self.limit:
            raise torch.OutOfMemoryError("simulated")
        self.sizes.append(len(x))
        return self.net.forward_features(x)

    def forward_head(self, x, pre_logits=False):
        return self.net.forward_head(x, pre_logits=pre_logits)


def test_the_batch_size_backs_off_on_out_of_memory(images, monkeypatch):
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    reference = run(images, batch_size=13)
    wrapped = RunsOutOfMemoryAbove(model(), limit=3)
    out = run(images, batch_size=13, net=wrapped)
    assert max(wrapped.sizes) <= 3
    np.testing.assert_allclose(out.arrays["pre_logits"], reference.arrays["pre_logits"],
                               rtol=1e-4, atol=1e-4)


def test_the_simulated_memory_limit_backs_off_and_then_says_so(images, monkeypatch):
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    reference = run(images, batch_size=13)
    one_image = 3 * 32 * 32 * 4  # bytes of one normalised float32 input at 32 px
    monkeypatch.setenv("ZOORANK_SIMULATED_DEVICE_MEMORY_MB", str(2.5 * one_image / 2**20))
    out = run(images, batch_size=13)  # 13 -> 6 -> 3 -> 1: two images are too many
    np.testing.assert_allclose(out.arrays["pre_logits"], reference.arrays["pre_logits"],
                               rtol=1e-4, atol=1e-4)

    monkeypatch.setenv("ZOORANK_SIMULATED_DEVICE_MEMORY_MB", str(0.5 * one_image / 2**20))
    with pytest.raises(RuntimeError, match="out of device memory even one image at a time "
                                           r"\(out of device memory \(simulated: a batch of 1"):
        run(images, batch_size=13)


def test_one_decoding_pass_fills_the_cache_for_every_preprocessing(images, monkeypatch):
    from PIL import Image as PILImage

    from workers import extraction

    root, paths = images
    monkeypatch.setenv("ZOORANK_LOADER_WORKERS", "0")  # decode here, where we count
    other = {**CONFIG, "input_size": (3, 24, 24), "interpolation": "bicubic"}
    opened = []
    real_open = PILImage.open
    monkeypatch.setattr(extraction.Image, "open", lambda p: opened.append(p) or real_open(p))

    batches = list(pixel_batches(root, "hash-2", paths, CONFIG, 5, also=[other, CONFIG]))

    assert len(opened) == len(paths)  # each image decoded once
    assert sum(len(b) for b in batches) == len(paths)
    first = caches.images.load(caches.content_key(dataset="hash-2", pixels=pixel_key(CONFIG)),
                               "pixels")
    second = caches.images.load(caches.content_key(dataset="hash-2", pixels=pixel_key(other)),
                                "pixels")
    assert first.shape == (len(paths), 3, 32, 32) and second.shape == (len(paths), 3, 24, 24)
    # The second preprocessing's cache holds what its own pass would have produced.
    expected = torch.cat(list(pixel_batches(root, "hash-3", paths, other, 5))).numpy()
    np.testing.assert_array_equal(second, expected)
    assert len(opened) == 2 * len(paths)  # hash-3 had no cache: decoded again, once


def test_ordinary_images_decode_as_pillow_converts_them(tmp_path):
    """8-bit images, upright already, give the checkpoints what ``convert("RGB")`` gives,
    so the features cached before EXIF and 16-bit handling still hold for them."""
    from PIL import Image

    from workers.extraction import ImageFiles

    rgb = np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=90)

    for name in ("rgb.png", "grey.png", "palette.png", "photo.jpg"):
        with Image.open(tmp_path / name) as im:
            expected = np.asarray(im.convert("RGB"))
        (pixels,) = ImageFiles(tmp_path, [name], [np.asarray])[0]
        np.testing.assert_array_equal(pixels, expected)
