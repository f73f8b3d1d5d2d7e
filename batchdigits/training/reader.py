"""Training the shipped reader of numbers again, as its card says it was trained:

    python -m batchdigits.training.reader -o numbers.keras --count 36000 --epochs 8 \\
        --initial batchdigits/model/numbers.keras --seed 3

Synthetic numbers from MNIST *training* digits (:mod:`batchdigits.training.numbers`),
another tenth held out; the held-out exact matches of each epoch are printed; then the
confidence power and review threshold are fitted on 3,000 other synthetic numbers (seed
99) and written into the card beside the model."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from batchdigits.model.store import save_model
from batchdigits.numbers.sequence import HEIGHT, STEPS, WIDTH
from batchdigits.runtime.lazy import keras, tf
from batchdigits.training.data import load_mnist
from batchdigits.training.numbers import (
    UNFLAGGED_EXACT,
    calibrate_reader,
    model_inputs_of,
    read_probabilities,
    synthetic_numbers,
    train_sequence,
)

CALIBRATION_SEED = 99
CALIBRATION_COUNT = 3000
WHAT = (
    "the sequence reader of --numbers: a strided convolutional trunk and a CTC head (blank "
    f"and the ten digits) over {STEPS} steps of a field scaled to {HEIGHT}x{WIDTH}"
)
CONFIDENCE = (
    f"the product of the {STEPS} steps' largest probabilities, to the power "
    "confidence_power; confidence_power and review_threshold fitted on {count:,} other "
    "synthetic numbers from MNIST training digits (seed {seed}): the lowest ECE, and the "
    f"lowest threshold whose unflagged rows are {UNFLAGGED_EXACT:.1%} exact"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--count", type=int, default=36000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--initial", type=Path, help="start from this reader's weights")
    parser.add_argument("--data", help="MNIST folder (default: $BATCHDIGITS_MNIST, else Keras)")
    parser.add_argument("--calibration-count", type=int, default=CALIBRATION_COUNT)
    args = parser.parse_args()
    mnist = load_mnist(args.data)
    t0 = time.time()
    curve = train_sequence(
        args.output,
        mnist,
        args.count,
        args.epochs,
        args.seed,
        initial=args.initial,
        learning_rate=args.learning_rate,
    )
    seconds = round(time.time() - t0)
    model = keras().models.load_model(args.output, compile=False)
    images, texts = synthetic_numbers(
        mnist.x_train, mnist.y_train, args.calibration_count, CALIBRATION_SEED
    )
    calibration = calibrate_reader(read_probabilities(model, model_inputs_of(images)), texts)
    card = _card(args, curve, seconds, model, calibration)
    save_model(model, args.output, card)
    print(f"saved {args.output}: {calibration}")


def _card(args, curve, seconds: int, model, calibration: dict) -> dict:
    """The reader's card: what it is, how it was trained, how its confidence is made."""
    return {
        "format": "batchdigits-numbers-card/1",
        "what": WHAT,
        "trained_on": f"{args.count:,} synthetic numbers from MNIST training digits "
        f"(seed {args.seed})"
        + (f", warm-started from {args.initial.name}" if args.initial else ""),
        "held_out": args.count // 10,
        "held_out_exact_by_epoch": [round(c, 4) for c in curve],
        "epochs": args.epochs,
        "batch_size": 64,
        "seed": args.seed,
        "learning_rate": f"{args.learning_rate:g} cosine to {args.learning_rate * 0.02:g}",
        "parameters": int(model.count_params()),
        "confidence": CONFIDENCE.format(count=args.calibration_count, seed=CALIBRATION_SEED),
        "training_seconds": seconds,
        "tensorflow": tf().__version__,
        "keras": keras().__version__,
        "date": dt.date.today().isoformat(),
        **calibration,
    }


if __name__ == "__main__":
    main()
