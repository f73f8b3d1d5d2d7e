"""Predicting a folder: list, stream through the pipeline, write the CSV, summarise."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .decode import UnreadableImage, read_with_pillow
from .errors import ExitCode
from .files import Listing, find_images
from .model import load_model
from .output import AtomicCsvWriter, Row
from .pipeline import image_batches, make_infer
from .preprocess import normalize
from .progress import NullReporter, Reporter

DEFAULT_BATCH_SIZE = 256


@dataclass
class PredictSummary:
    """What a run did; the CLI prints it, monitoring can read it."""

    input_dir: str
    output: str
    model: str
    found: int = 0  # image files found (one CSV row each)
    predicted: int = 0
    errors: int = 0
    skipped: int = 0  # files that are not images, and hidden files
    seconds: float = 0.0  # the whole run
    stream_seconds: float = 0.0  # reading, decoding, predicting and writing the rows

    @property
    def images_per_second(self) -> float:
        return self.found / self.stream_seconds if self.stream_seconds > 0 else 0.0

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PARTIAL if self.errors else ExitCode.OK


def predict_folder(
    input_dir: str | os.PathLike,
    output: str | os.PathLike = "predictions.csv",
    model: str | os.PathLike | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    recursive: bool = True,
    reporter: Reporter | None = None,
) -> PredictSummary:
    """Predict every image file under ``input_dir`` and write the CSV to ``output``.

    The CSV appears only when complete (the previous one stays until then). Files that
    cannot be read get a row with an ``error`` and never stop the run.
    """
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    listing = find_images(input_dir, recursive=recursive, exclude=frozenset({os.fspath(output)}))
    keras_model = load_model(model)
    summary = PredictSummary(
        input_dir=os.fspath(input_dir),
        output=os.fspath(output),
        model=os.fspath(model) if model is not None else "(shipped model)",
        found=len(listing.paths),
        skipped=listing.skipped,
    )
    with AtomicCsvWriter(output) as writer:
        t_stream = time.perf_counter()
        reporter.start("predicting", summary.found)
        try:
            for rows in predict_rows(listing, keras_model, batch_size):
                writer.write(rows)
                summary.errors += sum(1 for r in rows if r.error)
                reporter.advance(len(rows))
        finally:
            reporter.stop()
        summary.stream_seconds = time.perf_counter() - t_stream
    summary.predicted = summary.found - summary.errors
    summary.seconds = time.perf_counter() - t0
    return summary


def predict_rows(listing: Listing, model, batch_size: int) -> Iterator[list[Row]]:
    """Rows for every file of ``listing``, in its order, a batch at a time."""
    infer = make_infer(model)
    full = [listing.full_path(p) for p in listing.paths]
    next_index = 0
    for indices, images in image_batches(full, batch_size):
        probs = infer(images).numpy()
        rows: list[Row] = []
        for index, p in zip(indices.numpy().tolist(), probs, strict=True):
            rows.extend(
                _fallback_row(listing.paths[j], full[j], infer) for j in range(next_index, index)
            )
            rows.append(_row(listing.paths[index], p))
            next_index = index + 1
        yield rows
    if next_index < len(full):
        yield [
            _fallback_row(listing.paths[j], full[j], infer) for j in range(next_index, len(full))
        ]


def _row(rel: str, probabilities: np.ndarray) -> Row:
    digit = int(np.argmax(probabilities))
    return Row(path=rel, prediction=digit, confidence=float(probabilities[digit]))


def _fallback_row(rel: str, full: str, infer) -> Row:
    """A file the pipeline could not decode: try Pillow; else an error row."""
    try:
        pixels = read_with_pillow(full)
    except UnreadableImage as exc:
        return Row(path=rel, error=str(exc))
    probs = infer(normalize(pixels)[None]).numpy()[0]
    return _row(rel, probs)
