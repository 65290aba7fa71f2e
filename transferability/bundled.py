"""A target dataset that ships with scikit-learn: its 1,797 handwritten digits (8 x 8)."""

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def digits_archive(path: Path) -> Path:
    """Write scikit-learn's digits as an ImageFolder zip (classes "0" to "9")."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images / 16.0 * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i, (image, label) in enumerate(zip(pixels, digits.target)):
            buffer = io.BytesIO()
            Image.fromarray(image, mode="L").save(buffer, format="PNG")
            zf.writestr(f"digits/{label}/{i:04d}.png", buffer.getvalue())
    return path
