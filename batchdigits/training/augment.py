"""On-the-fly data augmentation for training, inside the tf.data pipeline.

Each MNIST digit is varied the way other writers, pens and scanners vary it: small
rotation, scaling and shear; thinner or bolder strokes; mild blur and noise. Some also
get what real users' files look like (each with its own probability, see
:data:`REAL_WORLD`): outlined strokes, a tight crop that stretches the digit to the
edges, low resolution scaled back up, a thin line across the digit, dark bands and rulings
along the edges, a textured background, low and uneven contrast, thresholding to 1 bit,
salt-and-pepper noise, and dark ink on light paper. The result then goes through the
shared normalisation, so the model trains on exactly what it sees at prediction time
(the polarity decision, the line removal and the noise cleaning included). It works on
whole batches (one op per step for the batch, each image with its own random draw), and
everything is stateless random ops keyed on a seed per batch: the same ``--seed`` gives
the same augmented data.
"""

from __future__ import annotations

import math

from batchdigits.imaging.preprocess import first_last
from batchdigits.runtime.lazy import tf

UPSCALE = 2  # work at 56x56 so stroke changes can be finer than one MNIST pixel
MAX_ROTATION = math.radians(12)
SCALE_RANGE = (0.85, 1.15)
MAX_SHEAR = 0.25
MAX_BLUR_SIGMA = 1.2  # at 56x56
MAX_NOISE = 10.0  # std of added noise, of 255
MAX_PAPER = 60.0  # background level (after inversion: how far the paper is from white)

#: The share of training digits that get each real-world change.
REAL_WORLD = {
    "outline": 0.05,
    "tight_crop": 0.15,
    "low_resolution": 0.1,
    "crossing_line": 0.1,
    "edge_lines": 0.1,
    "texture": 0.15,
    "low_contrast": 0.1,
    "one_bit": 0.1,
    "salt_and_pepper": 0.08,
    "dark_ink": 0.5,
}


def _uniform(seed, n, low, high):
    t = tf()
    return t.random.stateless_uniform([n], seed=seed, minval=low, maxval=high)


def _affine(images, seeds, n):
    """Rotate, scale and shear each image about its centre (bilinear)."""
    t = tf()
    angle = _uniform(seeds[0], n, -MAX_ROTATION, MAX_ROTATION)
    scale = _uniform(seeds[1], n, *SCALE_RANGE)
    shear = _uniform(seeds[2], n, -MAX_SHEAR, MAX_SHEAR)
    c = (t.cast(t.shape(images)[1], t.float32) - 1.0) / 2.0
    cos, sin = t.cos(angle) / scale, t.sin(angle) / scale
    # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2).
    a0, a1 = cos, -sin + shear * cos
    b0, b1 = sin, cos + shear * sin
    a2 = c - a0 * c - a1 * c
    b2 = c - b0 * c - b1 * c
    zero = t.zeros_like(a0)
    return t.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=t.stack([a0, a1, a2, b0, b1, b2, zero, zero], 1),
        output_shape=t.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def _stroke(images, seed, n):
    """Thinner (erode), same, or bolder (dilate) pen, one step at 56x56, per image."""
    t = tf()
    choice = t.random.stateless_uniform([n], seed=seed, minval=0, maxval=3, dtype=t.int32)
    bolder = t.nn.max_pool2d(images, 3, 1, "SAME")
    thinner = -t.nn.max_pool2d(-images, 3, 1, "SAME")
    pick = choice[:, None, None, None]
    return t.where(pick == 0, thinner, t.where(pick == 2, bolder, images))


def _blur(images, seed, n):
    """A Gaussian blur of its own width per image: separable, the batch as channels."""
    t = tf()
    sigma = _uniform(seed, n, 0.05, MAX_BLUR_SIGMA)
    r = t.range(-3.0, 4.0)
    k = t.exp(-(r[:, None] ** 2) / (2.0 * sigma[None, :] ** 2))  # (7, B)
    k = k / t.reduce_sum(k, axis=0, keepdims=True)
    x = t.transpose(images, [3, 1, 2, 0])  # (1, H, W, B)
    x = t.nn.depthwise_conv2d(x, k[:, None, :, None], [1, 1, 1, 1], "SAME")
    x = t.nn.depthwise_conv2d(x, k[None, :, :, None], [1, 1, 1, 1], "SAME")
    return t.transpose(x, [3, 1, 2, 0])


def _chosen(seed, n, share: float):
    """Which of ``n`` images get a change given to ``share`` of them: ``(n, 1, 1, 1)``."""
    t = tf()
    return (t.random.stateless_uniform([n], seed=seed) < share)[:, None, None, None]


def _outline(images):
    """Strokes drawn as outlines: a bolder pen minus its eroded self."""
    t = tf()
    bold = t.nn.max_pool2d(images, 5, 1, "SAME")
    return t.clip_by_value(bold + t.nn.max_pool2d(-bold, 3, 1, "SAME"), 0.0, 255.0)


