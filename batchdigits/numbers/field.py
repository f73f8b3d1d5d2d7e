"""A number's field, cleaned as a whole, vectorised over a padded batch: the single-digit
normalisation's polarity, paper level and stretch (:mod:`batchdigits.imaging.ink`), with
the scanner margins and rulings taken out, but every digit kept (the single-digit search
keeps one). The images keep their working resolution (:func:`~batchdigits.imaging.
preprocess.prepare`), so a long number keeps its strokes."""

from __future__ import annotations

from batchdigits.imaging.ink import (
    background,
    dilated,
    first_last,
    ink_is_bright,
    otsu_levels,
    runs_from_edges,
    stretch,
    without_salt_and_pepper,
)
from batchdigits.imaging.preprocess import MIN_CONTRAST, valid_region
from batchdigits.imaging.resample import on_some, per_image, resample_grid
from batchdigits.runtime.lazy import tf

INK = 0.25  # of full ink: the pixels that make up the pieces
_RULING = 0.9  # a ruling runs straight through at least this share of the field
_DRIFT = 5  # a ruling may wander across this many rows (columns): a skewed scan
_DIGITS_SPAN = 0.7  # a full-height line is a 1 when the rest of the ink spans this much
_BAND_FILL = 0.9  # a margin's edge row (column) is at least this much ink ...
_BAND_DEPTH = 0.45  # ... and it reaches at most this share into the field
_BAND_SAMPLES = 48  # the bands' ink threshold comes from a copy this small
_BAND_PAPER = 0.2  # ... and a band is painted only where this share of the field is paper


def field_ink(gray, sizes):
    """``gray (B, H, W)`` working images (zero-padded) with their ``sizes (B, 2)`` ->
    ``(ink (B, H, W)`` 0..1 with margins and rulings gone, ``has_ink (B,))``."""
    t = tf()
    h, w = sizes[:, 0], sizes[:, 1]
    valid = valid_region(gray, h, w)
    bright = ink_is_bright(gray, h, w)
    x = t.where(per_image(bright), gray, 255.0 - gray) * t.cast(valid, t.float32)
    x, band, before = _without_bands(x, h, w, valid)
    x = t.nn.relu(x - background(x, h, w)) * t.cast(valid, t.float32)
    x, contrast = stretch(x, h, w, valid)
    x = without_salt_and_pepper(x)
    ink = x >= INK
    no_margins = t.zeros_like(ink)
    margins = on_some(t.where(_may_have_margins(ink, h, w)), _margins, no_margins, ink, h, w)
    lines = _rulings(ink, before | (x > 0.0), band, h, w) | margins
    x = x * t.cast(~(lines | (dilated(lines, 3, 3) & ~ink)), t.float32)
    return x, contrast >= MIN_CONTRAST


def _without_bands(x, h, w, valid):
    """Scanner margins painted over with the paper's level before the paper is estimated:
    a band a third of the field deep would otherwise pass for paper, and its ragged inner
    edge for ink. The bands are found (:func:`_margins`) on the pixels above Otsu's
    threshold of a small copy, when the field has contrast and at least
    :data:`_BAND_PAPER` of it is below; the paper's level is the mean of those. Returns the
    painted images, the bands and what was ink before ``(B, H, W)`` bool."""
    t = tf()
    _, threshold, _, (low, spread) = otsu_levels(resample_grid(x, h, w, _BAND_SAMPLES))
    coarse = ((x - low) / spread * 255.0 >= threshold) & valid
    # a field of one level (blank) has no margin to paint, nor one whose edges hold
    # none: only the others are looked at further, gathered into a smaller batch
    maybe = (spread[:, 0, 0] >= MIN_CONTRAST) & _may_have_margins(coarse, h, w, bridge=False)
    into = (x, t.zeros_like(coarse))
    x, band = on_some(t.where(maybe), _painted, into, x, coarse, valid, h, w)
    return x, band, coarse


def _painted(x, coarse, valid, h, w):
    """:func:`_without_bands` for fields that may have a margin: their bands, where at
    least :data:`_BAND_PAPER` of the field is paper, painted with the paper's level (the
    mean of the pixels below the threshold) -> ``(the painted fields, the bands)``."""
    t = tf()
    paper = t.cast(valid & ~coarse, t.float32)
    count = t.reduce_sum(paper, [1, 2])
    level = t.reduce_sum(x * paper, [1, 2]) / t.maximum(count, 1.0)
    # a field with hardly any paper has no margin to paint
    some = count >= _BAND_PAPER * t.reduce_sum(t.cast(valid, t.float32), [1, 2])
    band = dilated(_margins(coarse, h, w, bridge=False), 3, 3) & valid & per_image(some)
    return t.where(band, per_image(level), x), band


