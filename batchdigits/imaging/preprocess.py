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
   box-filtered to that side for the steps below (:func:`shrunk`);
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
predictions go through :class:`batchdigits.model.inference.Inference`: one code path everywhere.
"""

from __future__ import annotations

import functools

from batchdigits.imaging.components import edge_touching, only_handwriting, search_handwriting
from batchdigits.imaging.ink import (
    background,
    first_last,
    has_stroke,
    ink_is_bright,
    stretch,
    without_edge_lines,
    without_salt_and_pepper,
    without_specks,
)
from batchdigits.imaging.resample import (
    apply_weights,
    bilinear_weights,
    per_image,
    pooled,
    shrunk,
)
from batchdigits.runtime.lazy import tf

SIZE = 28  # model input side
BOX = 20  # the digit's longer side inside the 28x28 field
CENTRE = 14.0  # centre-of-mass target (pixel index), as measured on MNIST
WORK_SIZE = 160  # larger images are scaled down to this longer side before analysis
MIN_CONTRAST = 16.0  # ink must stand this far (of 255) above the paper and its noise
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


def _fit_box(x, least_side=None):
    """Each image's ink box (pixels >= a tenth of full ink) scaled so its longer side is
    20 px, aspect ratio kept, in a 20x20 square: ``(B, 20, 20)``; with ``least_side
    (B,)``, the square is at least that many pixels (a digit of a number keeps its size
    against the number's height). Each output pixel
    averages 4x4 bilinear samples of its area (anti-aliased down, smooth up); a box of
    exactly 20 px is taken pixel for pixel, so MNIST itself passes through unchanged."""
    t = tf()
    ink = x >= _BOX_INK
    y0, y1 = first_last(t.reduce_any(ink, axis=2))
    x0, x1 = first_last(t.reduce_any(ink, axis=1))
    y0, y1, x0, x1 = (t.cast(v, t.float32) for v in (y0, y1, x0, x1))
    side = t.maximum(t.maximum(y1 - y0, x1 - x0), 1.0)
    if least_side is not None:
        side = t.maximum(side, least_side)
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
            return bilinear_weights(corner[:, None] + (k + 0.5) * size - 0.5, n)

        exact = t.equal(side, BOX)[:, None, None]
        return t.where(exact, cells(BOX), pooled(cells(4 * BOX), 4))

    box = apply_weights(weights(top, t.shape(x)[1]), x, weights(left, t.shape(x)[2]))
    # A thin pen shrunk with its digit fades: bring its strongest ink back to full.
    return box / per_image(t.maximum(t.reduce_max(box, axis=[1, 2]), 1e-6))


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


def valid_region(x, h, w):
    """``(B, H, W)`` True inside each image's own ``h x w``, False in the padding."""
    t = tf()
    rows = t.range(t.shape(x)[1])[None, :, None] < h[:, None, None]
    return rows & (t.range(t.shape(x)[2])[None, None, :] < w[:, None, None])


def normalize_batch(gray, sizes):
    """Steps 2-6 on a batch: ``gray (B, H, W)`` from :func:`prepare`, zero-padded, with
    each image's valid ``sizes (B, 2)`` (h, w) -> ``(inputs (B, 28, 28, 1), has_digit (B,))``.

    ``inputs`` are in 0..255; ``has_digit`` is False for an image with no ink (blank page,
    uniform colour): not a digit, and its input is all zeros. :func:`compiled_normalization`
    runs the same three parts as compiled functions.
    """
    x, h, w, contrast, which = before_search(gray, sizes)
    return after_search(only_handwriting(x, h, w, which), h, w, contrast)


def before_search(gray, sizes):
    """Steps 2-4 up to the search for the handwriting -> ``(x (B, h, w)`` the ink in 0..1,
    the sizes ``h, w (B,)`` after :func:`shrunk`, each image's ``contrast (B,)``, ``which
    (K, 1)`` the images the search is for)."""
    t = tf()
    h, w = sizes[:, 0], sizes[:, 1]
    bright = ink_is_bright(gray, h, w)
    x = t.where(per_image(bright), gray, 255.0 - gray) * t.cast(valid_region(gray, h, w), t.float32)
    x, h, w = shrunk(x, h, w)
    valid = valid_region(x, h, w)
    x = t.nn.relu(x - background(x, h, w)) * t.cast(valid, t.float32)
    x, contrast = stretch(x, h, w, valid)
    x = without_salt_and_pepper(x)
    return x, h, w, contrast, edge_touching(x, h, w)


def after_search(x, h, w, contrast):
    """The rest of step 4 and steps 5-6, after the search for the handwriting."""
    t = tf()
    x = without_edge_lines(x, h, w)
    x = without_specks(x, h, w)
    has_digit = (contrast >= MIN_CONTRAST) & has_stroke(x, h, w)
    out = model_inputs(x)
    return t.where(per_image(has_digit)[..., None], out, 0.0), has_digit


@functools.lru_cache(maxsize=1)
def compiled_normalization():
    """:func:`normalize_batch` as three compiled functions, for large runs. The search for
    the handwriting is traced only when a batch first needs it: a run where no crop
    touches its edge (MNIST, clean digits on paper) never pays its ~1,500 ops' tracing
    and first call (measured: 0.8 s of the 1.9 s that the whole graph's take)."""
    t = tf()
    f32, i32 = t.float32, t.int32
    image, side = t.TensorSpec([None, None, None], f32), t.TensorSpec([None], i32)
    compiled = functools.partial(t.function, autograph=False)
    before = compiled(before_search, input_signature=[image, t.TensorSpec([None, 2], i32)])
    which = t.TensorSpec([None, 1], t.int64)
    search = compiled(search_handwriting, input_signature=[image, side, side, which])
    after = compiled(after_search, input_signature=[image, side, side, t.TensorSpec([None], f32)])

    def normalize(gray, sizes):
        x, h, w, contrast, which = before(gray, sizes)
        if int(which.shape[0]):
            x = search(x, h, w, which)
        return after(x, h, w, contrast)

    return normalize


@functools.lru_cache(maxsize=1)
def compiled_model_inputs():
    """:func:`model_inputs` compiled once per process, for batches of crops of any size
    and their least sides (zeros: none): the digits of a number read one by one."""
    t = tf()
    spec = [t.TensorSpec([None, None, None], t.float32), t.TensorSpec([None], t.float32)]
    return t.function(model_inputs, input_signature=spec, autograph=False)


def model_inputs(x, least_side=None):
    """Steps 5-6: clean ink ``x (B, H, W)`` in 0..1 (zero-padded) -> the model's inputs
    ``(B, 28, 28, 1)`` in 0..255 (``least_side``: see :func:`_fit_box`)."""
    return _centre(_fit_box(x, least_side)) * 255.0


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
    :class:`batchdigits.model.inference.Inference`, which runs the same steps batched."""
    t = tf()
    gray = prepare(image)
    inputs, has_digit = normalize_batch(gray[None], t.shape(gray)[None])
    return inputs[0].numpy(), bool(has_digit[0])
