"""Predicting a folder: list, stream through the pipeline, write the CSV, summarise."""

from __future__ import annotations

import contextlib
import os
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .decode import DEFAULT_MAX_PIXELS, UnreadableImage, read_with_pillow
from .errors import BatchDigitsError, ExitCode
from .files import Listing, find_images
from .lock import output_lock
from .model import load_model, read_card
from .output import (
    AtomicCsvWriter,
    Row,
    check_output_path,
    check_overwrite,
    csv_path,
    header,
    remove_stale_temps,
)
from .pipeline import (
    image_batches,
    infer_prepared,
    make_infer,
    normalize_and_infer,
    prepare_pixels,
)
from .progress import NullReporter, Reporter
from .state import file_stamp, load_previous, model_fingerprint, write_state

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
    model_fingerprint: str = ""
    # --incremental: rows kept from the previous CSV, and why the others were predicted.
    reused: int = 0
    new: int = 0
    changed: int = 0
    retried: int = 0  # files that had an error row last time
    removed: int = 0  # rows dropped: their files are gone
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

    def as_dict(self) -> dict:
        """For ``--summary-json``: every count, the timings and the model."""
        from dataclasses import asdict

        out = asdict(self)
        out["images_per_second"] = round(self.images_per_second, 1)
        out["seconds"] = round(self.seconds, 3)
        out["stream_seconds"] = round(self.stream_seconds, 3)
        return out


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
    incremental: bool = False,
    force: bool = False,
    wait_lock: float = 0.0,
) -> PredictSummary:
    """Predict every image file under ``input_dir`` and write the CSV to ``output``.

    One run at a time per output (a lock, waited for up to ``wait_lock`` seconds). The
    CSV appears only when complete (the previous one stays until then); an existing
    file that is not this tool's CSV is kept unless ``force``. Files that cannot be read
    get a row with an ``error`` and never stop the run. A row needs review when its
    confidence is below ``review_threshold`` (default: the model card's) or it has no
    prediction. ``probabilities`` adds the columns p0-p9. ``incremental`` reuses the
    previous run's rows of unchanged files (see :mod:`batchdigits.state`).
    """
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    with claim_output(output, force, wait_lock):
        with AtomicCsvWriter(output, probabilities) as writer:
            listing = find_images(input_dir, recursive, exclude=frozenset({os.fspath(output)}))
            keras_model = load_model(model)
            threshold = resolve_review_threshold(model, review_threshold)
            summary = PredictSummary(
                input_dir=os.fspath(input_dir),
                output=os.fspath(output),
                model=os.fspath(model) if model is not None else "(shipped model)",
                model_fingerprint=model_fingerprint(model),
                found=len(listing.paths),
                skipped=listing.skipped,
                review_threshold=threshold,
                escaped_names=sum(csv_path(p) != p for p in listing.paths),
                unreadable_folders=listing.unreadable_folders,
            )
            settings = {
                "model": summary.model_fingerprint,
                "review_threshold": threshold,
                "probabilities": probabilities,
            }
            t_stream = time.perf_counter()
            reporter.start("predicting", summary.found)
            try:
                if incremental:
                    stamps = _incremental(
                        listing,
                        output,
                        settings,
                        writer,
                        summary,
                        reporter,
                        lambda sub: predict_rows(
                            sub, keras_model, batch_size, max_pixels, threshold
                        ),
                    )
                else:
                    rows_of = predict_rows(listing, keras_model, batch_size, max_pixels, threshold)
                    for rows in rows_of:
                        writer.write(rows)
                        _count(summary, rows)
                        reporter.advance(len(rows))
            finally:
                reporter.stop()
            summary.stream_seconds = time.perf_counter() - t_stream
        if incremental:
            write_state(output, settings, stamps)
    summary.predicted = summary.found - summary.errors
    summary.seconds = time.perf_counter() - t0
    return summary


@contextlib.contextmanager
def claim_output(output: str | os.PathLike, force: bool, wait_lock: float):
    """Every engine's checks before it writes ``output``: a writable path, this run's
    lock on it (waited for up to ``wait_lock`` s), stale temporary files of killed runs
    removed, and no foreign file replaced unless ``force``. Held for the ``with`` body."""
    check_output_path(output)
    with output_lock(output, wait_lock):
        remove_stale_temps(output)
        if not force:
            check_overwrite(output, (header(False), header(True)))
        yield


def write_cell_rows(writer, rows: Iterable[list[str]], summary: PredictSummary, reporter) -> int:
    """Write formatted rows (``Row.cells``) 1,024 at a time, counting their errors and
    review flags into ``summary`` and reporting progress; returns how many were written."""
    written = 0
    for chunk in _chunks(rows, 1024):
        writer.write_cells(chunk)
        summary.errors += sum(1 for cells in chunk if cells[4])
        summary.needs_review += sum(1 for cells in chunk if cells[3] == "true")
        reporter.advance(len(chunk))
        written += len(chunk)
    return written


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _count(summary: PredictSummary, rows: list[Row]) -> None:
    summary.errors += sum(1 for r in rows if r.error)
    summary.needs_review += sum(1 for r in rows if r.needs_review)