def _tight_crop(images, seed, n):
    """The ink's box scaled to fill the image (aspect kept for narrow digits only in part),
    as in crops from forms: the ink touches the edges."""
    t = tf()
    side = t.cast(t.shape(images)[1], t.float32)
    ink = images[..., 0] > 60.0
    y0, y1 = (t.cast(v, t.float32) for v in first_last(t.reduce_any(ink, 2)))
    x0, x1 = (t.cast(v, t.float32) for v in first_last(t.reduce_any(ink, 1)))
    # narrow digits (a 1) keep part of their aspect: widen the box towards a square
    keep = _uniform(seed, n, 0.0, 1.0)
    width = t.maximum(x1 - x0, keep * 0.6 * (y1 - y0))
    mid = (x0 + x1) / 2.0
    boxes = t.stack([y0, mid - width / 2.0, y1, mid + width / 2.0], 1) / (side - 1.0)
    size = t.shape(images)[1:3]
    return t.image.crop_and_resize(images, boxes, t.range(n), size)


def _low_resolution(images, seed, n):
    """Shrunk to 8-16 px (area), then scaled back up (bilinear): blurry, blocky."""
    t = tf()
    size = t.shape(images)[1:3]
    pick = t.random.stateless_uniform([n], seed=seed, minval=0, maxval=4, dtype=t.int32)
    out = images
    for k, s in enumerate((8, 10, 12, 16)):
        small = t.image.resize(images, [s, s], method="area")
        out = t.where(pick[:, None, None, None] == k, t.image.resize(small, size), out)
    return out


def _crossing_line(images, seeds, n):
    """A thin zigzag line across the digit, as bright as its ink, along either axis."""
    t = tf()
    side = t.cast(t.shape(images)[1], t.float32)
    pos = t.range(side)[None, :] / side
    mid = _uniform(seeds[0], n, 0.25, 0.75)[:, None]
    amp = _uniform(seeds[1], n, 0.0, 0.12)[:, None]
    freq = _uniform(seeds[2], n, 1.0, 3.0)[:, None]
    phase = _uniform(seeds[3], n, 0.0, 1.0)[:, None]
    tri = 2.0 * t.abs(2.0 * t.math.floormod(pos * freq + phase, 1.0) - 1.0) - 1.0
    centre = (mid + amp * tri) * side  # (n, side): the line's row at each column
    width = _uniform(seeds[4], n, 0.6, 2.0)[:, None, None]
    rows = t.range(side)[None, :, None]
    line = 255.0 * t.exp(-(((rows - centre[:, None, :]) / width) ** 2))
    vertical = (_uniform(seeds[5], n, 0.0, 1.0) < 0.5)[:, None, None]
    line = t.where(vertical, t.transpose(line, [0, 2, 1]), line)
    return t.maximum(images, line[..., None])


def _edge_lines(images, seeds, n):
    """Full-length bands or rulings along one to four edges, at the edge or a little in."""
    t = tf()
    side = t.shape(images)[1]
    i = t.cast(t.range(side), t.float32)
    lines = t.zeros([n, side, side])
    for k in range(4):
        on = _uniform(seeds[k], n, 0.0, 1.0) < (0.8 if k < 2 else 0.35)
        width = _uniform(seeds[k + 4], n, 1.0, 7.0)[:, None]
        offset = t.where(_uniform(seeds[k + 8], n, 0.0, 1.0) < 0.6, 0.0, 1.0)[:, None]
        offset = offset * _uniform(seeds[k + 12], n, 1.0, 6.0)[:, None]
        d = i[None, :] if k % 2 == 0 else (t.cast(side, t.float32) - 1.0 - i)[None, :]
        band = t.cast((d >= offset) & (d < offset + width), t.float32)
        band = band * t.cast(on, t.float32)[:, None]
        band = band[:, :, None] if k < 2 else band[:, None, :]
        lines = t.maximum(lines, band * t.ones([1, side, side]))
    flip = (_uniform(seeds[16], n, 0.0, 1.0) < 0.5)[:, None, None]
    lines = t.where(flip, t.transpose(lines, [0, 2, 1]), lines)
    return t.maximum(images, 255.0 * lines[..., None])


def _texture(seeds, n, side):
    """A gray 'photo' background: smooth random shading, stripes and grain (0..255)."""
    t = tf()
    coarse = t.random.stateless_uniform([n, 4, 4, 1], seed=seeds[0]) * 255.0
    shading = t.image.resize(coarse, [side, side], method="bicubic")
    pos = t.cast(t.range(side), t.float32)
    angle = _uniform(seeds[1], n, 0.0, math.pi)[:, None, None]
    freq = _uniform(seeds[2], n, 0.1, 0.8)[:, None, None]
    stripes = t.sin((pos[None, :, None] * t.cos(angle) + pos[None, None, :] * t.sin(angle)) * freq)
    stripes = stripes * _uniform(seeds[3], n, 0.0, 40.0)[:, None, None]
    grain = t.random.stateless_normal([n, side, side], seed=seeds[4])
    grain = grain * _uniform(seeds[5], n, 0.0, 15.0)[:, None, None]
    amount = _uniform(seeds[6], n, 0.1, 0.5)[:, None, None, None]
    return amount * shading + (stripes + grain)[..., None]


