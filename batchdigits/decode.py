"""Turning file bytes into pixels: TensorFlow in the pipeline, Pillow as the fallback.

The fast path (:func:`decode_tf`) runs inside the ``tf.data`` map for the formats
TensorFlow reads. A file it fails on is read again, alone, by :func:`read_with_pillow`,
which either returns the pixels (TIFF, WebP, ...) or a short reason for the CSV's
``error`` column. Both give ``uint8 (H, W, C)`` arrays for :func:`preprocess.normalize`.
"""

from __future__ import annotations

import os

import numpy as np

from ._lazy import tf


def decode_tf(contents):
    """Encoded bytes (PNG, JPEG, BMP, GIF) -> ``uint8 (H, W, C)``; a GIF's first frame."""
    t = tf()
    return t.io.decode_image(contents, channels=0, expand_animations=False, dtype=t.uint8)


class UnreadableImage(Exception):
    """A file that cannot be used as an image; ``str(exc)`` is the CSV ``error`` text."""


def read_with_pillow(path: str) -> np.ndarray:
    """Read ``path`` with Pillow -> ``uint8 (H, W, C)`` with C in 1-4, or raise
    :class:`UnreadableImage` with a short reason."""
    from PIL import Image, UnidentifiedImageError

    try:
        if os.stat(path).st_size == 0:
            raise UnreadableImage("empty file (0 bytes)")
        with Image.open(path) as im:
            im.seek(0)
            return _to_array(im)
    except IsADirectoryError as exc:
        raise UnreadableImage("is a folder, not a file") from exc
    except PermissionError as exc:
        raise UnreadableImage("permission denied") from exc
    except FileNotFoundError as exc:
        raise UnreadableImage("file not found (removed, or a broken link)") from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImage("cannot decode image (not an image file)") from exc
    except Image.DecompressionBombError as exc:
        raise UnreadableImage("image too large") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise UnreadableImage("cannot decode image (truncated or corrupt)") from exc


def _to_array(im) -> np.ndarray:
    if im.mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
    arr = np.asarray(im, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr
