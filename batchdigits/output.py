"""The predictions CSV: its columns, row format, and a writer that never half-writes.

Rows go to a temporary file in the output's own folder as they come; only a completed
run renames it over the output (``os.replace``), so a reader sees the previous complete
CSV or the new complete one, never anything in between.
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .errors import ForeignOutputError, OutputClosedError, OutputError, write_error

COLUMNS = ("path", "prediction", "confidence", "needs_review", "error")
PROBABILITY_COLUMNS = tuple(f"p{d}" for d in range(10))
NO_DIGIT = "no digit found"  # the error of an image without a stroke


def header(probabilities: bool = False, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return COLUMNS + (PROBABILITY_COLUMNS if probabilities else ()) + extra


def read_header(output: str | os.PathLike) -> tuple[str, ...] | None:
    """The first row of an existing output (``None`` when there is no file); a file
    that is not a readable CSV gives ``("?",)``."""
    try:
        with open(output, encoding="utf-8", newline="") as f:
            return tuple(next(csv.reader(f), ()))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, csv.Error):
        return ("?",)


def check_overwrite(output: str | os.PathLike, allowed: tuple[tuple[str, ...], ...]) -> None:
    """Refuse to replace an existing file that is not a CSV of this tool (its header is
    none of ``allowed``): someone's other data is never overwritten silently."""
    found = read_header(output)
    if found is not None and found not in allowed and not Path(output).is_dir():
        raise ForeignOutputError(
            f"{output} exists and is not a batchdigits CSV (its first line is not one of "
            "this tool's headers); not overwriting it. Choose another --output, or "
            "pass --force to replace it"
        )


def check_output_path(output: str | os.PathLike) -> None:
    """The output must be a file name in an existing folder."""
    out = Path(output)
    if out.is_dir():
        raise OutputError(f"output {out} is a folder; give a file name such as x.csv")
    if not out.parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {out.parent} does not exist")


def temp_prefix(output: str | os.PathLike) -> str:
    return f".{Path(output).name}."


