"""Synthetic handwritten numbers from MNIST digits: the numbers benchmark's images.

Each number is a string of 1-8 digits composed from MNIST digits (the benchmark and the
tests use the *test* digits only): every digit's ink box scaled to a common height with a
little jitter, slanted, set on a wandering baseline, at a gap that depends on the kind:

- ``gaps``: apart, as most people write a number in a field;
- ``touching``: neighbours whose ink boxes meet, strokes touching;
- ``overlapping``: neighbours whose boxes overlap by a tenth to a quarter of the height;
- ``separators``: an amount with a decimal point, a comma or a dash (``12.50``,
  ``1,250``, ``125.-``), which are not digits and are not in the label;
- ``loose``: apart, in a form's cell with a scanner margin and rulings.

Both polarities: half dark ink on light paper, half light on dark. Deterministic for a
seed (:func:`number_set`). Made with numpy and Pillow, independently of the product.
"""

from __future__ import annotations

import numpy as np
from drawing import ink_box, paint, to_u8
from fields import _margin, _rulings
from PIL import Image, ImageDraw

KINDS = ("gaps", "touching", "overlapping", "separators", "loose")
#: the gap between neighbours, as a share of the digits' height, per kind
_GAPS = {
    "gaps": (0.12, 0.45),
    "touching": (-0.06, 0.0),
    "overlapping": (-0.25, -0.1),
    "separators": (0.12, 0.4),
    "loose": (0.12, 0.45),
}

#: the share of a cell a scanner margin leaves free, at least (with room to spare)
_ROOM = 0.55


def _glyph(digit: np.ndarray, height: int, slant: float) -> np.ndarray:
    """The digit's ink box at ``height`` rows (aspect kept, jittered), slanted."""
    box = ink_box(digit)
    width = max(2, round(box.shape[1] * height / box.shape[0]))
    pad = int(abs(slant) * height) + 1
    image = Image.fromarray(box).resize((width, height), Image.BICUBIC)
    wide = Image.new("L", (width + 2 * pad, height))
    wide.paste(image, (pad, 0))
    # x' = x + slant * (y - height / 2): the top leans right for slant > 0
    sheared = wide.transform(
        wide.size, Image.AFFINE, (1, slant, -slant * height / 2, 0, 1, 0), Image.BILINEAR
    )
    out = np.asarray(sheared, dtype=np.float64)
    cols = np.flatnonzero(out.max(0) > 20)
    return out[:, cols[0] : cols[-1] + 1] if len(cols) else out


