"""One file at a time: a file's bytes (or decoded pixels) -> its gray working image.

The local pipeline's decode and per-image step (:mod:`batchdigits.imaging.pipeline`), for
front ends that get files one by one (the Beam engine, the web page) and for the local
engine's Pillow fallback: the same functions, so a file's row is the same whichever way
it came.
"""

from __future__ import annotations

import functools

import numpy as np

from batchdigits.imaging.decode import decode_tf, read_bytes_with_pillow
from batchdigits.imaging.preprocess import prepare
from batchdigits.runtime.lazy import tf


@functools.lru_cache(maxsize=4)
def _decode_prepare(max_pixels: int):
    t = tf()

    @t.function(input_signature=[t.TensorSpec([], t.string)], autograph=False)
    def run(contents):
        return prepare(decode_tf(contents, max_pixels))

    return run


@functools.lru_cache(maxsize=1)
def _prepare_pixels():
    t = tf()

    @t.function(input_signature=[t.TensorSpec([None, None, None], t.uint8)], autograph=False)
    def run(pixels):
        return prepare(pixels)

    return run


def prepare_bytes(data: bytes, max_pixels: int) -> np.ndarray:
    """One file's contents -> its gray working image ``float32 (h, w)`` (``prepare``),
    decoded by the pipeline's TensorFlow decoder or, where that refuses, by Pillow, as in
    the local engine. Raises :class:`~batchdigits.imaging.decode.UnreadableImage` with the CSV's
    error text."""
    t = tf()
    try:
        return _decode_prepare(max_pixels)(t.constant(data)).numpy()
    # Refused or failed by the fast path: Pillow decides. (Some TensorFlow errors quote the
    # file's bytes, and then building the error message fails to decode them as UTF-8.)
    except (t.errors.OpError, UnicodeDecodeError):
        return prepare_pixels(read_bytes_with_pillow(data, max_pixels))


def prepare_pixels(pixels: np.ndarray) -> np.ndarray:
    """Decoded pixels ``uint8 (H, W)`` or ``(H, W, C)`` -> the gray working image."""
    t = tf()
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    return _prepare_pixels()(t.constant(pixels)).numpy()
