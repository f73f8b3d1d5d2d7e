"""The Keras idiom a user would write instead of batchdigits, as its own process:

    python tests/benchmarks/idiom.py DIR OUT.csv

``keras.utils.image_dataset_from_directory(..., shuffle=False)`` + ``model.predict`` + a
pandas CSV, with the seed design's architecture (untrained: weights do not change the
speed). Whole-process timings of this script against ``batchdigits predict DIR -o OUT``
are the issue-17 comparison (``--make DIR N mnist|scan`` writes a benchmark folder).
"""

from __future__ import annotations

import os
import sys


def run(folder: str, out: str) -> None:
    import keras
    import pandas as pd

    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    ds = keras.utils.image_dataset_from_directory(
        folder,
        labels=None,
        color_mode="grayscale",
        image_size=(28, 28),
        batch_size=256,
        shuffle=False,
        verbose=False,
    )
    probs = model.predict(ds, verbose=0)
    pd.DataFrame(
        {
            "path": [os.path.basename(p) for p in ds.file_paths],
            "prediction": probs.argmax(1),
            "confidence": probs.max(1),
        }
    ).to_csv(out, index=False)


def make(folder: str, n: int, kind: str) -> None:
    """``n`` files: 28x28 PNGs of MNIST test digits, or scan-like JPEGs of 200x200."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from batchdigits.data import load_mnist
    from batchdigits.probes import scan_like

    data = os.environ.get("BATCHDIGITS_MNIST") or "../shared/mnist"
    digits = load_mnist(data).x_test
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        digit = digits[i % len(digits)]
        if kind == "mnist":
            Image.fromarray(digit).save(root / f"{i:06d}.png")
        else:
            image = scan_like(digit, rng).resize((200, 200), Image.BILINEAR)
            image.save(root / f"{i:06d}.jpg", quality=85)


if __name__ == "__main__":
    if sys.argv[1] == "--make":
        make(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        run(sys.argv[1], sys.argv[2])
