"""Loose field crops: a handwritten digit in a cell cut from a scanned form by a template's
coordinates, with what comes along with it: a solid dark scanner margin along one side,
the cell's rulings, a fragment of print, a neighbour's stroke cut by the crop's edge,
uneven paper and scanner noise. Made with numpy and Pillow from one 28x28 MNIST digit
(or none, for an empty cell), independently of the training augmentation."""

from __future__ import annotations

import numpy as np
from drawing import ink_box, paint, to_u8
from PIL import Image, ImageDraw, ImageFont

_PRINT = ["No.", "Nr", "Amt", "Total", "Date", "ID", "Ref", "Qty", "Page", "Row"]


def _scaled(digit: np.ndarray, height: int) -> np.ndarray:
    """The digit's ink box scaled to ``height`` rows (aspect kept), float 0..255."""
    box = ink_box(digit)
    width = max(1, round(box.shape[1] * height / box.shape[0]))
    image = Image.fromarray(box).resize((width, height), Image.BICUBIC)
    return np.asarray(image, dtype=np.float64)


def _margin(ink: np.ndarray, rng: np.random.Generator, side: int) -> tuple[int, int, int, int]:
    """A solid band covering 15-38% of the image along edge ``side`` (0 top, 1 bottom,
    2 left, 3 right), its inner boundary a little ragged and skewed. Returns the free
    box (top, bottom, left, right) left for the rest."""
    h, w = ink.shape
    extent = h if side < 2 else w
    depth = rng.uniform(0.15, 0.38) * extent
    along = h if side >= 2 else w
    skew = rng.uniform(-0.04, 0.04) * extent
    edge = depth + skew * np.linspace(-1, 1, along) + rng.normal(0, 0.6, along).cumsum() * 0.15
    idx = np.arange(extent)[None, :]
    band = idx < edge[:, None]  # (along, extent)
    if side in (1, 3):
        band = band[:, ::-1]
    ink[band.T if side < 2 else band] = 255.0
    d = int(np.ceil(depth + abs(skew) + 2))
    return [(d, h, 0, w), (0, h - d, 0, w), (0, h, d, w), (0, h, 0, w - d)][side]


def _rulings(draw: ImageDraw.ImageDraw, rng: np.random.Generator, free, shape) -> None:
    """One to three thin full-length rulings (the cell's borders) at the free area's
    edges, vertical and sometimes horizontal, a pixel or two of drift along them."""
    h, w = shape
    top, bottom, left, right = free
    for _ in range(int(rng.integers(1, 4))):
        width = int(rng.integers(1, 3))
        drift = float(rng.uniform(-2, 2))
        if rng.random() < 0.7:
            x = float(rng.choice([left + rng.uniform(1, 6), right - rng.uniform(2, 7)]))
            draw.line([(x, 0), (x + drift, h)], fill=int(rng.uniform(170, 255)), width=width)
        else:
            y = float(rng.choice([top + rng.uniform(1, 6), bottom - rng.uniform(2, 7)]))
            draw.line([(0, y), (w, y + drift)], fill=int(rng.uniform(170, 255)), width=width)


def _print_fragment(draw, rng: np.random.Generator, free, size: int) -> None:
    """A word of print, cut by the crop's top or bottom edge, smaller than the digit."""
    top, bottom, left, right = free
    font = ImageFont.load_default(size=max(8, size))
    text = str(rng.choice(_PRINT))
    x = left + rng.uniform(2, max(3, (right - left) * 0.4))
    y = top - size * rng.uniform(0.2, 0.5) if rng.random() < 0.5 else bottom - size * 0.6
    draw.text((float(x), float(y)), text, fill=255, font=font)


