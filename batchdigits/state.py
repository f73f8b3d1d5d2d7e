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
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .model import default_model_path
from .output import atomic_text, header

FORMAT = "batchdigits-state/1"


def state_path(output: str | os.PathLike) -> Path:
    p = Path(output)
    return p.with_name(p.name + ".state")


def model_fingerprint(model: str | os.PathLike | None) -> str:
    """``sha256:...`` of the model file's bytes (the shipped model when ``None``)."""
    digest = hashlib.sha256()
    with open(model if model is not None else default_model_path(), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True)
class Previous:
    """A previous run's rows (formatted cells) with the size and mtime of their files."""

    rows: dict[str, tuple[list[str], int, int]]
    reason: str = ""  # why nothing can be reused, when ``rows`` is empty


def file_stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def load_previous(output: str | os.PathLike, settings: dict) -> Previous:
    """The rows of ``output`` that its sidecar vouches for, if the sidecar matches the
    CSV and was made with the same ``settings``; else no rows and the reason."""
    sidecar = state_path(output)
    try:
        with open(sidecar, encoding="utf-8", newline="") as f:
            meta = json.loads(f.readline())
            stamps = {r[0]: (int(r[1]), int(r[2])) for r in csv.reader(f)}
    except FileNotFoundError:
        return Previous({}, "no previous state")
    except (OSError, ValueError, IndexError, csv.Error):
        return Previous({}, f"{sidecar} is unreadable")
    if meta.get("format") != FORMAT:
        return Previous({}, f"{sidecar} has an unknown format")
    if meta.get("settings") != settings:
        return Previous({}, "model or settings changed")
    if list(file_stamp(os.fspath(output)) or ()) != meta.get("csv"):
        return Previous({}, f"{output} changed since the state was written")
    rows: dict[str, tuple[list[str], int, int]] = {}
    try:
        with open(output, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            if tuple(next(reader, ())) != header(settings["probabilities"]):
                return Previous({}, f"{output} has other columns")
            for cells in reader:
                if cells and cells[0] in stamps:
                    rows[cells[0]] = (cells, *stamps[cells[0]])
    except (OSError, UnicodeDecodeError, csv.Error):
        return Previous({}, f"{output} is unreadable")
    return Previous(rows)


def write_state(output: str | os.PathLike, settings: dict, stamps) -> None:
    """Write the sidecar for the just-published ``output`` (atomically).
    ``stamps``: ``(csv path, size, mtime_ns)`` for each row."""
    sidecar = state_path(output)
    meta = {"format": FORMAT, "settings": settings, "csv": list(file_stamp(os.fspath(output)))}
    with atomic_text(sidecar) as f:
        f.write(json.dumps(meta) + "\n")
        csv.writer(f, lineterminator="\n").writerows(stamps)
