"""``batchdigits tune``: fine-tune a model on a user's own labelled images.

The labelled images are read exactly as ``evaluate`` reads them (sub-folders ``0`` ...
``9``, or any layout with a labels CSV such as the one ``review`` writes, where ``x``
marks "not a digit") and go through the same :class:`~batchdigits.model.inference.Inference`
as every prediction, so what the model learns from is the 28x28 image it will see. A
seeded, stratified part is held out; the rest trains the model with the usual
augmentation, mixed with MNIST training digits when MNIST is available, so that the
model does not forget the digits it already reads. The best epoch on the held-out part
is kept, the temperature and review threshold are fitted again there, and the model is
written with its card: base model, data, counts and held-out accuracy before and after.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from batchdigits.errors import DataNotFoundError, LabelError
from batchdigits.evaluation.labels import NOT_A_DIGIT, folder_labels, read_labels
from batchdigits.imaging.files import find_images
from batchdigits.model.inference import Inference, make_infer
from batchdigits.model.network import networks
from batchdigits.model.store import ModelRef, check_model_output, load_model, save_model
from batchdigits.options import PredictOptions
from batchdigits.progress import NullReporter, Reporter
from batchdigits.rows import NO_DIGIT
from batchdigits.training.negatives import NOT_A_DIGIT_CLASS

#: Fewer labelled digits than this cannot be split into a useful training and held-out part.
MIN_LABELS = 30


@dataclass(frozen=True)
class TuneOptions:
    """How to tune; ``predict`` says how the images are read (and the base ``model``)."""

    predict: PredictOptions = field(default_factory=PredictOptions)
    labels: str | os.PathLike | None = None  # a path,label CSV (else sub-folders 0-9)
    data: str | os.PathLike | None = None  # MNIST (else $BATCHDIGITS_MNIST, the Keras cache)
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 3e-4
    held_out: float = 0.25  # share of each digit's images held out for validation
    mnist_per_image: float = 4.0  # MNIST training digits mixed in per user image
    seed: int = 1


@dataclass
class TuneResult:
    card: dict[str, Any]
    unreadable: list[tuple[str, str]]  # (path, why) of labelled files that were skipped


def tune(
    labelled: str | os.PathLike,
    output: str | os.PathLike,
    options: TuneOptions | None = None,
    reporter: Reporter | None = None,
) -> TuneResult:
    """Fine-tune ``options.predict.model`` (the shipped one by default) on ``labelled``."""
    options = options or TuneOptions()
    reporter = reporter or NullReporter()
    check_model_output(output)
    images = _read(labelled, options)
    train, held = _split(images["labels"], options.held_out, options.seed)
    mnist = _mnist(options.data, reporter)
    before = _accuracy(images["predictions"][held], images["labels"][held])
    t0 = time.perf_counter()
    model, calibration = _fit(images, train, held, mnist, options, reporter)
    seconds = time.perf_counter() - t0
    after = _held_out_accuracy(model, images, held)
    card = {
        "format": "batchdigits-model-card/2",
        **calibration,
        "tuned_from": images["base"],
        "tuned_on": os.fspath(labelled),
        "labelled_images": int(len(images["labels"])),
        "train_images": int(len(train)),
        "held_out_images": int(len(held)),
        "not_a_digit_images": int((images["labels"] == NOT_A_DIGIT_CLASS).sum()),
        "held_out_accuracy_before": round(before, 6),
        "held_out_accuracy_after": round(after, 6),
        "tune_seconds": round(seconds, 1),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    save_model(model, output, card)
    return TuneResult(card, images["unreadable"])


def tuning_labels(listing, labels_csv) -> dict[str, int]:
    """Labels as ``evaluate`` reads them, as training classes: ``x`` (not a digit) is
    :data:`~batchdigits.training.negatives.NOT_A_DIGIT_CLASS`."""
    labels = read_labels(labels_csv) if labels_csv is not None else folder_labels(listing)
    return {
        path: NOT_A_DIGIT_CLASS if label == NOT_A_DIGIT else int(label)
        for path, label in labels.items()
    }


def _read(labelled, options: TuneOptions) -> dict[str, Any]:
    """Every labelled image through the base model: its 28x28 input and prediction."""
    listing = find_images(labelled)
    labels = tuning_labels(listing, options.labels)
    listing.paths = [p for p in listing.paths if p in labels]
    inference = Inference.open(options.predict)
    kept, unreadable = [], []
    for batch in inference.rows(listing, keep_inputs=True):
        for row in batch:
            if row.error and row.error != NO_DIGIT:
                unreadable.append((row.path, row.error))
            elif row.model_input is not None and row.error != NO_DIGIT:
                kept.append(row)
    digits = sum(1 for row in kept if labels[row.path] != NOT_A_DIGIT_CLASS)
    if digits < MIN_LABELS:
        raise LabelError(
            f"too few labelled digits to tune on: {digits} readable (at least {MIN_LABELS}: "
            f"a quarter is held out to choose the epoch and calibrate)"
        )
    return {
        "inputs": np.stack([row.model_input[..., 0] for row in kept]),
        "labels": np.array([labels[row.path] for row in kept]),
        "predictions": np.array([row.prediction for row in kept]),
        "unreadable": unreadable,
        "base": inference.name + f" ({inference.fingerprint})",
    }


def _split(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (training, held out): per digit, ``share`` of its images held out (at least
    one where there are two); "not a digit" images only train."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n = 0 if label == NOT_A_DIGIT_CLASS or len(idx) < 2 else max(1, round(len(idx) * share))
        held.extend(idx[:n])
        train.extend(idx[n:])
    return np.sort(train), np.sort(held)


def _mnist(data, reporter: Reporter):
    """MNIST training and test digits, or None (tuning then goes on without them)."""
    from batchdigits.training.data import load_mnist

    try:
        mnist = load_mnist(data)
    except DataNotFoundError as exc:
        reporter.log(f"no MNIST ({exc}); tuning on your images only: it may forget others")
        return None
    return mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test


def _accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    digits = labels != NOT_A_DIGIT_CLASS
    return float(np.mean(predicted[digits] == labels[digits])) if digits.any() else 0.0


def _fit(images, train, held, mnist, options: TuneOptions, reporter: Reporter):
    """Fine-tune the base model; keep the best held-out epoch; calibrate again there.
    Returns the model and the calibration figures (``test_*`` on MNIST's test digits
    when MNIST is there, else on the held-out part)."""
    from batchdigits.runtime.lazy import keras
    from batchdigits.training.datasets import image_dataset
    from batchdigits.training.fitting import FitPlan, fit
    from batchdigits.training.train import calibrate

    keras().utils.set_random_seed(options.seed)
    x = np.clip(np.rint(images["inputs"]), 0, 255).astype(np.uint8)
    y = images["labels"].astype(np.uint8)
    x_fit, y_fit = x[train], y[train]
    n = int(min(len(train) * options.mnist_per_image, len(mnist[0]))) if mnist else 0
    if mnist:
        pick = np.random.default_rng(options.seed).choice(len(mnist[0]), n, replace=False)
        x_fit, y_fit = (
            np.concatenate([x_fit, mnist[0][pick]]),
            np.concatenate([y_fit, mnist[1][pick]]),
        )
    train_ds = image_dataset(x_fit, y_fit, options.batch_size, options.seed, True)
    val_ds = image_dataset(x[held], y[held], 256)
    # the network that reads every row learns the user's digits, and a second opinion
    # (trained on MNIST alone) is left out of the tuned model; in a cascade, the strong
    # network learns them and the tuned model is that one network
    ref = ModelRef(options.predict.model)
    first, second = networks(load_model(ref.path))
    model = second if ref.second_answers_alone() else first
    steps = -(-len(x_fit) // options.batch_size)
    fit(model, train_ds, val_ds, FitPlan(options.epochs, steps, options.learning_rate), reporter)
    if mnist:
        test_ds, test_labels = image_dataset(mnist[2], mnist[3], 512), mnist[3]
    else:
        test_ds, test_labels = val_ds, y[held]
    model, figures = calibrate(model, val_ds, y[held], test_ds, test_labels)
    figures["mnist_test_accuracy"] = figures["test_accuracy"] if mnist else None
    figures["mnist_images_mixed"] = n
    return model, figures


def _held_out_accuracy(model, images, held) -> float:
    """The tuned model on the held-out images as ``predict`` will see them."""
    infer = make_infer(model)
    inputs = images["inputs"][held]
    probabilities = np.concatenate(
        [
            infer(inputs[i : i + 256, ..., None].astype(np.float32)).numpy()
            for i in range(0, len(inputs), 256)
        ]
    )
    return _accuracy(probabilities.argmax(1), images["labels"][held])
