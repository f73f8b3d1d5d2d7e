"""Generated training images that are *not* a single digit, for outlier exposure.

The model sees them during training with a uniform target (one tenth for every digit),
so it learns to be unsure on marks that are not one clean digit, and the review flag
catches them. They are 28x28 like MNIST (ink bright on black) and go through the same
augmentation and normalisation as the digits. Kinds: two different digits drawn over
each other, two digits side by side (a number, not a digit), smooth random scribbles,
and ink blots. Deliberately different from the non-digit probe set
(:mod:`batchdigits.training.probes`: font letters, straight-line strokes, noise, textures), so the
probe figure measures generalisation rather than the training set.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

NOT_A_DIGIT_CLASS = 10  # the label of these images in the training data


def _overlaid(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    dy, dx = rng.integers(-4, 5, size=2)
    return np.maximum(a, np.roll(b, (int(dy), int(dx)), axis=(0, 1)))


def _side_by_side(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    halves = [np.asarray(Image.fromarray(d).resize((14, 28), Image.BILINEAR)) for d in (a, b)]
    return np.concatenate(halves, axis=1)


def _scribble(rng: np.random.Generator) -> np.ndarray:
    page = Image.new("L", (56, 56), 0)
    draw = ImageDraw.Draw(page)
    for _ in range(int(rng.integers(2, 5))):
        # A smooth random walk: heading changes a little at each step.
        xy = rng.uniform(12, 44, 2)
        heading = rng.uniform(0, 2 * np.pi)
        turn = rng.normal(0, 0.5)
        points = [tuple(xy)]
        for _ in range(int(rng.integers(12, 31))):
            turn = 0.8 * turn + rng.normal(0, 0.3)
            heading += turn
            xy = np.clip(xy + 3.0 * np.array([np.cos(heading), np.sin(heading)]), 2, 54)
            points.append(tuple(xy))
        draw.line(points, fill=255, width=int(rng.integers(3, 7)), joint="curve")
    return np.asarray(page.resize((28, 28), Image.BILINEAR))


def _blots(rng: np.random.Generator) -> np.ndarray:
    noise = Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8))
    smooth = np.asarray(noise.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.5, 3.0)))))
    cut = np.quantile(smooth, rng.uniform(0.8, 0.95))
    return np.where(smooth > cut, 255, 0).astype(np.uint8)


KINDS = ("overlaid", "side_by_side", "scribble", "blots")


def non_digits(
    digits: np.ndarray, labels: np.ndarray, n: int, seed: int, kinds=KINDS
) -> np.ndarray:
    """``n`` non-digit images ``(n, 28, 28)`` uint8, from ``digits`` (MNIST training
    images with their ``labels``) and from scratch; deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        kind = KINDS.index(kinds[int(rng.integers(0, len(kinds)))])
        if kind < 2:
            a, b = rng.integers(0, len(digits), 2)
            while labels[b] == labels[a]:
                b = rng.integers(0, len(digits))
            make = _overlaid if kind == 0 else _side_by_side
            out[i] = make(digits[a], digits[b], rng)
        elif kind == 2:
            out[i] = _scribble(rng)
        else:
            out[i] = _blots(rng)
    return out
