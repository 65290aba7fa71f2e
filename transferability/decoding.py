"""Decoding an image file into what the checkpoints and the pages see: upright 8-bit RGB.

Feature extraction (``workers/extraction.py``) and the thumbnails made at ingest
(:mod:`.archives`) both go through :func:`upright_rgb`, so a thumbnail shows what the
checkpoints were given. It corrects what ``convert("RGB")`` alone gets wrong:

- a camera records how it was held in the EXIF orientation instead of rotating the pixels;
  the image is turned upright;
- 16-bit images (modes ``I;16`` and ``I``) would be clipped at 255, so most pixels of a
  16-bit photo came out white; they are scaled by their range instead (value / 257);
- float images (mode ``F``, a float TIFF) would come out black; values in [0, 1] are scaled
  to [0, 255], others by their own minimum and maximum.

Nothing is cropped or resized here beyond what a caller asks for with ``fit``.
"""

from __future__ import annotations

import io
import math

from PIL import Image, ImageOps

__all__ = ["THUMBNAIL_SIZE", "upright_rgb", "thumbnail_png"]

THUMBNAIL_SIZE = 96
# A reduced decode stops at twice the size asked for; the last step is a real resampling
# (what Pillow's Image.thumbnail does by default).
REDUCING_GAP = 2
_SIXTEEN_BIT = 65535


def upright_rgb(im: Image.Image, fit: int | None = None) -> Image.Image:
    """``im``, just opened, as an upright 8-bit RGB image.

    With ``fit``, it is decoded only as large as a picture ``fit`` pixels on its longer side
    needs: a JPEG at 1/2, 1/4 or 1/8 scale, other formats reduced by an integer factor
    right after decoding. The result is still at least ``REDUCING_GAP * fit`` on its longer
    side (or the image's own size), for the caller to resample; memory stays near what the
    file's own pixels take, even for the largest image ingest allows.
    """
    if fit is not None:
        im.draft(None, (fit * REDUCING_GAP, fit * REDUCING_GAP))  # JPEG only; others ignore it
    ImageOps.exif_transpose(im, in_place=True)
    if im.mode.startswith("I;16"):
        im = im.convert("I")  # Pillow reduces and scales 32-bit integers, not 16-bit ones
    if im.mode in ("I", "F"):
        # Measured on the whole image, so a reduced thumbnail maps like the full image.
        scale, offset = _eight_bit_mapping(im)
    elif im.mode not in ("L", "RGB"):
        im = im.convert("RGB")  # palette, alpha, CMYK, 1-bit: Pillow's own conversion
    if fit is not None:
        factor = max(im.size) // (fit * REDUCING_GAP)
        if factor >= 2:
            im = im.reduce(factor)
    if im.mode in ("I", "F"):
        im = im.point(lambda value: value * scale + offset).convert("L")
    return im.convert("RGB")


def _eight_bit_mapping(im: Image.Image) -> tuple[float, float]:
    """(scale, offset) taking a 16-bit or float image's values to 0..255, rounded.

    16-bit values keep their meaning (65535 is white) and floats in [0, 1] likewise; values
    outside those ranges (signed or 32-bit integers, floats of another scale) are stretched
    from their minimum to their maximum.
    """
    low, high = im.getextrema()
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    if im.mode == "I" and 0 <= low and high <= _SIXTEEN_BIT:
        low, high = 0, _SIXTEEN_BIT
    elif im.mode == "F" and 0.0 <= low and high <= 1.0:
        low, high = 0.0, 1.0
    scale = 255.0 / (high - low) if high > low else 0.0
    return scale, 0.5 - low * scale  # + 0.5: the conversion to 8 bits truncates


def thumbnail_png(im: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """A PNG of ``im``, just opened, at most ``size`` pixels on a side, aspect kept; small
    images scaled up (nearest neighbour, so 28 x 28 digits stay crisp)."""
    rgb = upright_rgb(im, fit=size)
    width, height = rgb.size
    scale = size / max(width, height)
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    rgb = rgb.resize(target, resample)
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
