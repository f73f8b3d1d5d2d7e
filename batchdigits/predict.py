"""Predicting a folder: list, stream through the pipeline, write the CSV, summarise."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .decode import DEFAULT_MAX_PIXELS, UnreadableImage, read_with_pillow
from .errors import BatchDigitsError, ExitCode
from .files import Listing, find_images
from .model import load_model, read_card
from .output import AtomicCsvWriter, Row, csv_path
from .pipeline import image_batches, make_infer
from .preprocess import normalize_found
from .progress import NullReporter, Reporter

DEFAULT_BATCH_SIZE = 256
NO_DIGIT = "no digit found"
#: Used when a model's card does not give a review threshold (models from older versions).
FALLBACK_REVIEW_THRESHOLD = 0.9


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
    needs_review: int = 0  # rows flagged for a human look (errors included)
    review_threshold: float = FALLBACK_REVIEW_THRESHOLD
    escaped_names: int = 0  # file names not valid UTF-8, written with \xNN escapes
    unreadable_folders: list[str] = field(default_factory=list)
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
    max_pixels: int = DEFAULT_MAX_PIXELS,
    review_threshold: float | None = None,
    probabilities: bool = False,
) -> PredictSummary:
    """Predict every image file under ``input_dir`` and write the CSV to ``output``.

    The CSV appears only when complete (the previous one stays until then). Files that
    cannot be read get a row with an ``error`` and never stop the run. A row needs review
    when its confidence is below ``review_threshold`` (default: the model card's) or it
    has no prediction. ``probabilities`` adds the columns p0-p9.
    """
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    with AtomicCsvWriter(output, probabilities) as writer:  # checks the output first: cheap
        listing = find_images(input_dir, recursive, exclude=frozenset({os.fspath(output)}))
        keras_model = load_model(model)
        threshold = resolve_review_threshold(model, review_threshold)
        summary = PredictSummary(
            input_dir=os.fspath(input_dir),
            output=os.fspath(output),
            model=os.fspath(model) if model is not None else "(shipped model)",
            found=len(listing.paths),
            skipped=listing.skipped,
            review_threshold=threshold,
            escaped_names=sum(csv_path(p) != p for p in listing.paths),
            unreadable_folders=listing.unreadable_folders,
        )
        t_stream = time.perf_counter()
        reporter.start("predicting", summary.found)
        try:
            for rows in predict_rows(listing, keras_model, batch_size, max_pixels, threshold):
                writer.write(rows)
                summary.errors += sum(1 for r in rows if r.error)
                summary.needs_review += sum(1 for r in rows if r.needs_review)
                reporter.advance(len(rows))
        finally:
            reporter.stop()
        summary.stream_seconds = time.perf_counter() - t_stream
    summary.predicted = summary.found - summary.errors
    summary.seconds = time.perf_counter() - t0
    return summary


def resolve_review_threshold(model: str | os.PathLike | None, given: float | None) -> float:
    """``given``, else the model card's review threshold, else the fallback."""
    if given is not None:
        return given
    try:
        return float(read_card(model).get("review_threshold", FALLBACK_REVIEW_THRESHOLD))
    except BatchDigitsError:  # no card beside the model: it still predicts
        return FALLBACK_REVIEW_THRESHOLD


def predict_rows(
    listing: Listing,
    model,
    batch_size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    threshold: float = FALLBACK_REVIEW_THRESHOLD,
) -> Iterator[list[Row]]:
    """Rows for every file of ``listing``, in its order, a batch at a time."""
    infer = make_infer(model)
    full = [listing.full_path(p) for p in listing.paths]

    def fallback(first: int, stop: int) -> list[Row]:
        return [
            _fallback_row(listing.paths[j], full[j], infer, max_pixels, threshold)
            for j in range(first, stop)
        ]

    next_index = 0
    for indices, images, found in image_batches(full, batch_size, max_pixels):
        probs = infer(images).numpy()
        rows: list[Row] = []
        batch = zip(indices.numpy().tolist(), probs, found.numpy().tolist(), strict=True)
        for index, p, has_ink in batch:
            rows.extend(fallback(next_index, index))  # files the pipeline dropped
            rows.append(_row(listing.paths[index], p, has_ink, threshold))
            next_index = index + 1
        yield rows
    if next_index < len(full):
        yield fallback(next_index, len(full))


def _row(rel: str, probabilities: np.ndarray, has_ink: bool, threshold: float) -> Row:
    if not has_ink:
        return Row(path=rel, error=NO_DIGIT)
    digit = int(np.argmax(probabilities))
    confidence = float(probabilities[digit])
    return Row(
        path=rel,
        prediction=digit,
        confidence=confidence,
        needs_review=confidence < threshold,
        probabilities=probabilities,  # the model's row as is: formatted only if written
    )


def _fallback_row(rel: str, full: str, infer, max_pixels: int, threshold: float) -> Row:
    """A file the pipeline could not decode: try Pillow; else an error row."""
    try:
        pixels = read_with_pillow(full, max_pixels)
    except UnreadableImage as exc:
        return Row(path=rel, error=str(exc))
    image, found = normalize_found(pixels)
    return _row(rel, infer(image[None]).numpy()[0], bool(found), threshold)
