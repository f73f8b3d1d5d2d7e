"""Measure what the MNIST-style normalisation buys and costs (a script, not a test).

    python tests/benchmarks/measure_normalisation.py [--files N] [--model PATH]

1. Accuracy of the model on scan-like images made from MNIST test digits
   (tests/scanlike.py) through ``batchdigits predict`` (normalised), and the same files
   simply converted to gray and resized to 28x28, as the first version did.
2. Cost per image: tf.data read + decode alone vs read + decode + normalise, for the
   scan-like JPEG/PNGs and for 28x28 MNIST PNGs (median of 3 runs each).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scanlike import write_scan_set  # noqa: E402

from batchdigits.imaging.decode import decode_tf  # noqa: E402
from batchdigits.imaging.pipeline import image_batches  # noqa: E402
from batchdigits.model.store import load_model  # noqa: E402
from batchdigits.options import PredictOptions  # noqa: E402
from batchdigits.run.driver import predict_folder  # noqa: E402
from batchdigits.runtime.lazy import tf  # noqa: E402
from batchdigits.training.data import load_mnist  # noqa: E402


def plain_resize(path: Path) -> np.ndarray:
    image = Image.open(path).convert("L").resize((28, 28), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32)[..., None]


def rate(files: list[str], with_normalise: bool) -> float:
    """Images/s of the product's pipeline (``image_batches``: read, decode, normalise,
    batch), or of reading and decoding alone."""
    t = tf()
    if with_normalise:
        ds = image_batches(files, 256)
    else:
        ds = t.data.Dataset.from_tensor_slices(files)
        ds = ds.map(
            lambda path: t.shape(decode_tf(t.io.read_file(path))),
            num_parallel_calls=t.data.AUTOTUNE,
            deterministic=True,
        ).batch(256)
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        for _ in ds:
            pass
        times.append(time.perf_counter() - t0)
    return len(files) / statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", default=None)
    args = parser.parse_args()
    mnist = load_mnist(args.data)
    n = args.files
    with tempfile.TemporaryDirectory() as tmp:
        scans = Path(tmp) / "scans"
        truth = write_scan_set(scans, mnist.x_test[:n], mnist.y_test[:n], seed=0)
        out = Path(tmp) / "p.csv"
        predict_folder(scans, out, PredictOptions(model=args.model))
        df = pd.read_csv(out, dtype={"prediction": "Int64"})
        normalised = float(
            np.mean([truth[p] == pr for p, pr in zip(df.path, df.prediction, strict=True)])
        )
        model = load_model(args.model)
        names = sorted(truth)
        x = np.stack([plain_resize(scans / name) for name in names])
        plain = model.predict(x, batch_size=256, verbose=0).argmax(axis=1)
        resized = float(np.mean(plain == np.array([truth[name] for name in names])))
        print(f"scan-like set, {n} images from MNIST test digits:")
        print(f"  normalised (batchdigits predict): {normalised:.2%}")
        print(f"  gray + resize to 28x28 only:      {resized:.2%}")

        pngs = Path(tmp) / "pngs"
        pngs.mkdir()
        for i in range(n):
            Image.fromarray(mnist.x_test[i]).save(pngs / f"{i:05d}.png")
        for label, folder in (("scan-like JPEG/PNG", scans), ("28x28 MNIST PNG", pngs)):
            files = sorted(str(p) for p in folder.iterdir())
            decode_only, with_norm = rate(files, False), rate(files, True)
            cost_ms = (1 / with_norm - 1 / decode_only) * 1000
            print(
                f"{label}: read+decode {decode_only:,.0f} images/s, + normalise "
                f"{with_norm:,.0f} images/s -> normalisation costs {cost_ms:.3f} ms/image "
                f"of wall time on {os.cpu_count()} cores"
            )


if __name__ == "__main__":
    main()
