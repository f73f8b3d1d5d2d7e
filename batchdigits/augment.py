"""On-the-fly data augmentation for training, inside the tf.data pipeline.

Each MNIST digit is varied the way other writers, pens and scanners vary it: small
rotation, scaling and shear; thinner or bolder strokes; mild blur and noise. The result
then goes through the shared normalisation, so the model trains on exactly what it sees
at prediction time. It works on whole batches (one op per step for the batch, each image
with its own random draw), and everything is stateless random ops keyed on a seed per
batch: the same ``--seed`` gives the same augmented data.
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


def augment_batch(digits, seed, fraction: float = 1.0):
    """28x28 uint8 MNIST digits ``(B, 28, 28)`` -> varied digits ``(B, 56, 56)`` float
    0..255 (ink bright), to normalise. ``seed``: two integers, one draw per batch.

    With ``fraction`` < 1, only that share of the digits (each drawn from ``seed``) is
    varied; the others pass through unchanged (upscaled alike)."""
    t = tf()
    seeds = t.random.experimental.stateless_split(t.cast(seed, t.int64), 8)
    x = t.cast(digits, t.float32)[..., None]
    n = t.shape(x)[0]
    x = t.image.resize(x, [28 * UPSCALE, 28 * UPSCALE], method="bilinear")
    varied = _affine(x, seeds, n)
    varied = _stroke(varied, seeds[3], n)
    varied = _blur(varied, seeds[4], n)
    # Paper that is not quite black, with noise around its level (not clipped at 0).
    paper = _uniform(seeds[5], n, 0.0, MAX_PAPER)[:, None, None, None]
    level = _uniform(seeds[6], n, 0.0, MAX_NOISE)[:, None, None, None]
    noise = t.random.stateless_normal(t.shape(x), seed=seeds[7]) * level
    varied = t.clip_by_value(paper + varied * (1.0 - paper / 255.0) + noise, 0.0, 255.0)
    if fraction < 1.0:
        vary = t.random.stateless_uniform([n], seed=seeds[5][::-1]) < fraction
        varied = t.where(vary[:, None, None, None], varied, x)
    return varied[..., 0]
