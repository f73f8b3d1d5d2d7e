"""Image -> model input, the way MNIST itself was made: the one preprocessing path shared
by training, prediction and every front end.

MNIST digits were fitted, aspect ratio kept, into a 20x20 box (anti-aliased) and placed
in a 28x28 field with their centre of mass at the centre; ink is bright on black.
:func:`normalize` does the same for any decoded image, and assumes nothing about a margin
of paper (real crops from forms have none: the ink touches the edges):

1. grayscale (alpha composited onto white: dark strokes on a transparent background
   read as ink on paper); images larger than :data:`WORK_SIZE` are first scaled down (box filter);
2. polarity: on a small copy without its slow shading, Otsu's threshold splits the pixels
   in two; the ink is the class that is thinner (loses more to an erosion), smaller, and
   does not hold most of the image's sides, and (half a vote) the extreme farther from
   the median (bands along two edges or a bold digit touching every edge do not decide
   alone): dark ink is inverted; then an image longer than :data:`CLEAN_SIZE` is
   box-filtered to that side for the steps below (:func:`_shrunk`);
3. background: subtract a smooth estimate of the paper level (local minima over a
   coarse grid, so uneven lighting goes too), then stretch the ink to 0..1 above a
   noise threshold measured on the paper class (Otsu again), so faint strokes survive
   but paper texture and JPEG noise do not;
4. cleaning: salt-and-pepper noise (where many ink pixels stand alone), dark margins and
   rulings along the edges (full-length lines apart from the digit), and isolated specks
   go; an image with no stroke left (blank, uniform, gradient, noise, a dot) is no digit;
5. crop to the ink's bounding box and resize the longer side to 20 px, aspect ratio
   kept, anti-aliased (also upwards);
6. place in 28x28 with the centre of mass at pixel (14, 14), where MNIST has it
   (whole-pixel shift, clamped so nothing is cut off).

It runs in two parts so that the costly part is vectorised: :func:`prepare` (step 1,
per image, inside the parallel ``tf.data`` map) and :func:`normalize_batch` (steps 2-6,
on a padded batch of prepared images: the same few hundred ops serve a whole batch
instead of each image). :func:`normalize` runs both on one image, for a look at it;
predictions go through :class:`batchdigits.inference.Inference`: one code path everywhere.
"""

from __future__ import annotations

import functools

from ._lazy import tf

SIZE = 28  # model input side
BOX = 20  # the digit's longer side inside the 28x28 field
CENTRE = 14.0  # centre-of-mass target (pixel index), as measured on MNIST
WORK_SIZE = 160  # larger images are scaled down to this longer side before analysis
#: After the polarity decision (made on the image at up to WORK_SIZE, where a thin stroke
#: still stands out), larger images are box-filtered to this longer side for the other
#: steps: every later analysis copy samples at most 64 points a side and the digit ends
#: up 20 px long, so they read the same at a sixth of the work of 160 px.
CLEAN_SIZE = 64
MIN_CONTRAST = 16.0  # ink must stand this far (of 255) above the paper and its noise
_GRID_CELLS = 6  # background grid: about 6 cells along the longer side
_BACKGROUND_SAMPLES = 48  # the background grid: each image resampled to 48x48 ...
_SPECK_GRID = 32  # speck test: ink density on a 32x32 grid ...
_SPECK_FRACTION = 0.1  # ... below this fraction of the densest area is a speck
_BOX_INK = 0.1  # pixels this dark (of full ink) or more define the digit's box
_ANALYSIS = 32  # polarity is decided on a copy this small (of 64x64 samples, averaged)
_NOISE_SAMPLES = 48  # the paper's noise level is measured on 48x48 samples
_NOISY_SHARE = 0.03  # more than this share of ink pixels standing alone: salt and pepper
_LINE_SHARE = 0.75  # a row or column this full of ink is a line, not part of a digit
_EDGE_ZONE = 0.4  # lines are removed within this share of the side from an edge
_MIN_STROKE_PIXELS = 4.0  # the ink's box must be at least this long ...
_MIN_STROKE_SHARE = 0.06  # ... and this share of the image's longer side
_MIN_CLUSTERING = 0.15  # how much more often than chance ink neighbours ink, at least

