"""The ``--incremental`` sidecar: written for a published CSV, read back only when it
still describes that CSV with the same settings (no TensorFlow, no model)."""

from __future__ import annotations

import json
import os

from batchdigits.options import PredictOptions
from batchdigits.rows import Row
from batchdigits.run.state import load_previous, row_settings, state_path, write_state
from batchdigits.writers import AtomicCsvWriter

SETTINGS = row_settings("sha256:abc", 0.95, PredictOptions())


def publish(out, rows):
    with AtomicCsvWriter(out) as writer:
        writer.write(rows)
    stamps = [(row.path, 100 + i, 1000 + i) for i, row in enumerate(rows)]
    write_state(out, SETTINGS, stamps)


def test_round_trip(tmp_path):
    out = tmp_path / "p.csv"
    publish(out, [Row("a.png", 1, 0.99, needs_review=False), Row("b.png", error="bad")])
    previous = load_previous(out, SETTINGS)
    assert previous.usable
    rows = list(previous.rows())
    assert [(key, size, mtime) for key, _, size, mtime in rows] == [
        ("a.png", 100, 1000),
        ("b.png", 101, 1001),
    ]
    assert rows[0][1].cells() == ["a.png", "1", "0.990000", "false", ""]
    assert rows[1][1].error == "bad"
    meta = json.loads(state_path(out).read_text().splitlines()[0])
    assert meta["format"] == "batchdigits-state/1" and meta["settings"] == SETTINGS


def test_other_settings_or_a_touched_csv_reuse_nothing(tmp_path):
    out = tmp_path / "p.csv"
    publish(out, [Row("a.png", 1, 0.99)])
    assert load_previous(out, row_settings("sha256:other", 0.95, PredictOptions())).reason == (
        "model or settings changed"
    )
    with_probabilities = row_settings("sha256:abc", 0.95, PredictOptions(probabilities=True))
    assert not load_previous(out, with_probabilities).usable
    as_numbers = row_settings("sha256:abc", 0.95, PredictOptions(numbers=True))
    assert not load_previous(out, as_numbers).usable
    os.utime(out, ns=(1, 1))  # the CSV changed after the sidecar was written
    assert "changed since" in load_previous(out, SETTINGS).reason
    assert list(load_previous(out, SETTINGS).rows()) == []


def test_missing_or_garbled_sidecar(tmp_path):
    out = tmp_path / "p.csv"
    assert load_previous(out, SETTINGS).reason == "no previous state"
    publish(out, [Row("a.png", 1, 0.99)])
    state_path(out).write_bytes(b"\xff\xfe not json")
    assert "unreadable" in load_previous(out, SETTINGS).reason


def test_rows_stop_where_csv_and_sidecar_disagree(tmp_path):
    out = tmp_path / "p.csv"
    publish(out, [Row("a.png", 1, 0.99), Row("b.png", 2, 0.98), Row("c.png", 3, 0.97)])
    side = state_path(out)
    lines = side.read_text().splitlines()
    lines[2] = "zzz.png,1,1"  # the second row names another file
    side.write_text("\n".join(lines) + "\n")
    assert [key for key, *_ in load_previous(out, SETTINGS).rows()] == ["a.png"]
