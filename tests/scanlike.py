"""Scan-like digit images made from MNIST test digits, for tests and measurements.

Each is dark ink on light, noisy, unevenly lit paper, on a canvas of varying size, the
digit off-centre at varying scale and stroke width, saved as JPEG at varying quality
(or PNG). Deterministic for a given seed.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def scan_like(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One 28x28 MNIST digit (ink bright on black) -> a grayscale 'scan' (ink dark)."""
    scale = float(rng.uniform(1.5, 6.0))
    side = max(12, int(round(28 * scale)))
    ink = Image.fromarray(digit).resize((side, side), Image.BICUBIC)
    stroke = int(rng.integers(-1, 2)) if side >= 60 else 0  # thinner, same, bolder pen
    if stroke > 0:
        ink = ink.filter(ImageFilter.MaxFilter(3))
    elif stroke < 0:
        ink = ink.filter(ImageFilter.MinFilter(3))
    margin = rng.uniform(0.1, 1.2, size=4) * side  # left, top, right, bottom
    w = int(side + margin[0] + margin[2])
    h = int(side + margin[1] + margin[3])
    paper_level = rng.uniform(190, 250)
    yy, xx = np.mgrid[0:h, 0:w]
    light = rng.uniform(-25, 25) * (xx / w - 0.5) + rng.uniform(-25, 25) * (yy / h - 0.5)
    paper = paper_level + light + rng.normal(0, rng.uniform(1, 8), (h, w))
    ink_level = rng.uniform(10, 90)
    alpha = np.zeros((h, w))
    x0, y0 = int(margin[0]), int(margin[1])
    alpha[y0 : y0 + side, x0 : x0 + side] = np.asarray(ink, dtype=np.float64) / 255.0
    page = paper * (1 - alpha) + ink_level * alpha
    image = Image.fromarray(np.clip(page, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.0))))


def encode(image: Image.Image, rng: np.random.Generator) -> tuple[bytes, str]:
    """JPEG at quality 30-95 (three in four), else PNG."""
    buf = io.BytesIO()
    if rng.random() < 0.75:
        image.save(buf, format="JPEG", quality=int(rng.integers(30, 96)))
        return buf.getvalue(), ".jpg"
    image.save(buf, format="PNG")
    return buf.getvalue(), ".png"


def write_scan_set(folder, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Write one scan per digit into ``folder``; return {file name: label}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = {}
    for i, (digit, label) in enumerate(zip(images, labels, strict=True)):
        data, ext = encode(scan_like(digit, rng), rng)
        name = f"{i:05d}{ext}"
        (folder / name).write_bytes(data)
        truth[name] = int(label)
    return truth