def _separator(char: str, height: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A hand-drawn ``.``, ``,`` or ``-``: its ink and its top (from the number's top)."""
    pen = max(2, round(height * rng.uniform(0.08, 0.13)))
    if char == "-":
        length = round(height * rng.uniform(0.3, 0.5))
        ink = np.zeros((pen + 2, length + 2))
        ink[1 : pen + 1, 1 : length + 1] = 255
        return ink, round(height * rng.uniform(0.4, 0.6))
    size = pen + 2
    ink = np.zeros((size * (2 if char == "," else 1) + 1, size + 1))
    ink[1:size, 1:size] = 255
    if char == ",":
        ink[size : 2 * size, max(0, size // 2 - 1) : size // 2 + 1] = 255
    return ink, height - size


def _text(rng: np.random.Generator, length: int, kind: str) -> tuple[str, str]:
    """What is written and its label (the digits only)."""
    digits = "".join(str(d) for d in rng.integers(0, 10, length))
    if kind != "separators" or length < 2:
        return digits, digits
    cut = int(rng.integers(1, length))
    style = int(rng.integers(3))
    if style == 0:
        return f"{digits[:cut]}.{digits[cut:]}", digits
    if style == 1:
        return f"{digits[:cut]},{digits[cut:]}", digits
    return f"{digits}.-", digits


def compose(
    text: str, pools: dict[int, np.ndarray], rng: np.random.Generator, kind: str
) -> np.ndarray:
    """Ink 0..255 of ``text`` (digits and separators) written with digits drawn from
    ``pools`` (digit -> its MNIST images), as ``kind`` spaces them."""
    height = int(rng.integers(24, 44))
    slant = float(rng.uniform(-0.25, 0.25))
    low, high = _GAPS[kind]
    parts = []
    for char in text:
        if char.isdigit():
            pool = pools[int(char)]
            size = max(8, round(height * rng.uniform(0.9, 1.1)))
            ink = _glyph(pool[int(rng.integers(len(pool)))], size, slant)
            top = round(rng.uniform(-0.08, 0.08) * height) + (height - size)
        else:
            ink, top = _separator(char, height, rng)
        parts.append((ink, top, char.isdigit()))
    margin = round(height * 0.6)
    canvas = np.zeros((height * 2 + 2 * margin, sum(p[0].shape[1] for p in parts) * 2 + 4 * margin))
    x = margin
    previous_digit = False
    for ink, top, is_digit in parts:
        gap = rng.uniform(low, high) if (is_digit and previous_digit) else rng.uniform(0.1, 0.3)
        x = max(margin, x + round(gap * height))
        y = margin + top + height // 2
        h, w = ink.shape
        region = canvas[y : y + h, x : x + w]
        np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
        x += w
        previous_digit = is_digit
    rows = np.flatnonzero(canvas.max(1) > 20)
    cols = np.flatnonzero(canvas.max(0) > 20)
    pad = round(height * rng.uniform(0.15, 0.5))
    r0, r1 = max(0, rows[0] - pad), rows[-1] + pad + 1
    c0, c1 = max(0, cols[0] - pad), cols[-1] + pad + 1
    return canvas[r0:r1, c0:c1]


def _in_a_cell(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The number's ink in a form's cell: room around it, a scanner margin along one
    side, the cell's rulings. The cell is long enough across the margin that the room
    the margin leaves holds the number: a margin covers at most 42% of the cell (with its
    skew), and a digit under it could be read by nobody."""
    h, w = ink.shape
    grow_h, grow_w = round(h * rng.uniform(0.5, 1.0)), round(w * rng.uniform(0.1, 0.3))
    side = int(rng.integers(4))
    rows, cols = h + 2 * grow_h, w + 2 * grow_w
    if side < 2:
        rows = max(rows, int(np.ceil((h + 4) / _ROOM)))
    else:
        cols = max(cols, int(np.ceil((w + 4) / _ROOM)))
    cell = np.zeros((rows, cols))
    free = _margin(cell, rng, side)
    top, bottom, left, right = free
    y = top + max(0, (bottom - top - h) // 2)
    x = left + max(0, (right - left - w) // 2)
    region = cell[y : y + h, x : x + w]
    np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
    image = Image.fromarray(to_u8(cell))
    _rulings(ImageDraw.Draw(image), rng, free, cell.shape)
    return np.asarray(image, dtype=np.float64)


def number_image(text, pools, rng, kind: str, dark_ink: bool) -> np.ndarray:
    """One number's gray image ``uint8 (H, W)``: its ink on paper, with noise."""
    ink = compose(text, pools, rng, kind)
    if kind == "loose":
        ink = _in_a_cell(ink, rng)
    image = paint(ink, dark_ink, rng.uniform(200, 250), rng.uniform(0, 60))
    return to_u8(image + rng.normal(0, rng.uniform(1, 6), image.shape))


def number_set(
    digits: np.ndarray,
    labels: np.ndarray,
    kind: str,
    count: int,
    lengths=(1, 8),
    seed: int = 0,
) -> tuple[list[np.ndarray], list[str]]:
    """``count`` numbers of ``kind`` with ``lengths`` (a range, both ends included, or
    one length) digits, from the MNIST ``digits`` and their ``labels``: ``(images,
    labels as strings)``, alternately dark ink on light paper and light on dark."""
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    pools = {d: digits[labels == d] for d in range(10)}
    low, high = (lengths, lengths) if isinstance(lengths, int) else lengths
    images, texts = [], []
    for i in range(count):
        text, label = _text(rng, int(rng.integers(low, high + 1)), kind)
        images.append(number_image(text, pools, rng, kind, i % 2 == 0))
        texts.append(label)
    return images, texts
