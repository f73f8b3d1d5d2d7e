"""The incremental planner and merge: pure data in, data out (no TensorFlow, no files)."""

from __future__ import annotations

import sys

from batchdigits.rows import CsvRow, Row
from batchdigits.run.plan import make_plan, merge


def previous(*rows):
    """Previous rows as the sidecar gives them: (path, CsvRow, size, mtime)."""
    out = []
    for path, size, mtime, error in rows:
        cells = [path, "" if error else "3", "" if error else "0.990000", "false", error]
        out.append((path, CsvRow(cells), size, mtime))
    return out


def test_unchanged_files_reused_and_the_rest_sorted_by_why():
    keys = ["a.png", "b.png", "c.png", "d.png", "f.png"]
    stamps = [(10, 1), (20, 2), (30, 9), None, (50, 5)]
    old = previous(
        ("a.png", 10, 1, ""),  # same stamp: reused
        ("b.png", 20, 2, "cannot decode"),  # error last time: retried
        ("c.png", 30, 3, ""),  # other mtime: changed
        ("d.png", 40, 4, ""),  # unreadable now: changed, never reused
        ("e.png", 45, 4, ""),  # gone: removed
        ("g.png", 70, 7, ""),  # gone, after the last key: removed
    )
    plan = make_plan(keys, stamps, old)
    assert list(plan.reuse) == [1, 0, 0, 0, 0]
    assert (plan.reused, plan.new, plan.changed, plan.retried, plan.removed) == (1, 1, 2, 1, 2)
    assert plan.todo(keys) == ["b.png", "c.png", "d.png", "f.png"]


def test_same_size_new_mtime_is_changed():
    plan = make_plan(["x.png"], [(10, 2)], previous(("x.png", 10, 1, "")))
    assert (plan.reused, plan.changed) == (0, 1)


def test_nothing_previous_means_everything_is_new():
    plan = make_plan(["a", "b"], [(1, 1), (2, 2)], [])
    assert (plan.reused, plan.new, plan.removed) == (0, 2, 0)


def test_merge_keeps_listing_order_and_takes_fresh_rows_in_turn():
    keys = ["a.png", "b.png", "c.png", "d.png"]
    old = previous(("a.png", 1, 1, ""), ("b.png", 2, 2, ""), ("c.png", 3, 3, ""))
    plan = make_plan(keys, [(1, 1), (2, 9), (3, 3), (4, 4)], old)
    fresh = iter([Row("b.png", 5, 0.5, needs_review=True), Row("d.png", 6, 0.6)])
    merged = list(merge(keys, plan, old, fresh))
    assert [row.path for row in merged] == keys
    assert isinstance(merged[0], CsvRow) and merged[0].cells() == old[0][1].cells()
    assert merged[1].prediction == 5 and merged[3].prediction == 6
    assert isinstance(merged[2], CsvRow)


def test_csv_row_reads_columns_by_name():
    row = CsvRow(["p.png", "", "", "true", "no digit found"])
    assert (row.path, row.error, row.needs_review) == ("p.png", "no digit found", True)
    row = CsvRow(["q.png", "7", "0.999000", "false", ""])
    assert (row.error, row.needs_review) == ("", False)


def test_planner_and_row_format_need_no_tensorflow():
    import subprocess

    code = (
        "import sys\n"
        "import batchdigits.run.plan, batchdigits.run.state, batchdigits.run.lock\n"
        "import batchdigits.options\n"
        "import batchdigits.rows\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
