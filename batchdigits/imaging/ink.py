"""Finding the ink, vectorised over a padded batch: which class of pixels is the ink
(polarity), the paper's level and noise, stretching the ink, and the cleaning steps
(salt and pepper, lines along the edges, specks); and whether any stroke is left."""

from __future__ import annotations

from batchdigits.imaging.resample import (
    gaussian_blur,
    on_some,
    pad_linear,
    per_image,
    resample_grid,
    spread_back,
)
from batchdigits.runtime.lazy import tf

_GRID_CELLS = 6  # background grid: about 6 cells along the longer side
_BACKGROUND_SAMPLES = 48  # the background grid: each image resampled to 48x48 ...
_SPECK_GRID = 32  # speck test: ink density on a 32x32 grid ...
_SPECK_FRACTION = 0.1  # ... below this fraction of the densest area is a speck
_ANALYSIS = 32  # polarity is decided on a copy this small (of 64x64 samples, averaged)
_NOISE_SAMPLES = 48  # the paper's noise level is measured on 48x48 samples
_NOISY_SHARE = 0.03  # more than this share of ink pixels standing alone: salt and pepper
_LINE_SHARE = 0.75  # a row or column this full of ink is a line, not part of a digit
_EDGE_ZONE = 0.4  # lines are removed within this share of the side from an edge
_MIN_STROKE_PIXELS = 4.0  # the ink's box must be at least this long ...
_MIN_STROKE_SHARE = 0.06  # ... and this share of the image's longer side
_MIN_CLUSTERING = 0.15  # how much more often than chance ink neighbours ink, at least


def _histogram(levels):
    """Per row of ``levels (B, N)`` in 0..255: counts in 256 bins of one level, ``(B, 256)``."""
    t = tf()
    bins = t.clip_by_value(t.cast(levels, t.int32), 0, 255)
    return t.math.bincount(bins, minlength=256, maxlength=256, axis=-1, dtype=t.float32)


def _otsu(hist):
    """Otsu's threshold of each ``hist (B, 256)``: the first bin of the upper class of the
    split with the largest between-class variance."""
    t = tf()
    p = hist / t.maximum(t.reduce_sum(hist, 1, keepdims=True), 1.0)
    below = t.cumsum(p, 1)
    mean_below = t.cumsum(p * t.range(256, dtype=t.float32), 1)
    between = (mean_below[:, -1:] * below - mean_below) ** 2 / t.maximum(
        below * (1.0 - below), 1e-9
    )
    return t.argmax(between, 1, output_type=t.int32) + 1


def _quantile(hist, q: float, below=None):
    """The ``q`` quantile (a level, bin centre) of each ``hist (B, 256)``, counting only
    the bins under ``below (B,)`` when given."""
    t = tf()
    if below is not None:
        hist = hist * t.cast(t.range(256)[None, :] < below[:, None], t.float32)
    cdf = t.cumsum(hist, 1)
    reached = cdf >= q * t.maximum(cdf[:, -1:], 1e-9)
    return t.cast(t.argmax(t.cast(reached, t.int32), 1), t.float32) + 0.5


def _survival(mask):
    """Share of the pixels of each ``mask (B, H, W)`` and of its complement that survive
    a 3x3 erosion, ``(B, 2)``: low for thin strokes."""
    t = tf()
    m = t.cast(t.stack([mask, ~mask], -1), t.float32)
    eroded = t.cast(t.stack([~dilated(~mask, 3, 3), ~dilated(mask, 3, 3)], -1), t.float32)
    return t.reduce_sum(eroded, [1, 2]) / t.maximum(t.reduce_sum(m, [1, 2]), 1.0)


