"""The model's compute alone: a batch of preprocessed 28x28 images, in memory, through the
network (a script, not a test).

    python tests/benchmarks/bench_compute.py [--model PATH] [--batch 4096] [--repeats 7]

Prints images/s, the median of the repeats. Saved models have their batch normalisation
folded into the convolutions (``batchdigits.model.network.fold_batch_norm``).
"""

from __future__ import annotations

import argparse
import os

from batchdigits.model.inference import compute_images_per_second
from batchdigits.model.store import load_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    model = load_model(args.model)
    rate = compute_images_per_second(model, args.batch, args.repeats)
    print(
        f"{args.model or 'shipped model'}: {model.count_params():,} parameters, "
        f"{rate:,.0f} images/s (batch {args.batch}, median of {args.repeats}, "
        f"{os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