def remove_stale_temps(output: str | os.PathLike) -> list[Path]:
    """Delete temporary files that killed runs left beside ``output``. Call it only while
    holding the output's lock: then no live run is writing one."""
    out = Path(output)
    removed = []
    try:
        candidates = list(out.parent.glob(temp_prefix(out) + "*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def csv_path(path: str) -> str:
    """A path for the CSV: file names that are not valid UTF-8 (kept by Python as
    surrogate escapes) get each invalid byte written as ``\\xNN``."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Row:
    """One CSV row: a prediction, or an error for a file that could not be used."""

    path: str
    prediction: int | None = None
    confidence: float | None = None
    error: str = ""
    needs_review: bool = True
    probabilities: Sequence[float] | None = None  # the ten digits' probabilities
    model_input: Any = None  # the 28x28 image the model saw, when asked for (not written)

    def cells(self, probabilities: bool = False) -> list[str]:
        path = csv_path(self.path)
        review = "true" if self.needs_review else "false"
        if self.prediction is None:
            cells = [path, "", "", review, self.error]
        else:
            cells = [path, str(self.prediction), f"{self.confidence:.6f}", review, self.error]
        if probabilities:
            if self.probabilities is None:
                cells += [""] * len(PROBABILITY_COLUMNS)
            else:
                cells += [f"{p:.6f}" for p in self.probabilities]
        return cells


def make_row(
    path: str, probabilities, has_digit: bool, threshold: float, model_input: Any = None
) -> Row:
    """The row of one image: its most likely digit and that digit's probability, flagged
    for review below ``threshold``; an image without a stroke gets the error ``NO_DIGIT``."""
    if not has_digit:
        return Row(path=path, error=NO_DIGIT, model_input=model_input)
    digit = int(probabilities.argmax())
    confidence = float(probabilities[digit])
    return Row(
        path=path,
        prediction=digit,
        confidence=confidence,
        needs_review=confidence < threshold,
        probabilities=probabilities,  # the model's row as is: formatted only if written
        model_input=model_input,
    )


class CsvRow:
    """A row read back from a CSV (``--incremental`` reuses them): written as it was read."""

    __slots__ = ("_cells",)
    _PATH, _REVIEW, _ERROR = (COLUMNS.index(c) for c in ("path", "needs_review", "error"))

    def __init__(self, cells: list[str]):
        self._cells = cells

    @property
    def path(self) -> str:
        return self._cells[self._PATH]

    @property
    def error(self) -> str:
        return self._cells[self._ERROR]

    @property
    def needs_review(self) -> bool:
        return self._cells[self._REVIEW] == "true"

    def cells(self, probabilities: bool = False) -> list[str]:
        return self._cells


def create_temp(target: Path) -> tuple[int, Path]:
    """A new, empty temporary file beside ``target`` (``.NAME.XXXX.tmp``), open for writing.

    Created with ``O_EXCL | O_NOFOLLOW`` and mode 0666, so the kernel applies the umask
    (no umask toggling, which would race with other threads); when ``target`` exists, the
    file takes its mode, so a replaced output keeps its permissions."""
    import secrets

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = target.parent / f"{temp_prefix(target)}{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise write_error(target, exc) from exc
        with contextlib.suppress(OSError):
            os.fchmod(fd, target.stat().st_mode & 0o777)
        return fd, tmp
    raise OutputError(f"cannot create a temporary file beside {target}")


class AtomicCsvWriter:
    """Write rows to a temporary file; :meth:`commit` publishes it, :meth:`abort` drops it."""

    def __init__(
        self, output: str | os.PathLike, probabilities: bool = False, extra: tuple[str, ...] = ()
    ) -> None:
        self.output = Path(output)
        self.with_probabilities = probabilities
        check_output_path(self.output)
        fd, self.tmp_path = create_temp(self.output)
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file, lineterminator="\n")
        self.rows_written = 0
        self._guarded(self._csv.writerow, header(probabilities, extra))

    def _guarded(self, write, *args) -> None:
        """A write; an OSError (disk full, ...) drops the temporary file and becomes an
        OutputError naming the output."""
        try:
            write(*args)
        except OSError as exc:
            self.abort()
            raise write_error(self.output, exc) from exc

    def write(self, rows: Sequence[Row | CsvRow], extra: list[list[str]] | None = None) -> None:
        """Write rows; ``extra`` gives each row's cells for the ``extra`` columns."""
        cells = (row.cells(self.with_probabilities) for row in rows)
        if extra is not None:
            cells = (c + e for c, e in zip(cells, extra, strict=True))
        self._guarded(self._csv.writerows, cells)
        self.rows_written += len(rows)

    def commit(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self.tmp_path, self.output)
        except OSError as exc:
            self.abort()
            raise write_error(self.output, exc) from exc

    def abort(self) -> None:
        """Drop the temporary file (even when closing it fails: the disk is full)."""
        try:
            if not self._file.closed:
                self._file.close()
        except OSError:
            pass
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> AtomicCsvWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


STDOUT = "-"  # ``--output -``: the CSV goes to standard output


class StreamCsvWriter:
    """``-o -``: rows to standard output as they come (each batch flushed), for pipelines;
    no temporary file and no lock. A reader that stops reading ends the run
    (:class:`OutputClosedError`, exit 141)."""

    def __init__(self, probabilities: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.output = STDOUT
        self.with_probabilities = probabilities
        stdout = sys.stdout.fileno()
        self._file = open(stdout, "w", encoding="utf-8", newline="", closefd=False)  # noqa: SIM115 - closed in __exit__
        self._csv = csv.writer(self._file, lineterminator="\n")
        self.rows_written = 0
        self._guarded(self._csv.writerow, header(probabilities, extra))

    def _guarded(self, write, *args) -> None:
        try:
            write(*args)
            self._file.flush()
        except BrokenPipeError as exc:
            _silence_stdout()
            raise OutputClosedError("the reader of standard output closed it; stopped") from exc
        except OSError as exc:
            raise write_error("standard output", exc) from exc

    def write(self, rows: Sequence[Row | CsvRow]) -> None:
        cells = [row.cells(self.with_probabilities) for row in rows]
        self._guarded(self._csv.writerows, cells)
        self.rows_written += len(rows)

    def __enter__(self) -> StreamCsvWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._guarded(self._file.flush)
        finally:
            with contextlib.suppress(OSError):
                self._file.close()


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null: nothing more to write there, and
    Python's own flush at exit must not complain."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@contextmanager
def atomic_text(path: str | os.PathLike) -> Iterator[TextIO]:
    """A text file that appears at ``path`` only when the ``with`` block completes:
    written to a temporary file beside it (:func:`create_temp`), fsynced and renamed
    over ``path``; dropped if the block fails."""
    target = Path(path)
    fd, tmp = create_temp(target)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(target, exc) from exc
        raise


def write_json_atomic(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically (:func:`atomic_text`)."""
    import json

    with atomic_text(path) as f:
        f.write(json.dumps(data, indent=2) + "\n")
