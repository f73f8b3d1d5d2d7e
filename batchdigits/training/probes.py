"""Generated probe sets that measure what MNIST's test set cannot: other pens, scanners
and sizes, and inputs that are not digits at all. Deterministic for a seed.

- scan-like: MNIST test digits as dark ink on noisy, unevenly lit paper, larger canvases,
  off-centre, varied scale and pen, JPEG at several qualities;
- hard: MNIST test digits with much thicker or thinner pens, rotations up to 25 degrees,
  or shrunk to 16x16 or 8x8 and blown up again;
- non-digits: letters rendered from a font, random strokes and scribbles, noise,
  textures, blank and almost blank pages.
"""

from __future__ import annotations

import io
import string
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from batchdigits.model.inference import Inference
from batchdigits.training.data import Mnist


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


def hard_variant(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A digit that differs more from MNIST: thick or thin pen, rotation, or low resolution."""
    kind = int(rng.integers(0, 4))
    image = Image.fromarray(digit)
    if kind == 0:  # a much bolder pen
        big = image.resize((112, 112), Image.BICUBIC).filter(ImageFilter.MaxFilter(9))
        return big
    if kind == 1:  # a much thinner pen
        big = image.resize((112, 112), Image.BICUBIC).filter(ImageFilter.MinFilter(7))
        return big
    if kind == 2:  # rotated up to 25 degrees
        return image.resize((84, 84), Image.BICUBIC).rotate(
            float(rng.uniform(-25, 25)), Image.BILINEAR
        )
    size = 16 if rng.random() < 0.5 else 8  # shrunk, then blown up again
    return image.resize((size, size), Image.BILINEAR).resize((84, 84), Image.BILINEAR)


def non_digit(rng: np.random.Generator) -> Image.Image:
    """Something that is not a digit, as dark marks on light paper (or blank)."""
    kind = int(rng.integers(0, 6))
    size = int(rng.integers(48, 160))
    page = Image.new("L", (size, size), int(rng.integers(200, 256)))
    draw = ImageDraw.Draw(page)
    if kind == 0:  # a letter from a font (letters that look like digits left out)
        letter = str(rng.choice(list(set(string.ascii_letters) - set("OoIlSsZzBbgqGT"))))
        font = ImageFont.load_default(size=int(size * 0.7))
        draw.text((size * 0.2, size * 0.05), letter, fill=int(rng.integers(0, 80)), font=font)
    elif kind == 1:  # random strokes and scribbles
        for _ in range(int(rng.integers(3, 9))):
            points = [tuple(rng.uniform(0, size, 2)) for _ in range(int(rng.integers(2, 6)))]
            draw.line(points, fill=int(rng.integers(0, 80)), width=int(rng.integers(1, 5)))
    elif kind == 2:  # noise
        page = Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8))
    elif kind == 3:  # a texture: stripes, checks or blobs
        yy, xx = np.mgrid[0:size, 0:size]
        f = rng.uniform(0.1, 0.6)
        pattern = np.sin(xx * f) * np.sin(yy * f * rng.uniform(0.5, 2)) * 100 + 150
        page = Image.fromarray(np.clip(pattern, 0, 255).astype(np.uint8))
    elif kind == 4:  # an almost blank page: a dot or two
        for _ in range(int(rng.integers(1, 3))):
            x, y = rng.uniform(0, size - 3, 2)
            draw.ellipse([x, y, x + 2, y + 2], fill=int(rng.integers(0, 100)))
    # kind 5: blank
    return page


def _arrays(images: list[Image.Image]) -> list[np.ndarray]:
    return [np.asarray(image.convert("L")) for image in images]


def scan_like_set(digits: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for digit in digits:
        data, _ = encode(scan_like(digit, rng), rng)
        out.append(np.asarray(Image.open(io.BytesIO(data)).convert("L")))
    return out


def hard_set(digits: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return _arrays([hard_variant(d, rng) for d in digits])


def non_digit_set(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return _arrays([non_digit(rng) for _ in range(n)])


def probe_figures(
    model, mnist: Mnist, n: int, threshold: float, inference: Inference | None = None
) -> dict[str, Any]:
    """Accuracy on the scan-like and hard probe sets (made from MNIST *test* digits) and
    the share of generated non-digits flagged for review; see :mod:`batchdigits.training.probes`.
    ``inference``: how the model reads (default: :meth:`Inference.of` the model)."""
    if n <= 0:
        return {}
    x, y = mnist.x_test[-n:], mnist.y_test[-n:]
    figures: dict[str, Any] = {"probe_images": int(len(x))}
    inference = inference or Inference.of(model)
    for name, images in (("scan_like", scan_like_set(x, 1)), ("hard", hard_set(x, 2))):
        probs, found = inference.predict_images(images)
        figures[f"{name}_accuracy"] = round(float(np.mean((probs.argmax(1) == y) & found)), 6)
    probs, found = inference.predict_images(non_digit_set(max(1, n // 2), 3))
    flagged = ~found | (probs.max(1) < threshold)
    figures["non_digits_flagged"] = round(float(flagged.mean()), 6)
    return figures
