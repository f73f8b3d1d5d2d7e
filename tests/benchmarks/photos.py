"""Real photographs behind a digit: the sample photos scikit-image ships inside its wheel
(no download), cut into patches. The harder photo variant of the stress benchmark."""

from __future__ import annotations

import functools

import numpy as np
from drawing import to_u8
from PIL import Image

#: scikit-image's sample photos that are in its wheel: people, animals, objects, textures,
#: the sky, a microscope. Gray ones are made colour by repeating the channel.
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
)


@functools.cache
def photo(name: str) -> np.ndarray:
    """One sample photo as ``float64 (H, W, 3)``, 0..255."""
    from skimage import data

    pixels = np.asarray(getattr(data, name)(), dtype=np.float64)
    return np.repeat(pixels[..., None], 3, -1) if pixels.ndim == 2 else pixels[..., :3]


def _patch(rng: np.random.Generator, side: int) -> np.ndarray:
    """A square cut of a random photo (a tenth to a third of it across), ``side`` px."""
    pixels = photo(PHOTOS[int(rng.integers(len(PHOTOS)))])
    h, w, _ = pixels.shape
    cut = int(rng.integers(min(h, w) // 10, min(h, w) // 3))
    y, x = int(rng.integers(0, h - cut)), int(rng.integers(0, w - cut))
    image = Image.fromarray(pixels[y : y + cut, x : x + cut].astype(np.uint8))
    return np.asarray(image.resize((side, side), Image.BILINEAR), dtype=np.float64)


def real_photo(digit, rng, dark_ink):
    """The digit written in coloured ink on a patch of a real photograph, at little
    contrast: the ink is 45-100 grey levels from the patch's mean (darker or lighter),
    the photo's own contrast kept at 40-100%."""
    side = 28 * int(rng.integers(2, 5))
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.BICUBIC)) / 255.0
    patch = _patch(rng, side)
    mean = patch.mean()
    patch = mean + (patch - mean) * rng.uniform(0.4, 1.0)
    delta = rng.uniform(45, 100)
    # room for the ink: the paper is moved so that the pen's level stays in 0..255
    level = float(np.clip(mean, delta + 10, 245)) if dark_ink else min(mean, 245 - delta)
    patch += level - mean
    tint = rng.uniform(0.5, 1.5, 3)
    pen = level + (-delta if dark_ink else delta) * tint / tint.mean()
    alpha = np.clip(ink * rng.uniform(0.8, 1.0), 0, 1)[..., None]
    return to_u8(patch * (1 - alpha) + np.clip(pen, 0, 255) * alpha)
