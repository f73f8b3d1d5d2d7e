"""Compute cost of candidate architectures, in one run (a script, not a test):

    python tests/benchmarks/bench_architectures.py [--batch 4096] [--repeats 5]

For each: parameters, inference images/s of the saved (batch norm folded) form on an
in-memory batch of 28x28 inputs, and training images/s (forward and backward with batch
normalisation, batch 128, in-memory data). Weights are random: speed does not depend on
them. Only the ratios within one run mean much on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from batchdigits.model.inference import compute_images_per_second
from batchdigits.model.network import build_model
from batchdigits.runtime.lazy import keras, tf

CANDIDATES = {
    "seed: [32,32] [64,64], dense 128": dict(blocks=[[32, 32], [64, 64]], dense=128),
    "[32] [64,64], dense 128": dict(blocks=[[32], [64, 64]], dense=128),
    "[32,32] [64], dense 128": dict(blocks=[[32, 32], [64]], dense=128),
    "[24,24] [48,48], dense 128": dict(blocks=[[24, 24], [48, 48]], dense=128),
    "[16,32] [64,64], dense 128": dict(blocks=[[16, 32], [64, 64]], dense=128),
    "[32] [64] [128], dense 128": dict(blocks=[[32], [64], [128]], dense=128),
    "[32] [64,64] [128], dense 128": dict(blocks=[[32], [64, 64], [128]], dense=128),
    "[32] [48,64] [128], dense 256 (default)": dict(blocks=[[32], [48, 64], [128]], dense=256),
}


def training_images_per_second(architecture: dict, steps: int = 40) -> float:
    k, t = keras(), tf()
    rng = np.random.default_rng(0)
    x = (rng.random((128 * steps, 28, 28, 1)) * 255).astype("float32")
    y = k.utils.to_categorical(rng.integers(0, 10, len(x)), 10)
    ds = t.data.Dataset.from_tensor_slices((x, y)).batch(128).cache()
    model = build_model(**architecture)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(ds.take(3), verbose=0)  # trace and warm up
    t0 = time.perf_counter()
    model.fit(ds, verbose=0)
    return len(x) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores")
    print(f"{'architecture':42s} {'parameters':>10s} {'inference/s':>12s} {'training/s':>11s}")
    for name, architecture in CANDIDATES.items():
        folded = build_model(**architecture, batch_norm=False)
        infer = compute_images_per_second(folded, args.batch, args.repeats)
        train = training_images_per_second(architecture)
        print(f"{name:42s} {folded.count_params():>10,} {infer:>12,.0f} {train:>11,.0f}")


if __name__ == "__main__":
    main()