#: Per channel count C (row C), the weights that turn a pixel into gray (ITU-R BT.601
#: luma for colour, as Pillow's ``convert("L")``) and the one that picks its alpha.
_GRAY_WEIGHTS = (
    (0, 0, 0, 0),
    (1, 0, 0, 0),  # L
    (1, 0, 0, 0),  # LA
    (0.299, 0.587, 0.114, 0),  # RGB
    (0.299, 0.587, 0.114, 0),  # RGBA
)
_ALPHA_WEIGHTS = ((0, 0, 0, 0), (0, 0, 0, 0), (0, 1, 0, 0), (0, 0, 0, 0), (0, 0, 0, 1))


def to_gray(image):
    """``(H, W, C)`` with C in 1-4, values 0..255 -> ``float32 (H, W)`` in 0..255.

    Colour becomes luma; an alpha channel (C = 2 or 4) is composited onto white. Gray
    images (C = 1, most scans) skip the weighting, which would leave them unchanged.
    """
    t = tf()
    image = t.cast(image, t.float32)
    channels = t.shape(image)[-1]
    return t.cond(channels == 1, lambda: image[..., 0], lambda: _weighted_gray(image, channels))


def _weighted_gray(image, channels):
    t = tf()
    gray_w = t.gather(t.constant(_GRAY_WEIGHTS, t.float32), channels)[:channels]
    alpha_w = t.gather(t.constant(_ALPHA_WEIGHTS, t.float32), channels)[:channels]
    gray = t.reduce_sum(image * gray_w, axis=-1)
    alpha = t.reduce_sum(image * alpha_w, axis=-1) / 255.0 + (1.0 - t.reduce_sum(alpha_w))
    return gray * alpha + 255.0 * (1.0 - alpha)


def prepare(image):
    """Step 1, per image: ``(H, W, C)`` or ``(H, W)``, 0..255 -> gray ``float32 (h, w)``
    with the longer side at most :data:`WORK_SIZE` (box filter; uint8 stays uint8 until
    then, so a big photo never gets a full-size float copy)."""
    t = tf()
    image = t.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[..., None]
    shape = t.shape(image)[:2]
    longer = t.reduce_max(shape)

    def shrink():
        factor = WORK_SIZE / t.cast(longer, t.float32)
        size = t.maximum(t.cast(t.round(t.cast(shape, t.float32) * factor), t.int32), 1)
        return t.image.resize(image, size, method="area")

    # Small images skip the resize op altogether (it would copy them unchanged).
    return to_gray(t.cond(longer > WORK_SIZE, shrink, lambda: t.cast(image, t.float32)))


# --------------------------------------------------------------------------- batched helpers


def _per_image(v):
    return v[:, None, None]


def _bilinear_weights(pos, n):
    """Sample positions ``pos (B, S)`` in pixels -> ``(B, S, n)`` weights over ``n``
    pixels (bilinear: two neighbours). A sample outside ``[0, n - 1]`` gets no weight, so
    it reads 0."""
    t = tf()
    pos = pos[..., None]
    inside = t.cast((pos >= 0.0) & (pos <= t.cast(n - 1, t.float32)), t.float32)
    # the tent 1 - |pos - j| over the pixels j: 1 - lerp and lerp on the two neighbours
    return t.nn.relu(1.0 - t.abs(pos - t.range(n, dtype=t.float32))) * inside


def _pooled(weights, pool: int):
    """Average each run of ``pool`` consecutive samples: ``(B, S*pool, n) -> (B, S, n)``."""
    if pool == 1:
        return weights
    t = tf()
    shape = t.shape(weights)
    return t.reduce_mean(t.reshape(weights, [shape[0], -1, pool, shape[2]]), axis=2)


