"""Predicting a folder, whichever engine runs it: the one driver.

:func:`predict_folder` checks the options, claims the output (path, lock, stale
temporary files, a foreign file), opens the engine (``local``: tf.data on this machine;
``beam``: Apache Beam), writes the rows it yields to a temporary CSV that replaces the
output only when complete, and builds the summary. With ``--incremental`` the rows of
unchanged files come from the previous CSV (:mod:`batchdigits.run.plan`) and only the other
files go to the engine.
"""

from __future__ import annotations

import contextlib
import os
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

from batchdigits.atomic import remove_stale_temps
from batchdigits.errors import ExitCode, UsageError
from batchdigits.imaging.files import Listing, Mapped
from batchdigits.options import FALLBACK_REVIEW_THRESHOLD, PredictOptions
from batchdigits.progress import NullReporter, Reporter
from batchdigits.rows import csv_path, headers
from batchdigits.run.engines import CHUNK, Engine, chunks, open_engine
from batchdigits.run.lock import output_lock
from batchdigits.run.plan import make_plan, merge
from batchdigits.run.state import file_stamp, load_previous, row_settings, write_state
from batchdigits.stops import check_stop
from batchdigits.writers import (
    STDOUT,
    AtomicCsvWriter,
    StreamCsvWriter,
    check_output_path,
    check_overwrite,
)


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
    escaped_examples: list[str] = field(default_factory=list)  # the first few, as written
    unreadable_folders: list[str] = field(default_factory=list)
    engine_counters: dict = field(default_factory=dict)  # Beam's counters (inferences, ...)
    seconds: float = 0.0  # the whole run
    stream_seconds: float = 0.0  # reading, decoding, predicting and writing the rows

    @property
    def predicted_this_run(self) -> int:
        """Files read and predicted (or found unreadable) by this run: not the reused."""
        return self.found - self.reused

    @property
    def images_per_second(self) -> float:
        """The rate of this run's own work: reused rows do not count."""
        seconds = self.stream_seconds
        return self.predicted_this_run / seconds if seconds > 0 else 0.0

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PARTIAL if self.errors else ExitCode.OK

    def as_dict(self) -> dict:
        """For ``--summary-json``: every count, the timings and the model."""
        out = asdict(self)
        out["predicted_this_run"] = self.predicted_this_run
        out["unreadable_folder_count"] = len(self.unreadable_folders)
        out["images_per_second"] = round(self.images_per_second, 1)
        out["seconds"] = round(self.seconds, 3)
        out["stream_seconds"] = round(self.stream_seconds, 3)
        return out


def predict_folder(
    input_dir: str | os.PathLike,
    output: str | os.PathLike = "predictions.csv",
    options: PredictOptions | None = None,
    reporter: Reporter | None = None,
) -> PredictSummary:
    """Predict every image file under ``input_dir`` and write the CSV to ``output``.

    One run at a time per output (a lock, waited for up to ``options.wait_lock``
    seconds). The CSV appears only when complete (the previous one stays until then); an
    existing file that is not this tool's CSV is kept unless ``options.force``. Files
    that cannot be read get a row with an ``error`` and never stop the run. See
    :class:`~batchdigits.options.PredictOptions` for the rest.
    """
    options = options or PredictOptions()
    options.check()
    to_stdout = os.fspath(output) == STDOUT
    if to_stdout and options.incremental:
        raise UsageError("--incremental needs an output file to reuse, not -o -")
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    if options.needs_training:
        _train_first(options, reporter)
    if not to_stdout:
        check_output_path(output)
    # The input and the model are checked before the lock: a run that fails at once
    # leaves nothing behind.
    engine = open_engine(input_dir, output, options)
    claim = (
        contextlib.nullcontext()
        if to_stdout
        else claim_output(output, options.force, options.wait_lock)
    )
    with claim:
        summary = PredictSummary(
            input_dir=os.fspath(input_dir),
            output=os.fspath(output),
            model=engine.model_name,
            model_fingerprint=engine.fingerprint,
            review_threshold=engine.threshold,
        )
        _write_csv(engine, output, options, summary, reporter)
    summary.predicted = summary.found - summary.errors
    summary.seconds = time.perf_counter() - t0
    return summary


def _train_first(options: PredictOptions, reporter: Reporter) -> None:
    from batchdigits.training.train import train

    reporter.log(f"{options.model} does not exist: training a new model there first")
    train(options.model, options.data, verify=options.verify_data, reporter=reporter)


@contextlib.contextmanager
def claim_output(output: str | os.PathLike, force: bool, wait_lock: float):
    """Every engine's claim on ``output`` (its path already checked): this run's lock on
    it (waited for up to ``wait_lock`` s), stale temporary files of killed runs removed,
    and no foreign file replaced unless ``force``. Held for the ``with`` body."""
    with output_lock(output, wait_lock):
        remove_stale_temps(output)
        if not force:
            check_overwrite(output, headers())
        yield


