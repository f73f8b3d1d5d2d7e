"""Image -> model input, the way MNIST itself was made: the one preprocessing path shared
by training, prediction and every front end.

MNIST digits were fitted, aspect ratio kept, into a 20x20 box (anti-aliased) and placed
in a 28x28 field with their centre of mass at the centre; ink is bright on black.
:func:`normalize` does the same for any decoded image:

1. grayscale (alpha composited onto white: dark strokes on a transparent background
   read as ink on paper); images larger than :data:`WORK_SIZE` are first scaled down (box filter);
2. polarity: the border's median is the background; if the image's darkest area lies
   farther below it than its brightest area lies above it, the ink is dark: invert;
3. background: subtract a smooth estimate of the paper level (local minima over a
   coarse grid, so uneven lighting goes too), then stretch the ink to 0..1 above a
   noise threshold taken from the border, so faint strokes survive but paper texture
   and JPEG noise do not;
4. crop to the ink's bounding box, ignoring isolated specks (ink whose neighbourhood
   holds almost no other ink);
5. resize the longer side to 20 px, aspect ratio kept, anti-aliased (also upwards);
6. place in 28x28 with the centre of mass at pixel (14, 14), where MNIST has it
   (whole-pixel shift, clamped so nothing is cut off).

It runs in two parts so that the costly part is vectorised: :func:`prepare` (step 1,
per image, inside the parallel ``tf.data`` map) and :func:`normalize_batch` (steps 2-6,
on a padded batch of prepared images: the same few hundred ops serve a whole batch
instead of each image). :func:`normalize_found` and :func:`normalize` run both on one
image (Pillow fallback, web page, tests): one code path everywhere.
"""

from __future__ import annotations

from ._lazy import tf

SIZE = 28  # model input side
BOX = 20  # the digit's longer side inside the 28x28 field
CENTRE = 14.0  # centre-of-mass target (pixel index), as measured on MNIST
WORK_SIZE = 160  # larger images are scaled down to this longer side before analysis
MIN_CONTRAST = 16.0  # ink must stand this far (of 255) above the paper and its noise
_GRID_CELLS = 6  # background grid: about 6 cells along the longer side
_BACKGROUND_SAMPLES = 48  # the background grid: each image resampled to 48x48 ...
_SPECK_GRID = 32  # speck test: ink density on a 32x32 grid ...
_SPECK_FRACTION = 0.1  # ... below this fraction of the densest area is a speck
_BOX_INK = 0.1  # pixels this dark (of full ink) or more define the digit's box

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

    Colour becomes luma; an alpha channel (C = 2 or 4) is composited onto white.
    """
    t = tf()
    image = t.cast(image, t.float32)
    channels = t.shape(image)[-1]
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


def _masked_quantile(values, mask, q: float):
    """Per row of ``values (B, N)``: the ``q`` quantile of the entries where ``mask``."""
    t = tf()
    ordered = t.sort(t.where(mask, values, 3.0e38), axis=1)
    n = t.reduce_sum(t.cast(mask, t.int32), axis=1)
    index = t.cast(t.round(q * t.cast(t.maximum(n - 1, 0), t.float32)), t.int32)
    picked = t.gather(ordered, index[:, None], batch_dims=1)[:, 0]
    return t.where(n > 0, picked, 0.0)


def _border(x, h, w):
    """The border pixels of each image's valid region: values and mask, ``(B, 2W + 2H)``."""
    t = tf()
    H, W = t.shape(x)[1], t.shape(x)[2]
    top, left = x[:, 0, :], x[:, :, 0]
    bottom = t.gather(x, (h - 1)[:, None], axis=1, batch_dims=1)[:, 0, :]
    right = t.gather(x, (w - 1)[:, None], axis=2, batch_dims=1)[:, :, 0]
    in_w = t.range(W)[None, :] < w[:, None]
    in_h = t.range(H)[None, :] < h[:, None]
    return t.concat([top, bottom, left, right], 1), t.concat([in_w, in_w, in_h, in_h], 1)


def _per_image(v):
    return v[:, None, None]


def _bilinear_weights(pos, n):
    """Sample positions ``pos (B, S)`` in pixels -> ``(B, S, n)`` weights over ``n``
    pixels (bilinear: two neighbours). A sample outside ``[0, n - 1]`` gets no weight, so
    it reads 0."""
    t = tf()
    top = t.floor(pos)
    lerp = (pos - top)[..., None]
    inside = t.cast((pos >= 0.0) & (pos <= t.cast(n - 1, t.float32)), t.float32)[..., None]
    first = t.cast(top, t.int32)
    below = t.one_hot(first, n) * (1.0 - lerp) + t.one_hot(t.minimum(first + 1, n - 1), n) * lerp
    return below * inside