def ink_is_bright(gray, h, w):
    """Per image: True where the ink is brighter than the paper. Decided on a small copy
    without its slow shading (a 3x3 mean minus a wide blur), split in two by Otsu's
    threshold; four cues vote, none of which assumes a margin of paper: the ink is the
    thinner class (it loses more to an erosion), the smaller class, the class that does
    not hold most of the image's sides (the median of the four sides, so two dark bands
    along the edges do not decide), and the extreme farther from the median level (half a
    vote: it finds a thin stroke too small for Otsu to split off)."""
    t = tf()
    small = resample_grid(gray, h, w, _ANALYSIS, pool=2)
    small = t.nn.avg_pool2d(small[..., None], 3, 1, "SAME")[..., 0]
    bright, hist = _two_classes(small - gaussian_blur(small, _ANALYSIS, _ANALYSIS / 5.0))
    survival = _survival(bright)
    thinner = survival[:, 1] - survival[:, 0]
    smaller = 0.5 - t.reduce_mean(t.cast(bright, t.float32), [1, 2])
    # The sides are read on the small copy as it is: without its shading, a wide band
    # along an edge (a scanner margin) would fade into the paper.
    b = t.cast(_two_classes(small)[0], t.float32)
    sides = t.stack([b[:, 0, :], b[:, -1, :], b[:, :, 0], b[:, :, -1]], 1)
    ordered = t.sort(t.reduce_mean(sides, 2), axis=1)
    not_sides = 0.5 - (ordered[:, 1] + ordered[:, 2]) / 2.0
    # A fourth, for ink too small for Otsu to split off (a thin stroke on a big page):
    # the extreme that lies farther from the typical level.
    farther = (255.0 - 2.0 * _quantile(hist, 0.5)) / 255.0 / 2.0
    return thinner + smaller + not_sides + farther > 0.0


def _two_classes(image):
    """``image (B, n, n)`` stretched to 0..255 and split by Otsu's threshold: the bright
    class ``(B, n, n)`` and the histogram ``(B, 256)``."""
    levels, threshold, hist, _ = otsu_levels(image)
    return levels >= threshold, hist


def otsu_levels(image):
    """``image (B, n, n)`` stretched to 0..255 by its own range: ``(levels, Otsu's
    threshold (B, 1, 1)`` in those levels, ``the histogram (B, 256), (low, spread)``,
    the stretch ``(B, 1, 1)``: a level ``v`` of the image is ``(v - low) / spread *
    255``)."""
    t = tf()
    low = t.reduce_min(image, [1, 2], keepdims=True)
    spread = t.maximum(t.reduce_max(image, [1, 2], keepdims=True) - low, 1e-6)
    levels = (image - low) / spread * 255.0
    hist = _histogram(t.reshape(levels, [t.shape(levels)[0], -1]))
    return levels, t.cast(_otsu(hist), t.float32)[:, None, None], hist, (low, spread)


def background(x, h, w):
    """A smooth estimate of the paper level: minima over a 6x6 grid of cells, opened (a
    minimum, then a maximum, over neighbouring cells: a cell full of ink goes, a slope in
    the lighting stays a slope), smoothed, and stretched back over the image. The grid is
    extended linearly past its edges at each step, so a slope holds up to the image's
    edges too."""
    t = tf()
    cells = _BACKGROUND_SAMPLES // _GRID_CELLS
    samples = resample_grid(x, h, w, _BACKGROUND_SAMPLES)[..., None]
    grid = -t.nn.max_pool2d(-samples, cells, cells, "VALID")[..., 0]

    def pooled(op, grid):
        return op(pad_linear(grid)[..., None])[..., 0]

    grid = pooled(lambda g: -t.nn.max_pool2d(-g, 3, 1, "VALID"), grid)
    grid = pooled(lambda g: t.nn.max_pool2d(g, 3, 1, "VALID"), grid)
    grid = pooled(lambda g: t.nn.avg_pool2d(g, 3, 1, "VALID"), grid)
    return spread_back(pad_linear(grid), h, w, t.shape(x)[1:3], "BILINEAR", border=1)


def stretch(x, h, w, valid):
    """Ink to 0..1 above a noise threshold; also the ink's contrast. The threshold comes
    from the paper class of a small copy (below Otsu's threshold), wherever the paper is:
    no margin is assumed."""
    t = tf()
    peak = t.reduce_max(x, axis=[1, 2])
    strong = t.cast(x > 0.75 * per_image(peak), t.float32)
    ink = t.reduce_sum(x * strong, [1, 2]) / t.maximum(t.reduce_sum(strong, [1, 2]), 1.0)
    small = t.reshape(resample_grid(x, h, w, _NOISE_SAMPLES), [t.shape(x)[0], -1])
    top = t.maximum(t.reduce_max(small, 1), 1e-6)
    hist = _histogram(small * (255.0 / top[:, None]))
    paper = _otsu(hist)  # the paper class: the bins below Otsu's threshold
    level = _quantile(hist, 0.5, paper)
    # 3x the spread from the 10th percentile to the median: about 4 sigma for paper
    # noise. The lower half, because the paper class's upper half holds the blurred
    # edges of strokes; for noise clipped at black (median 0) the threshold is the floor.
    spread = level - _quantile(hist, 0.1, paper)
    level, spread = level * top / 255.0, spread * top / 255.0
    # Never above half the ink level: a textured or noisy paper still leaves strokes whole.
    threshold = t.minimum(t.maximum(level + 3.0 * spread, 0.05 * ink), 0.5 * ink)
    scale = t.maximum(ink - threshold, 1e-3)
    out = t.clip_by_value((x - per_image(threshold)) / per_image(scale), 0.0, 1.0)
    return out * t.cast(valid, t.float32), ink - threshold