def _by_extent(weights, extent):
    """``weights(extents) -> (K, S, n)`` computed once per distinct extent in ``extent
    (B,)`` and gathered back to ``(B, S, n)``: a batch of same-sized images (the usual
    case) builds one matrix instead of one per image, with the same values."""
    t = tf()
    distinct, index = t.unique(extent)
    return t.gather(weights(distinct), index)


def _apply(rows, x, cols):
    """Separable resampling as two batched matrix products: ``rows (B, S, H) @ x (B, H, W)
    @ cols (B, T, W)^T -> (B, S, T)``. The same result as sampling each output pixel
    (bilinear is separable), but a few large products instead of a gather per sample."""
    t = tf()
    return t.linalg.matmul(t.linalg.matmul(rows, x), cols, transpose_b=True)


def _resample(x, h, w, size: int, pool: int = 1):
    """Each image's valid region resampled (bilinear) to ``size * pool`` samples a side,
    corner to corner, then averaged over ``pool x pool`` blocks: ``(B, size, size)``."""
    t = tf()
    steps = t.range(size * pool, dtype=t.float32)[None, :] / float(max(size * pool - 1, 1))

    def weights(extent, n):
        return _by_extent(
            lambda e: _pooled(
                _bilinear_weights(steps * t.cast(e - 1, t.float32)[:, None], n), pool
            ),
            extent,
        )

    return _apply(weights(h, t.shape(x)[1]), x, weights(w, t.shape(x)[2]))


def _spread_back(grid, h, w, shape, interpolation: str, border: int = 0):
    """A ``(B, g, g)`` grid stretched back over each image's valid region (pixel centres
    aligned on the inner grid's cells; beyond the grid's edge its edge value): ``(B, H,
    W)``, ``interpolation`` is ``"BILINEAR"`` or ``"NEAREST"``. A grid with a ``border``
    of extra cells on each side (:func:`_pad_linear`) is read into that border instead."""
    t = tf()
    g = t.shape(grid)[1]

    def weights_of(extent, n):
        scale = t.cast(g - 2 * border, t.float32) / t.cast(extent, t.float32)
        pos = (t.range(n, dtype=t.float32)[None, :] + 0.5) * scale[:, None] - 0.5 + border
        pos = t.clip_by_value(pos, 0.0, t.cast(g - 1, t.float32))
        if interpolation == "NEAREST":
            return t.one_hot(t.cast(t.floor(pos + 0.5), t.int32), g)
        return _bilinear_weights(pos, g)

    def weights(extent, n):
        return _by_extent(lambda e: weights_of(e, n), extent)

    return _apply(weights(h, shape[0]), grid, weights(w, shape[1]))


