"""``batchdigits tune --numbers``: fine-tune a reader of numbers on a user's own labelled
fields (a ``path,label`` CSV whose labels are strings of digits, such as the one ``review
--numbers`` writes; ``x`` rows are left out).

Each file is read as ``predict --numbers`` reads it (the one-file decoder, the field's
cleaning and scaling), so the model learns from what it will see. A seeded part is held
out; the rest trains the reader, mixed with synthetic numbers from MNIST training digits
when MNIST is there (so it does not forget the numbers it already reads). The best epoch
on the held-out part is kept, the confidence power and review threshold are fitted again
there, and the reader is saved with its card.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from batchdigits.errors import LabelError
from batchdigits.evaluation.labels import number_labels, read_labels
from batchdigits.imaging.decode import UnreadableImage
from batchdigits.imaging.files import find_images
from batchdigits.model.store import ModelRef, check_model_output, save_model
from batchdigits.progress import NullReporter, Reporter
from batchdigits.training.numbers import (
    MAX_LABEL,
    calibrate_reader,
    fields_of,
    model_inputs_of,
    read_probabilities,
    synthetic_numbers,
    targets,
)
from batchdigits.training.tune import TuneOptions, TuneResult, _mnist

#: Fewer labelled numbers than this cannot be split into a training and a held-out part.
MIN_NUMBERS = 20
#: Synthetic numbers from MNIST training digits mixed in per labelled number.
SYNTHETIC_PER_NUMBER = 2


@dataclass(frozen=True)
class Fields:
    """The labelled fields as the reader sees them."""

    inputs: np.ndarray  # (N, HEIGHT, WIDTH, 1)
    texts: list[str]
    unreadable: list[tuple[str, str]]


def tune_numbers(
    labelled: str | os.PathLike,
    output: str | os.PathLike,
    options: TuneOptions,
    reporter: Reporter | None = None,
) -> TuneResult:
    """Fine-tune ``options.predict.model`` (a reader of numbers; default the shipped one)
    on the numbers of ``labelled`` labelled by ``options.labels``."""
    reporter = reporter or NullReporter()
    check_model_output(output)
    if options.labels is None:
        raise LabelError("tune --numbers needs --labels: a CSV of path,label with the numbers")
    ref = ModelRef(options.predict.model, numbers=True)
    fields = _read(labelled, options)
    train, held = _split(len(fields.texts), options.held_out, options.seed)
    model = ref.load()
    texts = np.array(fields.texts, dtype=object)
    before = _exact(model, fields.inputs[held], texts[held])
    t0 = time.perf_counter()
    model = _fit(model, fields, train, held, options, reporter)
    seconds = time.perf_counter() - t0
    after = _exact(model, fields.inputs[held], texts[held])
    calibration = calibrate_reader(read_probabilities(model, fields.inputs[held]), texts[held])
    card = {
        "format": "batchdigits-numbers-card/1",
        **calibration,
        "tuned_from": f"{ref.name} ({ref.fingerprint})",
        "tuned_on": os.fspath(labelled),
        "labelled_numbers": len(fields.texts),
        "train_numbers": int(len(train)),
        "held_out_numbers": int(len(held)),
        "held_out_exact_before": round(before, 6),
        "held_out_exact_after": round(after, 6),
        "tune_seconds": round(seconds, 1),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    save_model(model, output, card)
    return TuneResult(card, fields.unreadable)


def _read(labelled, options: TuneOptions) -> Fields:
    """Every labelled number's file, read as ``predict --numbers`` reads it."""
    from batchdigits.imaging.one_file import prepare_bytes

    listing = find_images(labelled)
    labels = number_labels(read_labels(options.labels, numbers=True))
    grays, texts, paths, unreadable = [], [], [], []
    for path in (p for p in listing.paths if p in labels):
        if len(labels[path]) > MAX_LABEL:
            unreadable.append((path, f"a number of more than {MAX_LABEL} digits"))
            continue
        try:
            data = (Path(listing.root) / path).read_bytes()
            grays.append(prepare_bytes(data, options.predict.max_pixels))
        except (OSError, UnreadableImage) as exc:
            unreadable.append((path, str(exc)))
            continue
        texts.append(labels[path])
        paths.append(path)
    inputs, has_ink = fields_of(grays)
    for i in np.flatnonzero(~has_ink):  # nothing to learn from an empty field
        unreadable.append((paths[i], "no digit found"))
    keep = np.flatnonzero(has_ink)
    if len(keep) < MIN_NUMBERS:
        raise LabelError(
            f"too few labelled numbers to tune on: {len(keep)} readable (at least "
            f"{MIN_NUMBERS}: a quarter is held out to choose the epoch and calibrate)"
        )
    return Fields(inputs[keep], [texts[i] for i in keep], unreadable)


def _split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (training, held out): ``share`` of the numbers held out, at least one."""
    order = np.random.default_rng(seed).permutation(n)
    held = max(1, round(n * share))
    return np.sort(order[held:]), np.sort(order[:held])


def _exact(model, inputs: np.ndarray, texts) -> float:
    from batchdigits.numbers.sequence import greedy

    read = greedy(read_probabilities(model, inputs))
    return float(np.mean([r[0] == t for r, t in zip(read, texts, strict=True)]))


def _fit(model, fields: Fields, train, held, options: TuneOptions, reporter: Reporter):
    """Fine-tune with CTC on the training part (and synthetic numbers); keep the weights
    of the best held-out epoch (the base model's when no epoch beats it)."""
    from batchdigits.runtime.lazy import keras

    k = keras()
    k.utils.set_random_seed(options.seed)
    x, texts = fields.inputs[train], [fields.texts[i] for i in train]
    mnist = _mnist(options.data, reporter)
    if mnist is not None:
        count = SYNTHETIC_PER_NUMBER * len(train)
        images, more = synthetic_numbers(mnist[0], mnist[1], count, options.seed)
        x, texts = np.concatenate([x, model_inputs_of(images)]), texts + more
    y = targets(texts)
    held_texts = [fields.texts[i] for i in held]
    best = (_exact(model, fields.inputs[held], held_texts), model.get_weights())
    model.compile(optimizer=k.optimizers.Adam(options.learning_rate), loss=k.losses.CTC())
    for epoch in range(options.epochs):
        model.fit(x, y, batch_size=options.batch_size, epochs=1, verbose=0, shuffle=True)
        exact = _exact(model, fields.inputs[held], held_texts)
        reporter.log(f"epoch {epoch + 1}/{options.epochs}: held-out exact {exact:.2%}")
        if exact > best[0]:
            best = (exact, model.get_weights())
    model.set_weights(best[1])
    return model