def _pooled(weights, pool: int):
    """Average each run of ``pool`` consecutive samples: ``(B, S*pool, n) -> (B, S, n)``."""
    if pool == 1:
        return weights
    t = tf()
    shape = t.shape(weights)
    return t.reduce_mean(t.reshape(weights, [shape[0], -1, pool, shape[2]]), axis=2)


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
        return _pooled(_bilinear_weights(steps * t.cast(extent - 1, t.float32)[:, None], n), pool)

    return _apply(weights(h, t.shape(x)[1]), x, weights(w, t.shape(x)[2]))


def _spread_back(grid, h, w, shape, interpolation: str):
    """A ``(B, g, g)`` grid stretched back over each image's valid region (pixel centres
    aligned; beyond the grid's edge its edge value): ``(B, H, W)``, ``interpolation`` is
    ``"BILINEAR"`` or ``"NEAREST"``."""
    t = tf()
    g = t.shape(grid)[1]

    def weights(extent, n):
        scale = t.cast(g, t.float32) / t.cast(extent, t.float32)
        pos = (t.range(n, dtype=t.float32)[None, :] + 0.5) * scale[:, None] - 0.5
        pos = t.clip_by_value(pos, 0.0, t.cast(g - 1, t.float32))
        if interpolation == "NEAREST":
            return t.one_hot(t.cast(t.floor(pos + 0.5), t.int32), g)
        return _bilinear_weights(pos, g)

    return _apply(weights(h, shape[0]), grid, weights(w, shape[1]))


# --------------------------------------------------------------------------- steps 2-6


def _inside_3(n, extent):
    """``(B, n)``: how many of positions i - 1, i, i + 1 lie inside ``[0, extent)``."""
    t = tf()
    i = t.range(n)[None, :]
    return sum(t.cast((i + d >= 0) & (i + d < extent[:, None]), t.float32) for d in (-1, 0, 1))


def _ink_bright(x, h, w, valid, border, border_mask):
    """Invert where the ink is darker than the background: the background level is the
    border's median, and the ink is whichever extreme (of a 3x3-smoothed image, so lone
    noisy pixels do not count) lies farther from it. ``x`` is zero outside ``valid``."""
    t = tf()
    # The 3x3 mean of the valid pixels: a 3x3 sum (one convolution) over the count of
    # valid pixels in the window, which for a rectangle is rows x columns.
    total = t.nn.conv2d(x[..., None], t.ones([3, 3, 1, 1]), 1, "SAME")[..., 0]
    count = _inside_3(t.shape(x)[1], h)[:, :, None] * _inside_3(t.shape(x)[2], w)[:, None, :]
    smooth = total / t.maximum(count, 1.0)
    background = _masked_quantile(border, border_mask, 0.5)
    darkest = t.reduce_min(t.where(valid, smooth, 3.0e38), axis=[1, 2])
    brightest = t.reduce_max(t.where(valid, smooth, -3.0e38), axis=[1, 2])
    dark_ink = background - darkest > brightest - background
    flipped_border = t.where(dark_ink[:, None], 255.0 - border, border)
    return t.where(_per_image(dark_ink), 255.0 - x, x), flipped_border


def _background(x, h, w):
    """A smooth estimate of the paper level: minima over a 6x6 grid of cells, eroded over
    neighbouring cells, smoothed, and stretched back over the image."""
    t = tf()
    cells = _BACKGROUND_SAMPLES // _GRID_CELLS
    samples = _resample(x, h, w, _BACKGROUND_SAMPLES)[..., None]
    grid = -t.nn.max_pool2d(-samples, cells, cells, "VALID")
    grid = -t.nn.max_pool2d(-grid, 3, 1, "SAME")
    grid = t.nn.avg_pool2d(grid, 3, 1, "SAME")[..., 0]
    return _spread_back(grid, h, w, t.shape(x)[1:3], "BILINEAR")


def _stretch(x, valid, border, border_mask):
    """Ink to 0..1 above a noise threshold from the border; also the ink's contrast."""
    t = tf()
    peak = t.reduce_max(x, axis=[1, 2])
    strong = t.cast(x > 0.75 * _per_image(peak), t.float32)
    ink = t.reduce_sum(x * strong, [1, 2]) / t.maximum(t.reduce_sum(strong, [1, 2]), 1.0)
    level = _masked_quantile(border, border_mask, 0.5)
    # 3x the spread from the median to the 90th percentile: about 4 sigma for paper
    # noise, and right too for noise clipped at black (where the median is 0).
    spread = _masked_quantile(border, border_mask, 0.9) - level
    threshold = t.maximum(level + 3.0 * spread, 0.05 * ink)
    scale = t.maximum(ink - threshold, 1e-3)
    out = t.clip_by_value((x - _per_image(threshold)) / _per_image(scale), 0.0, 1.0)
    return out * t.cast(valid, t.float32), ink - threshold