def _rulings(ink, before, band, h, w):
    """Rows (columns) whose ink, :data:`_DRIFT` pixels across allowed, covers at least
    :data:`_RULING` of the field outside its scanner margins (``band``; at least half
    the row is outside them): every such row; a column only when the rest of the ink
    is shorter than the field by :data:`_DIGITS_SPAN` (a cell's border, not a tight crop's
    1). A share, not a run, so it costs one sum per row: a row through digits covers far
    less. What was ink ``before`` the field was cleaned, or is above its noise, counts
    too: a ruling along a margin is whole there, and a faint ruling is still one."""
    t = tf()
    f = (ink | before) & ~band
    across = t.cast(dilated(f, _DRIFT, 1), t.float32)
    down = t.cast(dilated(f, 1, _DRIFT), t.float32)
    b = t.cast(band, t.float32)
    free_w = t.cast(w, t.float32)[:, None] - t.reduce_sum(b, 2)
    free_h = t.cast(h, t.float32)[:, None] - t.reduce_sum(b, 1)
    rows = (t.reduce_sum(across, 2) >= _RULING * free_w) & (
        free_w >= 0.5 * t.cast(w, t.float32)[:, None]
    )
    cols = (t.reduce_sum(down, 1) >= _RULING * free_h) & (
        free_h >= 0.5 * t.cast(h, t.float32)[:, None]
    )
    rows, cols = rows[:, :, None] & ink, cols[:, None, :] & ink
    rest = ink & ~rows & ~cols
    top, bottom = first_last(t.reduce_any(rest, 2))
    span = t.cast(bottom - top, t.float32) / t.maximum(t.cast(h, t.float32), 1.0)
    return rows | (cols & per_image(span < _DIGITS_SPAN))


def _margins(ink, h, w, bridge: bool = True):
    """Scanner margins, skewed and ragged along their inner side: where the row (column)
    at a field's edge is at least :data:`_BAND_FILL` ink, each column's (row's) ink that
    runs unbroken from that edge, up to :data:`_BAND_DEPTH` of the field; with
    ``bridge``, a one-pixel gap does not break a run (the noise of a cleaned field).
    ``ink (B, H, W)`` bool -> bool."""
    t = tf()
    out = t.zeros_like(ink)
    for axis, extent, across in ((2, w, h), (1, h, w)):
        reach = 3 if bridge else 1
        f = dilated(ink, 1, reach) if axis == 2 else dilated(ink, reach, 1)
        share = t.reduce_sum(t.cast(f, t.float32), 3 - axis) / t.cast(across, t.float32)[:, None]
        first = share[:, 0] >= _BAND_FILL
        last = t.gather(share, extent - 1, axis=1, batch_dims=1) >= _BAND_FILL
        from_start, from_end = runs_from_edges(f, axis, extent)
        n = t.shape(ink)[axis]
        i = t.range(n)[None, :]
        depth = _BAND_DEPTH * t.cast(extent, t.float32)[:, None]
        near_start = t.cast(i, t.float32) < depth
        near_end = t.cast(i, t.float32) >= t.cast(extent, t.float32)[:, None] - depth
        near_start, near_end = (
            (v[:, None, :] if axis == 2 else v[:, :, None]) for v in (near_start, near_end)
        )
        band = (from_start & near_start & per_image(first)) | (
            from_end & near_end & per_image(last)
        )
        out = out | (band & ink)
    return out


def _window_sums(v, size: int):
    """``v (B, N)`` -> the sums over each centred window of ``size`` (odd) entries,
    zeros past the ends."""
    t = tf()
    r = size // 2
    c = t.pad(t.cumsum(v, 1), [[0, 0], [1, 0]])
    n = t.shape(v)[1]
    hi = t.minimum(t.range(n) + r + 1, n)
    lo = t.maximum(t.range(n) - r, 0)
    return t.gather(c, hi, axis=1) - t.gather(c, lo, axis=1)


def _may_have_margins(ink, h, w, bridge: bool = True):
    """``(B,)``: False where no edge row (column) can be :data:`_BAND_FILL` ink after
    :func:`_margins`' bridging (a bound: the sum over the rows or columns the bridge
    spans), so :func:`_margins` finds nothing there."""
    t = tf()
    r = 1 if bridge else 0
    out = t.zeros_like(h, t.bool)
    for axis, extent, across in ((1, w, h), (2, h, w)):
        # per column (axis 1 summed) for the left and right edges, per row for the others
        sums = _window_sums(t.reduce_sum(t.cast(ink, t.float32), axis), 2 * r + 1)
        # divided as _margins divides its share: rounding keeps the bound a bound
        share = sums / t.cast(across, t.float32)[:, None]
        last = t.gather(share, extent - 1, axis=1, batch_dims=1)
        out = out | (share[:, 0] >= _BAND_FILL) | (last >= _BAND_FILL)
    return out
