"""The predictions CSV's format: its columns, one row per image file, and how a row is
made from the model's probabilities (the review rule). Every engine and front end makes
its rows here, so a file's row is the same whichever way it came."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

COLUMNS = ("path", "prediction", "confidence", "needs_review", "error")
PROBABILITY_COLUMNS = tuple(f"p{d}" for d in range(10))
#: ``--numbers --probabilities``: each digit's own confidence, in reading order, one cell
DIGIT_CONFIDENCE_COLUMNS = ("digit_confidences",)
NO_DIGIT = "no digit found"  # the error of an image without a stroke


def header(
    probabilities: bool = False, extra: tuple[str, ...] = (), numbers: bool = False
) -> tuple[str, ...]:
    if not probabilities:
        return COLUMNS + extra
    return COLUMNS + (DIGIT_CONFIDENCE_COLUMNS if numbers else PROBABILITY_COLUMNS) + extra


def headers() -> tuple[tuple[str, ...], ...]:
    """Every header this tool writes without extra columns (an output it may replace)."""
    return tuple(dict.fromkeys(header(p, (), n) for p in (False, True) for n in (False, True)))


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
    prediction: int | str | None = None  # a digit; with --numbers, a string of digits
    confidence: float | None = None
    error: str = ""
    needs_review: bool = True
    probabilities: Sequence[float] | None = None  # the ten digits' (a number: each digit's)
    model_input: Any = None  # the 28x28 image the model saw, when asked for (not written)
    number: bool = False  # a --numbers row: its probabilities are one cell

    def cells(self, probabilities: bool = False) -> list[str]:
        path = csv_path(self.path)
        review = "true" if self.needs_review else "false"
        if self.prediction is None:
            cells = [path, "", "", review, self.error]
        else:
            cells = [path, str(self.prediction), f"{self.confidence:.6f}", review, self.error]
        if probabilities and self.number:
            cells.append(" ".join(f"{p:.6f}" for p in self.probabilities or ()))
        elif probabilities:
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