def _without_specks(x, h, w):
    """Zero the ink whose neighbourhood (on a 32x32 grid) holds almost no ink."""
    t = tf()
    mask = t.cast(x > 0, t.float32)
    density = _resample(mask, h, w, _SPECK_GRID, pool=2)[..., None]
    density = t.nn.avg_pool2d(density, 3, 1, "SAME")[..., 0]
    most = t.reduce_max(density, axis=[1, 2])
    keep = t.cast(density >= _SPECK_FRACTION * _per_image(most), t.float32)
    return x * _spread_back(keep, h, w, t.shape(x)[1:3], "NEAREST")


def _first_last(mask):
    """Per row of ``mask (B, N)``: first True index and one past the last."""
    t = tf()
    n = t.shape(mask)[1]
    m = t.cast(mask, t.int32)
    return t.argmax(m, 1, output_type=t.int32), n - t.argmax(m[:, ::-1], 1, output_type=t.int32)


def _fit_box(x):
    """Each image's ink box (pixels >= a tenth of full ink) scaled so its longer side is
    20 px, aspect ratio kept, in a 20x20 square: ``(B, 20, 20)``. Each output pixel
    averages 4x4 bilinear samples of its area (anti-aliased down, smooth up); a box of
    exactly 20 px is taken pixel for pixel, so MNIST itself passes through unchanged."""
    t = tf()
    ink = x >= _BOX_INK
    y0, y1 = _first_last(t.reduce_any(ink, axis=2))
    x0, x1 = _first_last(t.reduce_any(ink, axis=1))
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
    r0, r1 = _first_last(t.reduce_any(box > 0, axis=2))
    c0, c1 = _first_last(t.reduce_any(box > 0, axis=1))
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


def normalize_batch(gray, sizes):
    """Steps 2-6 on a batch: ``gray (B, H, W)`` from :func:`prepare`, zero-padded, with
    each image's valid ``sizes (B, 2)`` (h, w) -> ``(inputs (B, 28, 28, 1), found (B,))``.

    ``inputs`` are in 0..255; ``found`` is False for an image with no ink (blank page,
    uniform colour): not a digit, and its input is all zeros.
    """
    t = tf()
    h, w = sizes[:, 0], sizes[:, 1]
    H, W = t.shape(gray)[1], t.shape(gray)[2]
    valid = (t.range(H)[None, :, None] < h[:, None, None]) & (
        t.range(W)[None, None, :] < w[:, None, None]
    )
    border, border_mask = _border(gray, h, w)
    x, border = _ink_bright(gray, h, w, valid, border, border_mask)
    background = _background(x, h, w)
    x = t.nn.relu(x - background) * t.cast(valid, t.float32)
    border_bg, _ = _border(background, h, w)
    x, contrast = _stretch(x, valid, t.nn.relu(border - border_bg), border_mask)
    x = _without_specks(x, h, w)
    found = (contrast >= MIN_CONTRAST) & t.reduce_any(x >= _BOX_INK, axis=[1, 2])
    out = _centre(_fit_box(x))
    return t.where(_per_image(found)[..., None], out, 0.0) * 255.0, found


def pad_batch(grays):
    """Gray working images of any sizes (``prepare``'s output) -> one zero-padded batch
    ``(B, H, W)`` and each image's ``sizes (B, 2)``, for :func:`normalize_batch`."""
    t = tf()
    grays = [t.convert_to_tensor(g, t.float32) for g in grays]
    h = max(int(g.shape[0]) for g in grays)
    w = max(int(g.shape[1]) for g in grays)
    batch = t.stack([t.pad(g, [[0, h - g.shape[0]], [0, w - g.shape[1]]]) for g in grays])
    return batch, t.constant([list(g.shape) for g in grays], t.int32)


def normalize_many(images):
    """A list of decoded images of any sizes -> ``(inputs (N, 28, 28, 1), found (N,))``:
    prepared one by one, zero-padded into one batch, normalised together."""
    return normalize_batch(*pad_batch([prepare(image) for image in images]))


def normalize_found(image):
    """One decoded image ``(H, W, C)`` or ``(H, W)``, 0..255 -> ``(input, found)``:
    the model input ``float32 (28, 28, 1)`` in 0..255, and False when there is no ink."""
    t = tf()
    gray = prepare(image)
    inputs, found = normalize_batch(gray[None], t.shape(gray)[None])
    return t.ensure_shape(inputs[0], (SIZE, SIZE, 1)), found[0]


def normalize(image):
    """One decoded image -> model input ``float32 (28, 28, 1)`` (zeros when no ink)."""
    return normalize_found(image)[0]
