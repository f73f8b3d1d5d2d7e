"""What ``--incremental`` needs to reuse a previous run's rows: a sidecar file.

``OUTPUT.state`` sits next to the CSV, so the CSV itself keeps exactly the columns of a
full run. Its first line is JSON: the format, the settings that shape a row (model
fingerprint, review threshold, probability columns) and the size and modification time
of the CSV it describes. Then one CSV line per file: ``path,size,mtime_ns``.

It is written after the CSV has been published. If the run dies in between, the CSV's
size or mtime no longer match the sidecar, so the next run ignores the sidecar and
predicts everything: a stale sidecar can cost time, never a wrong row.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from batchdigits.atomic import atomic_text
from batchdigits.rows import CsvRow, header

FORMAT = "batchdigits-state/1"


def state_path(output: str | os.PathLike) -> Path:
    p = Path(output)
    return p.with_name(p.name + ".state")


@dataclass(frozen=True)
class Previous:
    """A previous run's rows that its sidecar vouches for, read as a stream (in the
    CSV's order, which is the listing's) as often as needed: never all in memory."""

    output: str = ""
    reason: str = ""  # why nothing can be reused; empty when the rows can be

    @property
    def usable(self) -> bool:
        return not self.reason

    def rows(self) -> Iterator[tuple[str, CsvRow, int, int]]:
        """``(csv path, row, size, mtime_ns)`` per row; stops early (the rest then
        counts as new: predicted again, never wrong) if CSV and sidecar disagree."""
        if not self.usable:
            return
        with (
            open(state_path(self.output), encoding="utf-8", newline="") as side,
            open(self.output, encoding="utf-8", newline="") as table,
        ):
            side.readline()  # the JSON header
            reader = csv.reader(table)
            next(reader, None)  # the CSV header
            try:
                for stamp, cells in zip(csv.reader(side), reader, strict=False):
                    row = CsvRow(cells)
                    if not cells or stamp[0] != row.path:
                        return
                    yield row.path, row, int(stamp[1]), int(stamp[2])
            except (OSError, ValueError, IndexError, UnicodeDecodeError, csv.Error):
                return


def file_stamp(path: str, dir_fd: int | None = None) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of a file (``path`` relative to ``dir_fd`` if given), or None."""
    try:
        st = os.stat(path, dir_fd=dir_fd)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def row_settings(fingerprint: str, threshold: float, options) -> dict:
    """What shapes a row, as the sidecar records it: rows made otherwise are not reused.
    (The numbers' settings are recorded only with ``--numbers``, so a single-digit
    sidecar is the same as before.)"""
    settings = {
        "model": fingerprint,
        "review_threshold": threshold,
        "probabilities": options.probabilities,
    }
    if options.numbers:
        settings["numbers"] = list(options.lengths)
    return settings


def load_previous(output: str | os.PathLike, settings: dict) -> Previous:
    """The previous rows of ``output``, if its sidecar matches the CSV and was made with
    the same ``settings``; else a :class:`Previous` saying why not."""
    sidecar = state_path(output)
    try:
        with open(sidecar, encoding="utf-8", newline="") as f:
            meta = json.loads(f.readline())
    except FileNotFoundError:
        return Previous(reason="no previous state")
    except (OSError, ValueError, UnicodeDecodeError):
        return Previous(reason=f"{sidecar} is unreadable")
    if meta.get("format") != FORMAT:
        return Previous(reason=f"{sidecar} has an unknown format")
    if meta.get("settings") != settings:
        return Previous(reason="model or settings changed")
    if list(file_stamp(os.fspath(output)) or ()) != meta.get("csv"):
        return Previous(reason=f"{output} changed since the state was written")
    try:
        with open(output, encoding="utf-8", newline="") as f:
            columns = header(settings["probabilities"], numbers="numbers" in settings)
            if tuple(next(csv.reader(f), ())) != columns:
                return Previous(reason=f"{output} has other columns")
    except (OSError, UnicodeDecodeError, csv.Error):
        return Previous(reason=f"{output} is unreadable")
    return Previous(os.fspath(output))


def write_state(output: str | os.PathLike, settings: dict, stamps) -> None:
    """Write the sidecar for the just-published ``output`` (atomically).
    ``stamps``: ``(csv path, size, mtime_ns)`` for each row."""
    sidecar = state_path(output)
    meta = {"format": FORMAT, "settings": settings, "csv": list(file_stamp(os.fspath(output)))}
    with atomic_text(sidecar) as f:
        f.write(json.dumps(meta) + "\n")
        csv.writer(f, lineterminator="\n").writerows(stamps)
