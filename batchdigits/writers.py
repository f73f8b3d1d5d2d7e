"""Where a run's rows go: a CSV published atomically (:class:`AtomicCsvWriter`), or
standard output as they come (:class:`StreamCsvWriter`, ``-o -``); and the checks before
an output is replaced."""

from __future__ import annotations

import contextlib
import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from batchdigits.atomic import AtomicFile
from batchdigits.errors import ForeignOutputError, OutputClosedError, OutputError, write_error
from batchdigits.rows import CsvRow, Row, header


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


class AtomicCsvWriter:
    """Write rows to a temporary file; :meth:`commit` publishes it, :meth:`abort` drops it."""

    def __init__(
        self,
        output: str | os.PathLike,
        probabilities: bool = False,
        extra: tuple[str, ...] = (),
        numbers: bool = False,
    ) -> None:
        check_output_path(output)
        self.output = Path(output)
        self.with_probabilities = probabilities
        self._atomic = AtomicFile(self.output)
        self.tmp_path = self._atomic.tmp_path
        self._csv = csv.writer(self._atomic.file, lineterminator="\n")
        self.rows_written = 0
        self._atomic.guarded(self._csv.writerow, header(probabilities, extra, numbers))

    def write(self, rows: Sequence[Row | CsvRow], extra: list[list[str]] | None = None) -> None:
        """Write rows; ``extra`` gives each row's cells for the ``extra`` columns."""
        cells = (row.cells(self.with_probabilities) for row in rows)
        if extra is not None:
            cells = (c + e for c, e in zip(cells, extra, strict=True))
        self._atomic.guarded(self._csv.writerows, cells)
        self.rows_written += len(rows)

    def commit(self) -> None:
        self._atomic.commit()

    def abort(self) -> None:
        self._atomic.abort()

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

    def __init__(
        self, probabilities: bool = False, extra: tuple[str, ...] = (), numbers: bool = False
    ) -> None:
        self.output = STDOUT
        self.with_probabilities = probabilities
        stdout = sys.stdout.fileno()
        self._file = open(stdout, "w", encoding="utf-8", newline="", closefd=False)  # noqa: SIM115 - closed in __exit__
        self._csv = csv.writer(self._file, lineterminator="\n")
        self.rows_written = 0
        self._guarded(self._csv.writerow, header(probabilities, extra, numbers))

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