def _write_csv(engine: Engine, output, options: PredictOptions, summary, reporter) -> None:
    """The engine's rows (merged with the reused ones) into the published CSV; then,
    with ``--incremental``, the sidecar that describes it. An incremental run that finds
    nothing new, changed, to retry or to drop leaves the CSV and sidecar as they are."""
    settings = row_settings(engine.fingerprint, engine.threshold, options)
    t_stream = time.perf_counter()
    incremental = _Incremental(engine, output, settings, summary) if options.incremental else None
    if incremental is not None and incremental.nothing_to_do:
        incremental.count_kept(summary)
        engine.describe(summary)
        summary.stream_seconds = time.perf_counter() - t_stream
        return
    if os.fspath(output) == STDOUT:
        writing = StreamCsvWriter(options.probabilities, numbers=options.numbers)
    else:
        writing = AtomicCsvWriter(output, options.probabilities, numbers=options.numbers)
    with writing as writer:
        rows = incremental.rows() if incremental else (r for c in engine.rows() for r in c)
        reporter.start(engine.label, len(engine.listing.paths) if engine.listing else None)
        try:
            summary.found = write_rows(writer, rows, summary, reporter)
        finally:
            reporter.stop()
        engine.describe(summary)
        summary.stream_seconds = time.perf_counter() - t_stream
    if incremental is not None:
        write_state(output, settings, incremental.stamps.rows())


def write_rows(
    writer: AtomicCsvWriter | StreamCsvWriter, rows: Iterable, summary, reporter: Reporter
) -> int:
    """Write rows (``Row`` or reused ``CsvRow``) ``CHUNK`` at a time, counting their errors
    and review flags into ``summary`` and reporting progress; returns how many."""
    written = 0
    for chunk in chunks(rows, CHUNK):
        check_stop()
        writer.write(chunk)
        summary.errors += sum(1 for row in chunk if row.error)
        summary.needs_review += sum(1 for row in chunk if row.needs_review)
        reporter.advance(len(chunk))
        written += len(chunk)
    check_stop()  # before the CSV is published
    return written


class _Incremental:
    """``--incremental``: the plan (:mod:`batchdigits.run.plan`) from the listing, each file's
    stamp and the previous rows; its counts go into ``summary``. Needs no model."""

    def __init__(self, engine: Engine, output, settings: dict, summary):
        self.engine = engine
        self.keys = Mapped(engine.listing.paths, csv_path)
        self.stamps = _Stamps(engine.listing)
        self.previous = load_previous(output, settings)
        self.plan = make_plan(self.keys, self.stamps, self.previous.rows())
        for name in ("new", "changed", "retried", "removed", "reused"):
            setattr(summary, name, getattr(self.plan, name))

    @property
    def nothing_to_do(self) -> bool:
        """Every row stands and none is dropped: the CSV would be the same bytes."""
        plan = self.plan
        return self.previous.usable and plan.reused == len(self.keys) and not plan.removed

    def count_kept(self, summary) -> None:
        summary.found = len(self.keys)
        summary.needs_review = self.plan.reused_flagged

    def rows(self) -> Iterator:
        """Rows in listing order: the previous run's for unchanged files, the engine's
        for the rest."""
        todo = self.plan.todo(self.engine.listing.paths)
        fresh = (row for chunk in self.engine.rows(todo) for row in chunk)
        return merge(self.keys, self.plan, self.previous.rows(), fresh)


class _FolderStat:
    """``stat`` of a listing's files, one open descriptor per folder (the listing is in
    path order, so a folder's files come together): each file's name is resolved alone,
    not its whole path again. Plain ``os.stat`` where descriptors are not supported."""

    def __init__(self, root: str):
        self._root = root
        self._folder: str | None = None
        self._fd: int | None = None
        self._usable = os.stat in os.supports_dir_fd and os.sep == "/"

    def stamp(self, rel: str) -> tuple[int, int] | None:
        if not self._usable:
            return file_stamp(os.path.join(self._root, rel))
        folder, _, name = rel.rpartition("/")
        if folder != self._folder or self._fd is None:
            self.close()
            self._folder = folder
            try:
                self._fd = os.open(os.path.join(self._root, folder), os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                return None
        return file_stamp(name, self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Stamps(Sequence):
    """Each listed file's ``(size, mtime_ns)`` (``None`` if it cannot be read), taken
    once, in two compact arrays: the plan reads them, the sidecar records them."""

    def __init__(self, listing: Listing):
        self._listing = listing
        self._sizes, self._mtimes = array("q"), array("q")
        folders = _FolderStat(listing.root)
        try:
            for rel in listing.paths:
                size, mtime = folders.stamp(rel) or (-1, -1)
                self._sizes.append(size)
                self._mtimes.append(mtime)
        finally:
            folders.close()

    def __len__(self) -> int:
        return len(self._sizes)

    def __getitem__(self, i):
        return None if self._sizes[i] < 0 else (self._sizes[i], self._mtimes[i])

    def rows(self) -> Iterator[tuple[str, int, int]]:
        """The sidecar's ``(csv path, size, mtime_ns)`` rows."""
        for i, rel in enumerate(self._listing.paths):
            yield csv_path(rel), self._sizes[i], self._mtimes[i]
