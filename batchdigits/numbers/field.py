"""A number's field, cleaned as a whole, vectorised over a padded batch: the single-digit
normalisation's polarity, paper level and stretch (:mod:`batchdigits.imaging.ink`), with
the scanner margins and rulings taken out, but every digit kept (the single-digit search
keeps one). The images keep their working resolution (:func:`~batchdigits.imaging.
preprocess.prepare`), so a long number keeps its strokes."""

from __future__ import annotations

from batchdigits.imaging.components import margins, run_lengths
from batchdigits.imaging.ink import (
    background,
    first_last,
    ink_is_bright,
    stretch,
    without_salt_and_pepper,
)
from batchdigits.imaging.preprocess import MIN_CONTRAST, valid_region
from batchdigits.imaging.resample import per_image
from batchdigits.runtime.lazy import tf

INK = 0.25  # of full ink: the pixels that make up the pieces
_RULING = 0.9  # a ruling runs straight through at least this share of the field
_DIGITS_SPAN = 0.7  # a full-height line is a 1 when the rest of the ink spans this much


def field_ink(gray, sizes):
    """``gray (B, H, W)`` working images (zero-padded) with their ``sizes (B, 2)`` ->
    ``(ink (B, H, W)`` 0..1 with margins and rulings gone, ``has_ink (B,))``."""
    t = tf()
    h, w = sizes[:, 0], sizes[:, 1]
    valid = valid_region(gray, h, w)
    bright = ink_is_bright(gray, h, w)
    x = t.where(per_image(bright), gray, 255.0 - gray) * t.cast(valid, t.float32)
    x = t.nn.relu(x - background(x, h, w)) * t.cast(valid, t.float32)
    x, contrast = stretch(x, h, w, valid)
    x = without_salt_and_pepper(x)
    ink = x >= INK
    lines = _rulings(ink, h, w) | margins(ink, h, w)
    grown = t.nn.max_pool2d(t.cast(lines, t.float32)[..., None], 3, 1, "SAME")[..., 0] > 0.0
    x = x * t.cast(~(lines | (grown & ~ink)), t.float32)
    return x, contrast >= MIN_CONTRAST


def _rulings(ink, h, w):
    """Straight runs through at least :data:`_RULING` of the field (a pixel of drift
    allowed): every such row; a column only when the rest of the ink is shorter than the
    field by :data:`_DIGITS_SPAN` (a cell's border, not a tight crop's 1)."""
    t = tf()
    f = t.cast(ink, t.float32)[..., None]
    across = t.nn.max_pool2d(f, (3, 1), 1, "SAME")[..., 0] > 0.0
    down = t.nn.max_pool2d(f, (1, 3), 1, "SAME")[..., 0] > 0.0
    rows = run_lengths(across) >= _RULING * per_image(t.cast(w, t.float32))
    cols = t.transpose(run_lengths(t.transpose(down, [0, 2, 1])), [0, 2, 1])
    cols = cols >= _RULING * per_image(t.cast(h, t.float32))
    rest = ink & ~rows & ~cols
    top, bottom = first_last(t.reduce_any(rest, 2))
    span = t.cast(bottom - top, t.float32) / t.maximum(t.cast(h, t.float32), 1.0)
    border = per_image(span < _DIGITS_SPAN)
    return (rows | (cols & border)) & ink