def _neighbours(mask):
    """How many pixels of each 3x3 neighbourhood (the pixel included) are in ``mask``:
    sums of shifted copies, zeros past the edges. The counts are small whole numbers,
    exact in any order; a one-channel convolution cost ~20x more (fields of 71x160)."""
    t = tf()
    m = t.pad(t.cast(mask, t.float32), [[0, 0], [1, 1], [1, 1]])
    rows = m[:, :-2] + m[:, 1:-1] + m[:, 2:]
    return rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]


def dilated(mask, rows: int, cols: int):
    """``mask (B, H, W)`` bool grown by a ``rows x cols`` maximum (odd sizes, centred):
    what a "SAME" max-pool gives, from shifted copies: 5x faster than one-channel pools,
    or the batch as channels, on fields of 71x160, and faster on 28x28 crops too."""
    t = tf()
    out = mask
    for size, axis in ((rows, 1), (cols, 2)):
        r = size // 2
        if not r:
            continue
        pad = [[0, 0], [0, 0], [0, 0]]
        pad[axis] = [r, r]
        p = t.pad(out, pad)
        parts = []
        for k in range(size):
            stop = k - 2 * r or None
            parts.append(p[:, k:stop] if axis == 1 else p[:, :, k:stop])
        out = parts[0]
        for part in parts[1:]:
            out = out | part
    return out


def without_salt_and_pepper(x):
    """Where many ink pixels stand alone (salt-and-pepper noise, sensor speckle), keep
    only ink with at least two ink neighbours, twice over (so pairs and short runs of
    noise go too, while strokes, even 1 px thin ones, stay). Clean images are untouched:
    their ink pixels almost never stand alone."""
    t = tf()
    ink = x > 0
    neighbours = _neighbours(ink)
    alone = t.reduce_sum(t.cast(ink & (neighbours <= 1.0), t.float32), [1, 2])
    noisy = alone > _NOISY_SHARE * t.reduce_sum(t.cast(ink, t.float32), [1, 2])

    def cleaned(x, ink, neighbours):
        kept = ink & (neighbours >= 3.0)
        kept = kept & (_neighbours(kept) >= 3.0)
        return x * t.cast(kept, x.dtype)

    def clean():  # the noisy images only
        return on_some(t.where(noisy), cleaned, x, x, ink, neighbours)

    # most batches hold no noisy image: they skip the second count altogether
    return t.cond(t.reduce_any(noisy), clean, lambda: x)


def _line_cuts(line, rest, extent):
    """One axis of :func:`without_edge_lines`: ``line (B, N)`` marks full-length ink lines,
    ``rest (B, N)`` any other ink. Returns ``(start, stop) (B,)``, the part to keep. A line
    within the outer :data:`_EDGE_ZONE` of either end is cut off, with everything beyond
    it, when no other ink lies just inside it, or when it runs from the very edge and the
    other ink keeps a margin at the far end (a band that touches a digit; a tight crop's
    bar, whose digit reaches the far edge, stays)."""
    t = tf()
    n = t.shape(line)[1]
    i = t.range(n)[None, :]
    e = extent[:, None]
    inside = i < e
    free = ~line & ~rest
    gap_after = t.concat([free[:, 1:], t.zeros_like(line[:, :1])], 1)
    gap_before = t.concat([t.zeros_like(line[:, :1]), free[:, :-1]], 1)
    other = t.cast(~line & inside, t.int32)
    from_start = t.cumsum(other, 1) == 0
    to_end = (t.cumsum(other, 1, reverse=True) == 0) & inside
    first, stop = first_last(other > 0)
    last = stop - 1
    margin_first = ~t.gather(rest, first[:, None], batch_dims=1)
    margin_last = ~t.gather(rest, last[:, None], batch_dims=1)
    zone = t.cast(t.cast(extent, t.float32) * _EDGE_ZONE, t.int32)[:, None]
    near_start = line & (i + 1 < zone) & (gap_after | (from_start & margin_last))
    near_end = line & inside & (i >= e - zone) & (gap_before | (to_end & margin_first))
    start = t.reduce_max(t.where(near_start, i + 1, 0), 1)
    stop = t.reduce_min(t.where(near_end, i, e), 1)
    return start, stop


