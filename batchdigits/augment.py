"""On-the-fly data augmentation for training, inside the tf.data pipeline.

Each MNIST digit is varied the way other writers, pens and scanners vary it: small
rotation, scaling and shear; thinner or bolder strokes; mild blur and noise. The result
then goes through the shared normalisation, so the model trains on exactly what it sees
at prediction time. Everything is stateless random ops keyed on (seed, epoch, index):
the same ``--seed`` gives the same augmented data.
"""

from __future__ import annotations

import math

from ._lazy import tf

UPSCALE = 2  # work at 56x56 so stroke changes can be finer than one MNIST pixel
MAX_ROTATION = math.radians(12)
SCALE_RANGE = (0.85, 1.15)
MAX_SHEAR = 0.25
MAX_BLUR_SIGMA = 1.2  # at 56x56
MAX_NOISE = 10.0  # std of added noise, of 255
MAX_PAPER = 60.0  # background level (after inversion: how far the paper is from white)


def _uniform(seed, low, high, shape=()):
    t = tf()
    return t.random.stateless_uniform(shape, seed=seed, minval=low, maxval=high)


def _affine(image, seed):
    """Rotate, scale and shear about the centre (bilinear)."""
    t = tf()
    seeds = t.random.experimental.stateless_split(seed, 4)
    angle = _uniform(seeds[0], -MAX_ROTATION, MAX_ROTATION)
    scale = _uniform(seeds[1], *SCALE_RANGE)
    shear = _uniform(seeds[2], -MAX_SHEAR, MAX_SHEAR)
    size = t.cast(t.shape(image)[0], t.float32)
    c = (size - 1.0) / 2.0
    cos, sin = t.cos(angle) / scale, t.sin(angle) / scale
    # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2).
    a0, a1 = cos, -sin + shear * cos
    b0, b1 = sin, cos + shear * sin
    a2 = c - a0 * c - a1 * c
    b2 = c - b0 * c - b1 * c
    transform = t.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])[None]
    out = t.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform,
        output_shape=t.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return out[0]


def _stroke(image, seed):
    """Thinner (erode), same, or bolder (dilate) pen, one step at 56x56."""
    t = tf()
    choice = t.random.stateless_uniform([], seed=seed, minval=0, maxval=3, dtype=t.int32)
    x = image[None]
    bolder = t.nn.max_pool2d(x, 3, 1, "SAME")
    thinner = -t.nn.max_pool2d(-x, 3, 1, "SAME")
    return t.gather(t.concat([thinner, x, bolder], axis=0), choice)


def _blur(image, seed):
    t = tf()
    sigma = _uniform(seed, 0.05, MAX_BLUR_SIGMA)
    r = t.range(-3.0, 4.0)
    k = t.exp(-(r**2) / (2.0 * sigma**2))
    k = k / t.reduce_sum(k)
    kernel = (k[:, None] * k[None, :])[..., None, None]
    return t.nn.conv2d(image[None], kernel, 1, "SAME")[0]


def augment(digit, seed, fraction: float = 1.0):
    """A 28x28 uint8 MNIST digit -> a varied digit (float 0..255, 56x56x1) to normalise.

    With ``fraction`` < 1, only that share of the digits (drawn from ``seed``) is varied;
    the others pass through unchanged (upscaled alike)."""
    t = tf()
    seeds = t.random.experimental.stateless_split(seed, 6)
    x = t.cast(digit, t.float32)
    if x.shape.rank == 2:
        x = x[..., None]
    x = t.image.resize(x, [28 * UPSCALE, 28 * UPSCALE], method="bilinear")
    if fraction >= 1.0:
        return _vary(x, seeds)
    vary = t.random.stateless_uniform([], seed=seeds[5]) < fraction
    return t.cond(vary, lambda: _vary(x, seeds), lambda: x)


def _vary(x, seeds):
    t = tf()
    x = _affine(x, seeds[0])
    x = _stroke(x, seeds[1])
    x = _blur(x, seeds[2])
    # Paper that is not quite black, with noise around its level (not clipped at 0).
    paper = _uniform(seeds[4], 0.0, MAX_PAPER)
    noise = t.random.stateless_normal(t.shape(x), seed=seeds[3]) * _uniform(seeds[4], 0, MAX_NOISE)
    return t.clip_by_value(paper + x * (1.0 - paper / 255.0) + noise, 0.0, 255.0)