def _compose(ink, seeds, n):
    """Ink weights (0..255) on paper: flat or textured, with the ink's contrast full or
    low and uneven; some made 1-bit, some speckled, some dark ink on light paper."""
    t = tf()
    side = t.shape(ink)[1]
    alpha = t.clip_by_value(ink / 255.0, 0.0, 1.0)
    paper = _uniform(seeds[0], n, 0.0, MAX_PAPER)[:, None, None, None]
    textured = _chosen(seeds[1], n, REAL_WORLD["texture"])
    paper = t.where(textured, _texture(seeds[2:9], n, side), paper)
    pen = t.fill([n, 1, 1, 1], 255.0)
    low = _chosen(seeds[9], n, REAL_WORLD["low_contrast"])
    faint = paper + _uniform(seeds[10], n, 25.0, 90.0)[:, None, None, None]
    pos = t.cast(t.range(side), t.float32) / t.cast(side, t.float32) - 0.5
    haze = _uniform(seeds[11], n, -40.0, 40.0)[:, None, None, None] * pos[None, :, None, None]
    pen = t.where(low, faint + haze, pen)
    paper = t.where(low, paper + haze, paper)
    level = _uniform(seeds[12], n, 0.0, MAX_NOISE)[:, None, None, None]
    noise = t.random.stateless_normal(t.shape(ink), seed=seeds[13]) * level
    out = t.clip_by_value(paper * (1.0 - alpha) + pen * alpha + noise, 0.0, 255.0)
    cut = _uniform(seeds[14], n, 0.35, 0.65)[:, None, None, None] * 255.0
    binary = 255.0 * t.cast(ink > cut, t.float32)
    out = t.where(_chosen(seeds[15], n, REAL_WORLD["one_bit"]), binary, out)
    dots = t.random.stateless_uniform(t.shape(ink), seed=seeds[16])
    density = _uniform(seeds[17], n, 0.01, 0.1)[:, None, None, None]
    speckled = t.where(dots < density / 2, 0.0, t.where(dots > 1.0 - density / 2, 255.0, out))
    out = t.where(_chosen(seeds[18], n, REAL_WORLD["salt_and_pepper"]), speckled, out)
    return t.where(_chosen(seeds[19], n, REAL_WORLD["dark_ink"]), 255.0 - out, out)


def _real_world(x, seeds, n):
    """The shapes of real users' files (before paper and ink are composed)."""
    t = tf()
    x = t.where(_chosen(seeds[0], n, REAL_WORLD["outline"]), _outline(x), x)
    x = t.where(_chosen(seeds[1], n, REAL_WORLD["tight_crop"]), _tight_crop(x, seeds[2], n), x)
    x = t.where(
        _chosen(seeds[3], n, REAL_WORLD["low_resolution"]), _low_resolution(x, seeds[4], n), x
    )
    line = _crossing_line(x, seeds[5:11], n)
    x = t.where(_chosen(seeds[11], n, REAL_WORLD["crossing_line"]), line, x)
    lined = _chosen(seeds[12], n, REAL_WORLD["edge_lines"])
    return t.where(lined, _edge_lines(x, seeds[13:30], n), x)


def augment_batch(digits, seed, fraction: float = 1.0, clean_share: float = 0.0):
    """28x28 uint8 MNIST digits ``(B, 28, 28)`` -> varied digits ``(B, 56, 56)`` float
    0..255 (ink bright on dark paper, or dark on light), to normalise. ``seed``: two
    integers, one draw per batch.

    With ``fraction`` < 1, only that share of the digits (each drawn from ``seed``) is
    varied; the others pass through unchanged (upscaled alike). Of the varied ones,
    ``clean_share`` are only reshaped (rotation, scale, shear, pen): clean digits written
    a little differently, bright on black as MNIST's."""
    t = tf()
    seeds = t.random.experimental.stateless_split(t.cast(seed, t.int64), 60)
    x = t.cast(digits, t.float32)[..., None]
    n = t.shape(x)[0]
    x = t.image.resize(x, [28 * UPSCALE, 28 * UPSCALE], method="bilinear")
    reshaped = _stroke(_affine(x, seeds, n), seeds[3], n)
    varied = _real_world(reshaped, seeds[8:38], n)
    varied = _blur(varied, seeds[4], n)
    varied = _compose(varied, seeds[40:60], n)
    if clean_share > 0.0:
        varied = t.where(_chosen(seeds[6], n, clean_share), reshaped, varied)
    if fraction < 1.0:
        vary = t.random.stateless_uniform([n], seed=seeds[5]) < fraction
        varied = t.where(vary[:, None, None, None], varied, x)
    return varied[..., 0]
