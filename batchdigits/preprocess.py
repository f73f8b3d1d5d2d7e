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

Everything is TensorFlow ops on dynamic shapes, so it runs inside the ``tf.data`` map
(in parallel, in graph mode) and equally on one eager tensor (Pillow fallback, tests).
"""

from __future__ import annotations

from ._lazy import tf

SIZE = 28  # model input side
BOX = 20  # the digit's longer side inside the 28x28 field
CENTRE = 14.0  # centre-of-mass target (pixel index), as measured on MNIST
WORK_SIZE = 160  # larger images are scaled down to this longer side before analysis
MIN_CONTRAST = 16.0  # ink must stand this far (of 255) above the paper and its noise
_GRID_CELLS = 6  # background grid: about 6 cells along the longer side
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


def _working_gray(image):
    """Scale a large image down (box filter, uint8 in: no full-size float copy), then gray."""
    t = tf()
    shape = t.shape(image)[:2]
    factor = t.minimum(1.0, WORK_SIZE / t.cast(t.reduce_max(shape), t.float32))
    size = t.maximum(t.cast(t.round(t.cast(shape, t.float32) * factor), t.int32), 1)
    return to_gray(t.image.resize(image, size, method="area"))


def _quantile(values, q: float):
    t = tf()
    values = t.sort(t.reshape(values, [-1]))
    n = t.shape(values)[0]
    index = t.cast(t.round(q * t.cast(t.maximum(n - 1, 0), t.float32)), t.int32)
    return t.concat([values, [0.0]], axis=0)[index]  # 0 for no values


def _border(x):
    t = tf()
    return t.concat([x[0, :], x[-1, :], x[:, 0], x[:, -1]], axis=0)


def _ink_bright(gray):
    """Invert when the ink is darker than the background: the background level is the
    border's median, and the ink is whichever extreme (of a 3x3-smoothed image, so lone
    noisy pixels do not count) lies farther from it."""
    t = tf()
    background = _quantile(_border(gray), 0.5)
    smooth = t.nn.avg_pool2d(gray[None, ..., None], 3, 1, "SAME")
    dark_ink = background - t.reduce_min(smooth) > t.reduce_max(smooth) - background
    return t.where(dark_ink, 255.0 - gray, gray)


def _background(x):
    """A smooth estimate of the paper level: minima over ~6 cells per side, eroded over
    neighbouring cells, smoothed and scaled back up."""
    t = tf()
    h, w = t.shape(x)[0], t.shape(x)[1]
    cell = t.maximum(2, -(-t.maximum(h, w) // _GRID_CELLS))
    nh, nw = -(-h // cell), -(-w // cell)
    padded = t.pad(x, [[0, nh * cell - h], [0, nw * cell - w]], constant_values=255.0)
    grid = t.reduce_min(t.reshape(padded, [nh, cell, nw, cell]), axis=[1, 3])
    grid = -t.nn.max_pool2d(-grid[None, ..., None], 3, 1, "SAME")
    grid = t.nn.avg_pool2d(grid, 3, 1, "SAME")
    return t.image.resize(grid, [h, w], method="bilinear")[0, ..., 0]


def _stretch(x):
    """Ink to 0..1 above a noise threshold; also returns the ink's contrast (0..255)."""
    t = tf()
    peak = t.reduce_max(x)
    ink = _quantile(t.boolean_mask(x, x > 0.5 * peak), 0.75)
    border = _border(x)
    level = _quantile(border, 0.5)
    # 3x the spread from the median to the 90th percentile: about 4 sigma for paper
    # noise, and right too for noise clipped at black (where the median is 0).
    threshold = t.maximum(level + 3.0 * (_quantile(border, 0.9) - level), 0.05 * ink)
    out = t.clip_by_value((x - threshold) / t.maximum(ink - threshold, 1e-3), 0.0, 1.0)
    return out, ink - threshold


def _without_specks(x):
    """Zero the ink whose neighbourhood (on a 32x32 grid) holds almost no ink."""
    t = tf()
    h, w = t.shape(x)[0], t.shape(x)[1]
    mask = t.cast(x > 0, t.float32)[None, ..., None]
    density = t.image.resize(mask, [_SPECK_GRID, _SPECK_GRID], method="area")
    density = t.nn.avg_pool2d(density, 3, 1, "SAME")
    keep = t.cast(density >= _SPECK_FRACTION * t.reduce_max(density), t.float32)
    keep = t.image.resize(keep, [h, w], method="nearest")[0, ..., 0]
    return x * keep


def _bounds(mask):
    t = tf()
    n = t.shape(mask)[0]
    first = t.argmax(t.cast(mask, t.int32), output_type=t.int32)
    last = n - t.argmax(t.cast(mask[::-1], t.int32), output_type=t.int32)
    return first, last


def _fit_and_centre(x):
    """Crop to the ink, fit the longer side to 20 px, centre of mass to (14, 14).

    The box holds the pixels with at least a tenth of full ink, so a faint halo (blur,
    JPEG ringing) does not make the digit smaller."""
    t = tf()
    ink = x >= _BOX_INK
    y0, y1 = _bounds(t.reduce_any(ink, axis=1))
    x0, x1 = _bounds(t.reduce_any(ink, axis=0))
    crop = x[y0:y1, x0:x1]
    hw = t.cast(t.stack([y1 - y0, x1 - x0]), t.float32)
    size = t.maximum(t.cast(t.round(hw * BOX / t.reduce_max(hw)), t.int32), 1)
    box = t.image.resize(crop[..., None], size, method="bilinear", antialias=True)[..., 0]
    box = t.clip_by_value(box, 0.0, 1.0)
    mass = t.maximum(t.reduce_sum(box), 1e-6)
    rows = t.cast(t.range(size[0]), t.float32)
    cols = t.cast(t.range(size[1]), t.float32)
    cy = t.reduce_sum(t.reduce_sum(box, axis=1) * rows) / mass
    cx = t.reduce_sum(t.reduce_sum(box, axis=0) * cols) / mass
    top = t.clip_by_value(t.cast(t.round(CENTRE - cy), t.int32), 0, SIZE - size[0])
    left = t.clip_by_value(t.cast(t.round(CENTRE - cx), t.int32), 0, SIZE - size[1])
    paddings = [[top, SIZE - size[0] - top], [left, SIZE - size[1] - left]]
    return t.pad(box, paddings)


def normalize_found(image):
    """Decoded image ``(H, W, C)`` or ``(H, W)``, values 0..255 -> ``(input, found)``.

    ``input`` is the model input ``float32 (28, 28, 1)`` in 0..255; ``found`` is False
    when the image holds no ink (blank page, uniform colour): not a digit.
    """
    t = tf()
    image = t.convert_to_tensor(image)
    if image.shape.rank == 2:
        image = image[..., None]
    x = _ink_bright(_working_gray(image))
    x = t.nn.relu(x - _background(x))
    x, contrast = _stretch(x)
    x = _without_specks(x)
    found = t.logical_and(contrast >= MIN_CONTRAST, t.reduce_any(x >= _BOX_INK))
    out = t.where(found, _fit_and_centre(x), 0.0)
    return t.ensure_shape(out[..., None] * 255.0, (SIZE, SIZE, 1)), found


def normalize(image):
    """Decoded image -> model input ``float32 (28, 28, 1)`` (zeros when no ink)."""
    return normalize_found(image)[0]
