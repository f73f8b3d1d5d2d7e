"""Labels files: the one reader and writer of the ``path,label`` CSV that ``review``
writes and ``evaluate`` and ``tune`` read, and labels taken from folder names.

A label is a string: ``"0"`` ... ``"9"``, or ``"x"`` for an image that is not a digit.
Each caller decides what ``x`` means to it (``evaluate`` has no digit to score,
``tune`` teaches the model to doubt such images); there is no sentinel number.
"""

from __future__ import annotations

import os

from batchdigits.atomic import atomic_text
from batchdigits.errors import InputNotFoundError, LabelError
from batchdigits.imaging.files import Listing

DIGITS = tuple("0123456789")
NOT_A_DIGIT = "x"
LABELS = frozenset({*DIGITS, NOT_A_DIGIT})
COLUMNS = ("path", "label")
SEPARATORS = r"[.,\-\s]"  # in a number's label: not digits, dropped
NUMBER = r"[0-9]+"  # a number's label, once its separators are dropped


def label_of(value: str, numbers: bool = False) -> str:
    """One label as typed -> as saved (lower case; a number's separators dropped), or
    :class:`LabelError`: the rule :func:`read_labels` applies to every line."""
    import re

    label = value.strip().lower()
    if numbers:
        label = re.sub(SEPARATORS, "", label)
        if re.fullmatch(NUMBER, label) or label == NOT_A_DIGIT:
            return label
        raise LabelError(f"label {value!r} is not a number (digits 0-9) or x (not a number)")
    if label in LABELS:
        return label
    raise LabelError(f"label {value!r} is not a digit 0-9 or x (not a digit)")


def read_labels(path: str | os.PathLike, numbers: bool = False) -> dict[str, str]:
    """``{path: label}`` from a CSV with (at least) the columns ``path,label``; a label
    that is not 0-9 or x is an error naming its line. Paths are kept as written (leading
    zeros, spaces and commas included). With ``numbers`` a label is a string of digits
    (leading zeros kept; separators ``. , -`` and spaces dropped) or x."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"cannot read labels {path}: file not found") from exc
    except OSError as exc:
        raise InputNotFoundError(f"cannot read labels {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        raise LabelError(f"{path}: not a readable CSV ({exc})") from exc
    if not set(COLUMNS) <= set(table.columns):
        raise LabelError(f"{path}: needs a header with the columns path,label")
    labels = table["label"].str.strip().str.lower()
    if numbers:
        labels = labels.str.replace(SEPARATORS, "", regex=True)
        bad = ~(labels.str.fullmatch(NUMBER) | (labels == NOT_A_DIGIT))
    else:
        bad = ~labels.isin(LABELS)
    if bad.any():
        line = int(bad.to_numpy().argmax()) + 2  # the header is line 1
        value = table["label"].iloc[line - 2]
        what = "a number (digits 0-9)" if numbers else "a digit 0-9"
        raise LabelError(f"{path}, line {line}: label {value!r} is not {what} or x")
    return dict(zip(table["path"], labels, strict=True))


def write_labels(path: str | os.PathLike, labels: dict[str, str]) -> None:
    """Write ``labels`` sorted by path, atomically (a reader never sees half a file)."""
    import csv

    with atomic_text(path) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(sorted(labels.items()))


def folder_labels(listing: Listing) -> dict[str, str]:
    """Labels from the first path component, when it is a folder named 0-9."""
    labels = {}
    for path in listing.paths:
        head, _, rest = path.partition("/")
        if rest and head in DIGITS:
            labels[path] = head
    return labels


def number_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels that are numbers (``x`` rows left out), as strings of digits."""
    return {path: label for path, label in labels.items() if label != NOT_A_DIGIT}


def digit_labels(labels: dict[str, str]) -> dict[str, int]:
    """The labels that are digits, as numbers (``x`` rows left out)."""
    return {path: int(label) for path, label in labels.items() if label != NOT_A_DIGIT}
