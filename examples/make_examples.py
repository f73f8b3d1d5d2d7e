"""Regenerate examples/digits/ from the MNIST test set.

    python examples/make_examples.py --data ../shared/mnist

Writes 20 MNIST test digits as 28x28 PNGs (white ink on black, as MNIST stores them) and
16 "scans": the same kind of digit as dark ink on light, slightly noisy paper, on a larger
canvas, off-centre, saved as JPEG. File names carry the true digit (``...-digit7...``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from batchdigits.training.data import load_mnist

HERE = Path(__file__).resolve().parent / "digits"


def scan_like(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    size = int(rng.integers(90, 180))
    scale = float(rng.uniform(2.0, 4.0))
    ink = Image.fromarray(255 - digit).resize((int(28 * scale),) * 2, Image.BICUBIC)
    paper = rng.normal(235, 6, (size, size)).clip(0, 255).astype(np.uint8)
    canvas = Image.fromarray(paper)
    room = max(1, size - ink.width)
    x, y = int(rng.integers(0, room)), int(rng.integers(0, room))
    region = canvas.crop((x, y, x + ink.width, y + ink.height))
    canvas.paste(Image.fromarray(np.minimum(np.asarray(region), np.asarray(ink))), (x, y))
    return canvas.filter(ImageFilter.GaussianBlur(0.6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="MNIST folder or npz (see batchdigits train)")
    args = parser.parse_args()
    mnist = load_mnist(args.data)
    HERE.mkdir(exist_ok=True)
    rng = np.random.default_rng(2024)
    for i in range(20):
        label = int(mnist.y_test[i])
        Image.fromarray(mnist.x_test[i]).save(HERE / f"mnist-{i:04d}-digit{label}.png")
    for i in range(100, 116):
        label = int(mnist.y_test[i])
        quality = int(rng.integers(60, 95))
        scan_like(mnist.x_test[i], rng).save(
            HERE / f"scan-{i:04d}-digit{label}.jpg", quality=quality
        )


if __name__ == "__main__":
    main()
