"""``batchdigits review``: look at the rows the model doubts and correct them in the browser.

A :class:`ReviewSession` holds one predictions CSV, the folder its paths are relative to,
and the labels given so far; every label is saved at once, atomically, to a ``path,label``
CSV (``x`` = not a digit) that ``evaluate`` and ``tune`` read as they are, and that a
later session resumes from. With ``numbers`` (a CSV of ``predict --numbers``) the
predictions and labels are strings of digits, leading zeros kept. The Flask routes (same
machinery as ``serve``) only ever serve files that are rows of the CSV, from inside the
images folder.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from batchdigits.errors import InputNotFoundError, LabelError
from batchdigits.evaluation.labels import label_of, read_labels, write_labels
from batchdigits.imaging.files import is_safe_relative
from batchdigits.rows import COLUMNS


def labels_path_for(predictions: str | os.PathLike) -> Path:
    """``PREDICTIONS.labels.csv`` beside the predictions."""
    p = Path(predictions)
    return p.with_name(p.stem + ".labels.csv")


@dataclass
class ReviewSession:
    predictions: Path
    images: Path
    labels_path: Path
    rows: list[dict] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    numbers: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _index: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {r["path"]: r for r in self.rows}

    @classmethod
    def open(
        cls, predictions, images=None, labels_path=None, numbers: bool = False
    ) -> ReviewSession:
        predictions = Path(predictions)
        labels_path = Path(labels_path) if labels_path else labels_path_for(predictions)
        rows = _read_rows(predictions, numbers)
        return cls(
            predictions=predictions,
            images=Path(images) if images is not None else predictions.parent,
            labels_path=labels_path,
            rows=rows,
            labels=_earlier_labels(labels_path, {r["path"] for r in rows}, numbers),
            numbers=numbers,
        )

    def queue(self, which: str = "review", digit: int | str | None = None) -> list[dict]:
        """Rows to look at, lowest confidence first (errors before any prediction):
        ``review`` (flagged), ``all``, ``errors``, or ``digit`` (predicted ``digit``; with
        ``numbers``, that string of digits)."""
        keep = {
            "review": lambda r: r["needs_review"],
            "all": lambda r: True,
            "errors": lambda r: bool(r["error"]),
            "digit": lambda r: r["prediction"] == digit,
        }[which]
        rows = [dict(r, label=self.labels.get(r["path"])) for r in self.rows if keep(r)]
        return sorted(rows, key=lambda r: r["confidence"] if r["confidence"] is not None else -1)

    def row(self, path: str) -> dict | None:
        return self._index.get(path)

    def image_file(self, path: str) -> Path | None:
        """The file of a row, only if it is a row and lies inside the images folder."""
        if self.row(path) is None or not is_safe_relative(path):
            return None
        full = (self.images / path).resolve()
        root = self.images.resolve()
        return full if full.is_relative_to(root) and full.is_file() else None

    def set_label(self, path: str, label: str) -> int:
        """Save one label (``0``-``9`` or ``x``; with ``numbers`` a string of digits, its
        separators dropped, or ``x``; ``""`` removes it); returns how many."""
        label = label_of(label, self.numbers) if label != "" else label
        if self.row(path) is None:
            raise InputNotFoundError(f"{path!r} is not a row of {self.predictions}")
        with self._lock:
            if label:
                self.labels[path] = label
            else:
                self.labels.pop(path, None)
            write_labels(self.labels_path, self.labels)
            return len(self.labels)


def _read_rows(predictions: Path, numbers: bool) -> list[dict]:
    import pandas as pd

    try:
        table = pd.read_csv(predictions, dtype=str, keep_default_na=False, encoding="utf-8")
    except OSError as exc:
        raise InputNotFoundError(f"cannot read {predictions}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        raise LabelError(f"{predictions}: not a readable CSV ({exc})") from exc
    if tuple(table.columns[: len(COLUMNS)]) != COLUMNS:
        raise LabelError(f"{predictions} is not a batchdigits predictions CSV")
    if not numbers and (table["prediction"].str.len() > 1).any():
        raise LabelError(
            f"{predictions} holds numbers (written by predict --numbers): review it with "
            "review --numbers"
        )
    return [
        {
            "path": path,
            "prediction": (prediction if numbers else int(prediction)) if prediction else None,
            "confidence": float(confidence) if confidence else None,
            "needs_review": needs_review == "true",
            "error": error,
        }
        for path, prediction, confidence, needs_review, error in table[list(COLUMNS)].itertuples(
            index=False
        )
    ]


def _earlier_labels(path: Path, known: set[str], numbers: bool) -> dict[str, str]:
    """The labels of an earlier session (rows no longer in the CSV are kept out)."""
    if not path.exists():
        return {}
    return {p: label for p, label in read_labels(path, numbers).items() if p in known}
