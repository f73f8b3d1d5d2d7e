"""The CSV writer: header, row format, quoting, and publish-or-nothing."""

from __future__ import annotations

import csv
import os

import pytest

from batchdigits.errors import OutputError
from batchdigits.rows import COLUMNS, Row
from batchdigits.writers import AtomicCsvWriter


def test_rows_and_quoting(tmp_path):
    out = tmp_path / "o.csv"
    with AtomicCsvWriter(out) as w:
        w.write(
            [
                Row("a, b.png", 3, 0.12345678, needs_review=False),
                Row('q"uote.png', error="cannot decode image"),
            ]
        )
    assert out.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    rows = list(csv.reader(out.open(encoding="utf-8", newline="")))
    assert rows[1] == ["a, b.png", "3", "0.123457", "false", ""]
    assert rows[2] == ['q"uote.png', "", "", "true", "cannot decode image"]


def test_nothing_published_until_commit_and_abort_cleans_up(tmp_path):
    out = tmp_path / "o.csv"
    out.write_text("old\n")
    w = AtomicCsvWriter(out)
    w.write([Row("a.png", 1, 0.5)])
    assert out.read_text() == "old\n"  # a reader still sees the previous file
    w.abort()
    assert out.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["o.csv"]


def test_published_file_has_a_normal_mode(tmp_path):
    out = tmp_path / "o.csv"
    with AtomicCsvWriter(out) as w:
        w.write([])
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_output_in_a_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        AtomicCsvWriter(tmp_path / "no" / "o.csv")