def without_edge_lines(x, h, w):
    """Remove dark margins, form rulings and box sides along the edges: rows or columns
    that are ink across :data:`_LINE_SHARE` of the image, near an edge, and apart from
    the digit (see :func:`_line_cuts`: a tight crop's 7 keeps its bar). Everything between
    such a line and its edge goes with it."""
    t = tf()
    ink = x >= 0.25
    f = t.cast(ink, t.float32)
    line_row = t.reduce_sum(f, 2) >= _LINE_SHARE * t.cast(w, t.float32)[:, None]
    line_col = t.reduce_sum(f, 1) >= _LINE_SHARE * t.cast(h, t.float32)[:, None]
    rest = ink & ~line_row[:, :, None] & ~line_col[:, None, :]
    top, bottom = _line_cuts(line_row, t.reduce_any(rest, 2), h)
    left, right = _line_cuts(line_col, t.reduce_any(rest, 1), w)
    rows = t.range(t.shape(x)[1])[None, :]
    cols = t.range(t.shape(x)[2])[None, :]
    keep_rows = (rows >= top[:, None]) & (rows < bottom[:, None])
    keep_cols = (cols >= left[:, None]) & (cols < right[:, None])
    keep = keep_rows[:, :, None] & keep_cols[:, None, :]
    return x * t.cast(keep, t.float32)


def without_specks(x, h, w):
    """Zero the ink whose neighbourhood (on a 32x32 grid) holds almost no ink."""
    t = tf()
    mask = t.cast(x > 0, t.float32)
    density = resample_grid(mask, h, w, _SPECK_GRID, pool=2)[..., None]
    density = t.nn.avg_pool2d(density, 3, 1, "SAME")[..., 0]
    most = t.reduce_max(density, axis=[1, 2])
    keep = t.cast(density >= _SPECK_FRACTION * per_image(most), t.float32)
    return x * spread_back(keep, h, w, t.shape(x)[1:3], "NEAREST")


def runs_from_edges(f, axis: int, extent):
    """``f (B, H, W)`` bool (rows of flags: ``(B, 1, N)``, ``axis`` 2) -> ``(from_start,
    from_end)``: the pixels in an unbroken run of True from the first pixel along
    ``axis``, and in one that ends at each image's last (``extent (B,)``). Found from the
    first and the last gap (two reductions; a running product, mirrored for the end,
    cost ~10x more)."""
    t = tf()
    n = t.shape(f)[axis]
    shape = [1, 1, 1]
    shape[axis] = -1
    i = t.reshape(t.range(n), shape)
    inside = i < per_image(extent)
    first_gap = t.reduce_min(t.where(f, n, i), axis, keepdims=True)
    last_gap = t.reduce_max(t.where(~f & inside, i, -1), axis, keepdims=True)
    return i < first_gap, (i > last_gap) & inside


def first_last(mask):
    """Per row of ``mask (B, N)``: first True index and one past the last."""
    t = tf()
    n = t.shape(mask)[1]
    m = t.cast(mask, t.int32)
    return t.argmax(m, 1, output_type=t.int32), n - t.argmax(m[:, ::-1], 1, output_type=t.int32)


def has_stroke(x, h, w):
    """Per image: does the ink hold a stroke? Its box must reach
    :data:`_MIN_STROKE_SHARE` of the image's longer side (a dot or a speck is no digit),
    and its pixels must cluster: an ink pixel's neighbours are ink far more often than
    pixels at random are (noise and grain have no strokes)."""
    t = tf()
    ink = x >= 0.5
    y0, y1 = first_last(t.reduce_any(ink, axis=2))
    x0, x1 = first_last(t.reduce_any(ink, axis=1))
    longer = t.cast(t.maximum(h, w), t.float32)
    side = t.cast(t.maximum(y1 - y0, x1 - x0), t.float32)
    big_enough = side >= t.maximum(_MIN_STROKE_PIXELS, _MIN_STROKE_SHARE * longer)
    f = t.cast(ink, t.float32)
    count = t.maximum(t.reduce_sum(f, [1, 2]), 1.0)
    together = t.reduce_sum(f * (_neighbours(ink) - 1.0), [1, 2]) / (8.0 * count)
    share = count / t.cast(h * w, t.float32)
    clustered = together - share >= _MIN_CLUSTERING * (1.0 - share)
    return t.reduce_any(ink, [1, 2]) & big_enough & clustered
