"""The numbers benchmark's bounds (slow tier): a few hundred synthetic numbers of each
kind, composed from the MNIST *test* digits by the benchmark's own generator (the same
images as ``bench_numbers.py --count 200``), read by ``batchdigits predict --numbers``
as a user would. The bounds sit a few points below what the shipped reader measures
(docs: "Whole numbers"), so a change that reads worse fails here."""

from __future__ import annotations

import pytest
from bench_numbers import read_csv, score, write_set
from typer.testing import CliRunner

from batchdigits.cli.app import app

#: kind -> (lengths, the least share read exactly). Measured on these 200 numbers of
#: each kind, with the digit model's second opinion: gaps 98.5%, touching 96.5%,
#: overlapping 88.0%, separators 95.0%, loose (in a form's cell) 97.0%, gaps at 5 digits
#: 96.0% (the sequence reader alone: 98.0, 96.5, 88.0, 92.5, 95.5 and 94.5%).
BOUNDS = {
    "gaps": ((1, 8), 0.95),
    "touching": ((1, 8), 0.92),
    "overlapping": ((1, 8), 0.84),
    "separators": ((1, 8), 0.92),
    "loose": ((1, 8), 0.93),
    "five": (5, 0.93),
}
COUNT = 200


@pytest.fixture(scope="module")
def benchmark_readings(tmp_path_factory, mnist_full):
    digits = mnist_full
    root = tmp_path_factory.mktemp("numbers")
    truth = {}
    for name, (lengths, _) in BOUNDS.items():
        kind = "gaps" if name == "five" else name
        labels = write_set(root / name, kind, COUNT, lengths, digits)
        truth[name] = {f"{name}/{path}": label for path, label in labels.items()}
    out = root / "out.csv"
    result = CliRunner().invoke(app, ["predict", str(root), "--numbers", "-o", str(out), "-q"])
    # exit 3: a field where no digit is found is an error row, a partial run
    assert result.exit_code in (0, 3), result.output
    return read_csv(out), truth


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BOUNDS))
def test_numbers_of_each_kind_are_read_within_the_benchmarks_bounds(benchmark_readings, name):
    read, truth = benchmark_readings
    figures = score(read, truth[name])
    assert figures["images"] == COUNT
    assert figures["exact"] >= BOUNDS[name][1], figures


@pytest.mark.slow
def test_the_rows_not_flagged_are_at_least_99_percent_exact(benchmark_readings):
    read, truth = benchmark_readings
    every = {path: label for kind in truth.values() for path, label in kind.items()}
    figures = score(read, every)
    assert figures["unflagged"] >= 0.10, figures  # the review rule does not flag everything
    assert figures["unflagged_exact"] >= 0.99, figures