def _shrunk(x, h, w):
    """Each image whose longer side exceeds :data:`CLEAN_SIZE` box-filtered to that side
    (aspect kept; each output pixel the mean of 4x4 bilinear samples over its area), the
    others as they are, in ``(B, CLEAN_SIZE, CLEAN_SIZE)``; with the new ``h, w``. A batch
    of small images (MNIST) skips it whole."""
    t = tf()
    size = CLEAN_SIZE
    longer = t.maximum(h, w)
    factor = t.minimum(size / t.cast(longer, t.float32), 1.0)
    new_h, new_w = (
        t.maximum(t.cast(t.round(t.cast(v, t.float32) * factor), t.int32), 1) for v in (h, w)
    )

    def weights(extent, new, n):
        def of(key):
            e, k = t.cast(key // 4096, t.float32), key % 4096
            step = (e / t.cast(k, t.float32))[:, None] / 4.0
            pos = (t.range(4 * size, dtype=t.float32)[None, :] + 0.5) * step - 0.5
            pos = t.clip_by_value(pos, 0.0, e[:, None] - 1.0)  # edge samples: edge pixels
            rows = t.cast(t.range(size)[None, :] < k[:, None], t.float32)[..., None]
            return _pooled(_bilinear_weights(pos, n), 4) * rows

        return _by_extent(of, extent * 4096 + new)

    def shrink():
        H, W = t.shape(x)[1], t.shape(x)[2]
        out = _apply(weights(h, new_h, H), x, weights(w, new_w, W))
        kept = x[:, :size, :size]
        kept = t.pad(kept, [[0, 0], [0, size - t.shape(kept)[1]], [0, size - t.shape(kept)[2]]])
        small = _per_image(longer <= size)
        return t.where(small, kept, out), new_h, new_w

    return t.cond(t.reduce_max(longer) > size, shrink, lambda: (x, h, w))


def _pad_linear(grid):
    """``(B, n, n) -> (B, n + 2, n + 2)``: one more cell on each side, extrapolated
    linearly from the two cells inside it (a slope goes on as a slope)."""
    return _apply(_extend(grid.shape[1])[None], grid, _extend(grid.shape[2])[None])


@functools.lru_cache(maxsize=8)
def _extension_matrix(n: int):
    """``(n + 2, n)``: the identity with one row more at each end, 2 x the edge cell minus
    the one inside it (numpy)."""
    import numpy as np

    m = np.zeros((n + 2, n), np.float32)
    m[1:-1] = np.eye(n)
    m[0, :2] = m[-1, -2:][::-1] = (2.0, -1.0)
    return m


def _extend(n: int):
    return tf().constant(_extension_matrix(n))


# --------------------------------------------------------------------------- steps 2-6


@functools.lru_cache(maxsize=4)
def _blur_matrix(n: int, sigma: float):
    """``(n, n)`` matrix of a 1-D Gaussian blur with mirrored edges (numpy)."""
    import numpy as np

    i = np.arange(n)
    out = np.zeros((n, n))
    for j in range(-3 * n, 4 * n):  # every mirrored copy of every source pixel
        k = j % (2 * n)
        source = k if k < n else 2 * n - 1 - k
        np.add.at(out, (i, np.full(n, source)), np.exp(-((i - j) ** 2) / (2 * sigma**2)))
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def _gaussian_blur(x, n: int, sigma: float):
    """``(B, n, n)`` blurred by a wide Gaussian: two products with one constant matrix."""
    t = tf()
    g = t.constant(_blur_matrix(n, sigma))
    return t.linalg.matmul(t.linalg.matmul(g[None], x), g[None], transpose_b=True)


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
    eroded = -t.nn.max_pool2d(-m, 3, 1, "SAME")
    return t.reduce_sum(eroded, [1, 2]) / t.maximum(t.reduce_sum(m, [1, 2]), 1.0)


def _ink_is_bright(gray, h, w):
    """Per image: True where the ink is brighter than the paper. Decided on a small copy
    without its slow shading (a 3x3 mean minus a wide blur), split in two by Otsu's
    threshold; four cues vote, none of which assumes a margin of paper: the ink is the
    thinner class (it loses more to an erosion), the smaller class, the class that does
    not hold most of the image's sides (the median of the four sides, so two dark bands
    along the edges do not decide), and the extreme farther from the median level (half a
    vote: it finds a thin stroke too small for Otsu to split off)."""
    t = tf()
    small = _resample(gray, h, w, _ANALYSIS, pool=2)
    small = t.nn.avg_pool2d(small[..., None], 3, 1, "SAME")[..., 0]
    detail = small - _gaussian_blur(small, _ANALYSIS, _ANALYSIS / 5.0)
    low = t.reduce_min(detail, [1, 2], keepdims=True)
    spread = t.maximum(t.reduce_max(detail, [1, 2], keepdims=True) - low, 1e-6)
    levels = (detail - low) / spread * 255.0
    hist = _histogram(t.reshape(levels, [t.shape(levels)[0], -1]))
    bright = levels >= t.cast(_otsu(hist), t.float32)[:, None, None]
    survival = _survival(bright)
    thinner = survival[:, 1] - survival[:, 0]
    smaller = 0.5 - t.reduce_mean(t.cast(bright, t.float32), [1, 2])
    b = t.cast(bright, t.float32)
    sides = t.stack([b[:, 0, :], b[:, -1, :], b[:, :, 0], b[:, :, -1]], 1)
    ordered = t.sort(t.reduce_mean(sides, 2), axis=1)
    not_sides = 0.5 - (ordered[:, 1] + ordered[:, 2]) / 2.0
    # A fourth, for ink too small for Otsu to split off (a thin stroke on a big page):
    # the extreme that lies farther from the typical level.
    farther = (255.0 - 2.0 * _quantile(hist, 0.5)) / 255.0 / 2.0
    return thinner + smaller + not_sides + farther > 0.0


def _background(x, h, w):
    """A smooth estimate of the paper level: minima over a 6x6 grid of cells, opened (a
    minimum, then a maximum, over neighbouring cells: a cell full of ink goes, a slope in
    the lighting stays a slope), smoothed, and stretched back over the image. The grid is
    extended linearly past its edges at each step, so a slope holds up to the image's
    edges too."""
    t = tf()
    cells = _BACKGROUND_SAMPLES // _GRID_CELLS
    samples = _resample(x, h, w, _BACKGROUND_SAMPLES)[..., None]
    grid = -t.nn.max_pool2d(-samples, cells, cells, "VALID")[..., 0]

    def pooled(op, grid):
        return op(_pad_linear(grid)[..., None])[..., 0]

    grid = pooled(lambda g: -t.nn.max_pool2d(-g, 3, 1, "VALID"), grid)
    grid = pooled(lambda g: t.nn.max_pool2d(g, 3, 1, "VALID"), grid)
    grid = pooled(lambda g: t.nn.avg_pool2d(g, 3, 1, "VALID"), grid)
    return _spread_back(_pad_linear(grid), h, w, t.shape(x)[1:3], "BILINEAR", border=1)


def _stretch(x, h, w, valid):
    """Ink to 0..1 above a noise threshold; also the ink's contrast. The threshold comes
    from the paper class of a small copy (below Otsu's threshold), wherever the paper is:
    no margin is assumed."""
    t = tf()
    peak = t.reduce_max(x, axis=[1, 2])
    strong = t.cast(x > 0.75 * _per_image(peak), t.float32)
    ink = t.reduce_sum(x * strong, [1, 2]) / t.maximum(t.reduce_sum(strong, [1, 2]), 1.0)
    small = t.reshape(_resample(x, h, w, _NOISE_SAMPLES), [t.shape(x)[0], -1])
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
    out = t.clip_by_value((x - _per_image(threshold)) / _per_image(scale), 0.0, 1.0)
    return out * t.cast(valid, t.float32), ink - threshold


def _neighbours(mask):
    """How many pixels of each 3x3 neighbourhood (the pixel included) are in ``mask``."""
    t = tf()
    m = t.cast(mask, t.float32)[..., None]
    return t.nn.conv2d(m, t.ones([3, 3, 1, 1]), 1, "SAME")[..., 0]


def _without_salt_and_pepper(x):
    """Where many ink pixels stand alone (salt-and-pepper noise, sensor speckle), keep
    only ink with at least two ink neighbours, twice over (so pairs and short runs of
    noise go too, while strokes, even 1 px thin ones, stay). Clean images are untouched:
    their ink pixels almost never stand alone."""
    t = tf()
    ink = x > 0
    neighbours = _neighbours(ink)
    alone = t.reduce_sum(t.cast(ink & (neighbours <= 1.0), t.float32), [1, 2])
    noisy = alone > _NOISY_SHARE * t.reduce_sum(t.cast(ink, t.float32), [1, 2])

    def clean():
        kept = ink & (neighbours >= 3.0)
        kept = kept & (_neighbours(kept) >= 3.0)
        return t.where(noisy[:, None, None], x * t.cast(kept, t.float32), x)

    # most batches hold no noisy image: they skip the second count altogether
    return t.cond(t.reduce_any(noisy), clean, lambda: x)


def _line_cuts(line, rest, extent):
    """One axis of :func:`_without_edge_lines`: ``line (B, N)`` marks full-length ink lines,
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


def _without_edge_lines(x, h, w):
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


def _without_specks(x, h, w):
    """Zero the ink whose neighbourhood (on a 32x32 grid) holds almost no ink."""
    t = tf()
    mask = t.cast(x > 0, t.float32)
    density = _resample(mask, h, w, _SPECK_GRID, pool=2)[..., None]
    density = t.nn.avg_pool2d(density, 3, 1, "SAME")[..., 0]
    most = t.reduce_max(density, axis=[1, 2])
    keep = t.cast(density >= _SPECK_FRACTION * _per_image(most), t.float32)
    return x * _spread_back(keep, h, w, t.shape(x)[1:3], "NEAREST")


def first_last(mask):
    """Per row of ``mask (B, N)``: first True index and one past the last."""
    t = tf()
    n = t.shape(mask)[1]
    m = t.cast(mask, t.int32)
    return t.argmax(m, 1, output_type=t.int32), n - t.argmax(m[:, ::-1], 1, output_type=t.int32)


def _has_stroke(x, h, w):
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


def _fit_box(x):
    """Each image's ink box (pixels >= a tenth of full ink) scaled so its longer side is
    20 px, aspect ratio kept, in a 20x20 square: ``(B, 20, 20)``. Each output pixel
    averages 4x4 bilinear samples of its area (anti-aliased down, smooth up); a box of
    exactly 20 px is taken pixel for pixel, so MNIST itself passes through unchanged."""
    t = tf()
    ink = x >= _BOX_INK
    y0, y1 = first_last(t.reduce_any(ink, axis=2))
    x0, x1 = first_last(t.reduce_any(ink, axis=1))
    y0, y1, x0, x1 = (t.cast(v, t.float32) for v in (y0, y1, x0, x1))
    side = t.maximum(t.maximum(y1 - y0, x1 - x0), 1.0)
    # The square's corner on whole pixels, so a 20 px box is sampled exactly on pixels.
    top = t.round((y0 + y1 - side) / 2.0)
    left = t.round((x0 + x1 - side) / 2.0)

    def weights(corner, n):
        # ``samples`` bilinear samples at the centres of equal cells across the square:
        # one per pixel for a 20 px box (unchanged), else 4 per output pixel, averaged
        # (area sampling: anti-aliased down, smooth up).
        def cells(samples):
            k = t.range(samples, dtype=t.float32)[None, :]
            size = side[:, None] / samples
            return _bilinear_weights(corner[:, None] + (k + 0.5) * size - 0.5, n)

        exact = t.equal(side, BOX)[:, None, None]
        return t.where(exact, cells(BOX), _pooled(cells(4 * BOX), 4))

    box = _apply(weights(top, t.shape(x)[1]), x, weights(left, t.shape(x)[2]))
    # A thin pen shrunk with its digit fades: bring its strongest ink back to full.
    return box / _per_image(t.maximum(t.reduce_max(box, axis=[1, 2]), 1e-6))


def _centre(box):
    """Place each 20x20 box in 28x28 with its centre of mass at (14, 14), by a whole-pixel
    shift clamped so no ink is cut off."""
    t = tf()
    mass = t.maximum(t.reduce_sum(box, [1, 2]), 1e-6)
    coords = t.cast(t.range(BOX), t.float32)
    cy = t.reduce_sum(t.reduce_sum(box, 2) * coords, 1) / mass
    cx = t.reduce_sum(t.reduce_sum(box, 1) * coords, 1) / mass
    r0, r1 = first_last(t.reduce_any(box > 0, axis=2))
    c0, c1 = first_last(t.reduce_any(box > 0, axis=1))
    top = t.clip_by_value(t.cast(t.round(CENTRE - cy), t.int32), -r0, SIZE - r1)
    left = t.clip_by_value(t.cast(t.round(CENTRE - cx), t.int32), -c0, SIZE - c1)
    canvas = t.pad(box, [[0, 0], [0, SIZE - BOX], [0, SIZE - BOX]])[..., None]
    zero, one = t.zeros_like(cy), t.ones_like(cy)
    shift = t.stack(
        [one, zero, -t.cast(left, t.float32), zero, one, -t.cast(top, t.float32), zero, zero], 1
    )
    return t.raw_ops.ImageProjectiveTransformV3(
        images=canvas,
        transforms=shift,
        output_shape=[SIZE, SIZE],
        fill_value=0.0,
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )


def _valid(x, h, w):
    """``(B, H, W)`` True inside each image's own ``h x w``, False in the padding."""
    t = tf()
    rows = t.range(t.shape(x)[1])[None, :, None] < h[:, None, None]
    return rows & (t.range(t.shape(x)[2])[None, None, :] < w[:, None, None])


def normalize_batch(gray, sizes):
    """Steps 2-6 on a batch: ``gray (B, H, W)`` from :func:`prepare`, zero-padded, with
    each image's valid ``sizes (B, 2)`` (h, w) -> ``(inputs (B, 28, 28, 1), has_digit (B,))``.

    ``inputs`` are in 0..255; ``has_digit`` is False for an image with no ink (blank page,
    uniform colour): not a digit, and its input is all zeros.
    """
    t = tf()
    h, w = sizes[:, 0], sizes[:, 1]
    bright = _ink_is_bright(gray, h, w)
    x = t.where(_per_image(bright), gray, 255.0 - gray) * t.cast(_valid(gray, h, w), t.float32)
    x, h, w = _shrunk(x, h, w)
    valid = _valid(x, h, w)
    x = t.nn.relu(x - _background(x, h, w)) * t.cast(valid, t.float32)
    x, contrast = _stretch(x, h, w, valid)
    x = _without_salt_and_pepper(x)
    x = _without_edge_lines(x, h, w)
    x = _without_specks(x, h, w)
    has_digit = (contrast >= MIN_CONTRAST) & _has_stroke(x, h, w)
    out = _centre(_fit_box(x))
    return t.where(_per_image(has_digit)[..., None], out, 0.0) * 255.0, has_digit


def pad_batch(grays):
    """Gray working images of any sizes (``prepare``'s output) -> one zero-padded batch
    ``(B, H, W)`` and each image's ``sizes (B, 2)``, for :func:`normalize_batch`."""
    t = tf()
    grays = [t.convert_to_tensor(g, t.float32) for g in grays]
    h = max(int(g.shape[0]) for g in grays)
    w = max(int(g.shape[1]) for g in grays)
    batch = t.stack([t.pad(g, [[0, h - g.shape[0]], [0, w - g.shape[1]]]) for g in grays])
    return batch, t.constant([list(g.shape) for g in grays], t.int32)


def normalize(image):
    """One decoded image ``(H, W, C)`` or ``(H, W)``, 0..255 -> numpy ``(input, has_digit)``:
    the model input ``float32 (28, 28, 1)`` in 0..255 (zeros without a stroke) and
    whether it holds a stroke. For looking at one image; every front end goes through
    :class:`batchdigits.inference.Inference`, which runs the same steps batched."""
    t = tf()
    gray = prepare(image)
    inputs, has_digit = normalize_batch(gray[None], t.shape(gray)[None])
    return inputs[0].numpy(), bool(has_digit[0])