def _neighbour(ink: np.ndarray, digit: np.ndarray, rng: np.random.Generator, free, height):
    """A neighbour's stroke cut by the crop: a fifth to a third of another digit's ink at
    the free area's left or right edge (the digit flipped, so it is no copy of the one
    read). Returns the free box that is left beside it."""
    other = _scaled(np.flipud(digit), height)
    top, bottom, left, right = free
    keep = max(2, int(other.shape[1] * rng.uniform(0.2, 0.35)))
    y = int(rng.uniform(top, max(top + 1, bottom - height)))
    y = min(y, ink.shape[0] - height)
    if rng.random() < 0.5:
        part, x, free = other[:, -keep:], left, (top, bottom, left + keep + 3, right)
    else:
        part, x, free = other[:, :keep], right - keep, (top, bottom, left, right - keep - 3)
    region = ink[y : y + height, x : x + keep]
    np.maximum(region, part[: region.shape[0], : region.shape[1]], out=region)
    return free


def _place(ink: np.ndarray, glyph: np.ndarray, rng: np.random.Generator, free) -> None:
    """The digit somewhere in the free box, a margin of paper around it."""
    top, bottom, left, right = free
    room_h, room_w = bottom - top, right - left
    if glyph.shape[1] > 0.8 * room_w:  # too wide for the cell: smaller
        glyph = _scaled(
            glyph.astype(np.uint8), max(8, int(glyph.shape[0] * 0.8 * room_w / glyph.shape[1]))
        )
    gh, gw = glyph.shape
    pad_y, pad_x = max(1, (room_h - gh) // 6), max(1, (room_w - gw) // 6)
    y = top + int(rng.uniform(pad_y, max(pad_y + 1, room_h - gh - pad_y)))
    x = left + int(rng.uniform(pad_x, max(pad_x + 1, room_w - gw - pad_x)))
    y, x = min(y, ink.shape[0] - gh), min(x, ink.shape[1] - gw)
    region = ink[y : y + gh, x : x + gw]
    np.maximum(region, glyph[: region.shape[0], : region.shape[1]], out=region)


def field_ink(digit: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Ink weights 0..255 of a loose field crop holding ``digit`` (None: an empty cell)."""
    h, w = int(rng.integers(56, 150)), int(rng.integers(44, 120))
    ink = np.zeros((h, w))
    free = (0, h, 0, w)
    if rng.random() < 0.7:
        free = _margin(ink, rng, int(rng.choice(4, p=[0.15, 0.15, 0.35, 0.35])))
    top, bottom, left, right = free
    room_h, room_w = bottom - top, right - left
    height = int(min(room_h * rng.uniform(0.3, 0.65), room_w * rng.uniform(0.45, 0.8) * 1.4))
    height = max(height, 12)
    canvas = Image.fromarray(np.zeros((h, w), np.uint8))
    draw = ImageDraw.Draw(canvas)
    _rulings(draw, rng, free, (h, w))
    if rng.random() < 0.4:
        _print_fragment(draw, rng, free, max(8, height // 3))
    ink = np.maximum(ink, np.asarray(canvas, dtype=np.float64))
    if digit is not None:
        if rng.random() < 0.35:
            free = _neighbour(ink, digit, rng, free, height)
        _place(ink, _scaled(digit, height), rng, free)
    return ink


def loose_field(digit, rng, dark_ink):
    """A handwritten digit in a loose field crop (see :func:`field_ink`), on paper with
    uneven light and scanner noise, dark ink or light."""
    ink = field_ink(digit, rng)
    paper, pen = float(rng.uniform(200, 250)), float(rng.uniform(10, 70))
    yy = np.linspace(-0.5, 0.5, ink.shape[0])[:, None]
    gray = paint(ink, dark_ink, paper, pen) + rng.uniform(-15, 15) * yy
    gray += rng.normal(0, rng.uniform(1, 6), gray.shape)
    return to_u8(gray)


def empty_field(digit, rng, dark_ink):
    """A loose field crop with no digit in it: margin, rulings, print, noise only."""
    return loose_field(None, rng, dark_ink)