def _incremental(listing, output, settings, writer, summary, reporter, predict) -> list:
    """Write the rows of unchanged files from the previous CSV and predict the rest,
    in listing order (so the CSV equals a full run's). Returns the sidecar's stamps.

    Both passes walk the listing and the previous rows side by side (both are in path
    order): the previous rows are streamed from the old CSV, never held in memory."""
    previous = load_previous(output, settings)
    sizes, mtimes = array("q"), array("q")
    reuse = bytearray(len(listing.paths))  # 1: the previous row stands
    todo = []
    old_rows = _Cursor(previous.rows())
    for i, rel in enumerate(listing.paths):
        key = csv_path(rel)
        stamp = file_stamp(listing.full_path(rel)) or (-1, -1)
        sizes.append(stamp[0])
        mtimes.append(stamp[1])
        summary.removed += old_rows.skip_to(key)
        old = old_rows.take(key)
        if old is None:
            summary.new += 1
        elif old[1][4]:  # an error row last time: try again
            summary.retried += 1
        elif stamp[0] >= 0 and (old[2], old[3]) == stamp:
            reuse[i] = 1
            continue
        else:
            summary.changed += 1
        todo.append(rel)
    summary.removed += old_rows.skip_to(None)
    summary.reused = sum(reuse)
    fresh = (row for rows in predict(Listing(listing.root, todo)) for row in rows)
    del todo
    old_rows = _Cursor(previous.rows())

    def cells_in_order() -> Iterator[list[str]]:
        for i, rel in enumerate(listing.paths):
            key = csv_path(rel)
            old_rows.skip_to(key)
            old = old_rows.take(key)
            yield old[1] if reuse[i] else next(fresh).cells(settings["probabilities"])

    write_cell_rows(writer, cells_in_order(), summary, reporter)
    return _Stamps(listing, sizes, mtimes)


class _Cursor:
    """A stream of previous rows in path order, read forward by key."""

    def __init__(self, rows: Iterator):
        self._rows = rows
        self._head = next(rows, None)

    def skip_to(self, key: str | None) -> int:
        """Drop rows before ``key`` (all with None); returns how many were dropped."""
        dropped = 0
        while self._head is not None and (key is None or self._head[0] < key):
            self._head = next(self._rows, None)
            dropped += 1
        return dropped

    def take(self, key: str):
        """The row for ``key`` if it is next, else None."""
        if self._head is not None and self._head[0] == key:
            row, self._head = self._head, next(self._rows, None)
            return row
        return None


class _Stamps(Sequence):
    """The new sidecar's ``(csv path, size, mtime_ns)`` rows, made when written."""

    def __init__(self, listing: Listing, sizes, mtimes):
        self._listing, self._sizes, self._mtimes = listing, sizes, mtimes

    def __len__(self) -> int:
        return len(self._listing.paths)

    def __getitem__(self, i):
        return (csv_path(self._listing.paths[i]), self._sizes[i], self._mtimes[i])


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
    full = _FullPaths(listing)

    def fallback(first: int, stop: int) -> list[Row]:
        return [
            _fallback_row(listing.paths[j], full[j], infer, max_pixels, threshold, batch_size)
            for j in range(first, stop)
        ]

    next_index = 0
    for indices, gray, sizes in image_batches(full, batch_size, max_pixels):
        _, probs, found = infer_prepared(gray, sizes, infer, batch_size)
        rows: list[Row] = []
        batch = zip(indices.numpy().tolist(), probs, found.tolist(), strict=True)
        for index, p, has_ink in batch:
            rows.extend(fallback(next_index, index))  # files the pipeline dropped
            rows.append(_row(listing.paths[index], p, has_ink, threshold))
            next_index = index + 1
        yield rows
    if next_index < len(full):
        yield fallback(next_index, len(full))


class _FullPaths(Sequence):
    """A listing's full paths, made when asked for rather than all kept in a list."""

    def __init__(self, listing: Listing):
        self._listing = listing

    def __len__(self) -> int:
        return len(self._listing.paths)

    def __getitem__(self, index):
        return self._listing.full_path(self._listing.paths[index])


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


def _fallback_row(
    rel: str, full: str, infer, max_pixels: int, threshold: float, batch_size: int
) -> Row:
    """A file the pipeline could not decode: try Pillow; else an error row."""
    try:
        pixels = read_with_pillow(full, max_pixels)
    except UnreadableImage as exc:
        return Row(path=rel, error=str(exc))
    _, probs, found = normalize_and_infer([prepare_pixels(pixels)], infer, batch_size)
    return _row(rel, probs[0], bool(found[0]), threshold)
