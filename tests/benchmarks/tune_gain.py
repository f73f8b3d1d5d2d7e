"""How much ``tune`` helps on a collection the model has not seen (a script, not a test):

    python tests/benchmarks/tune_gain.py DIR LABELS.csv [--per-digit 30 100] [--seed 1]

For each ``--per-digit`` count k, picks k labelled images per digit (seeded) as the
user's labels, runs ``batchdigits tune`` on them, and measures the shipped model and the
tuned one on *the rest* of the collection with ``evaluate_folder``: error before and
after, the relative reduction, MNIST test accuracy of the tuned model (from its card)
and the tune time. ``../shared/dev-digits`` is such a collection (its README allows
fine-tuning experiments measured on the rest; such a model is never the shipped one).
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import EXE  # noqa: E402

from batchdigits.evaluation.evaluate import evaluate_folder
from batchdigits.evaluation.labels import digit_labels, read_labels
from batchdigits.model.store import read_card
from batchdigits.options import PredictOptions


def split(labels: dict[str, int], per_digit: int, seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    chosen = set()
    for digit in range(10):
        paths = sorted(p for p, d in labels.items() if d == digit)
        chosen.update(rng.permutation(paths)[:per_digit].tolist())
    picked = {p: d for p, d in labels.items() if p in chosen}
    rest = {p: d for p, d in labels.items() if p not in chosen}
    return picked, rest


def write_labels(path: Path, labels: dict[str, int]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "label"])
        writer.writerows(sorted(labels.items()))
    return path


def error(folder: str, labels_csv: Path, model: Path | None) -> float:
    result = evaluate_folder(folder, labels_csv, PredictOptions(model=model))
    return 1.0 - result.metrics["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("labels", type=Path)
    parser.add_argument("--per-digit", type=int, nargs="+", default=[30, 100])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    labels = digit_labels(read_labels(args.labels))
    exe = EXE
    print("| labels | rest | error before | error after | reduction | MNIST after | tune s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.per_digit:
            picked, rest = split(labels, k, args.seed)
            mine = write_labels(Path(tmp) / f"mine{k}.csv", picked)
            rest_csv = write_labels(Path(tmp) / f"rest{k}.csv", rest)
            model = Path(tmp) / f"tuned{k}.keras"
            t0 = time.perf_counter()
            tuned = [exe, "tune", args.folder, "--labels", str(mine), "-o", str(model)]
            subprocess.run(tuned + ["--seed", str(args.seed)], check=True)
            seconds = time.perf_counter() - t0
            before, after = error(args.folder, rest_csv, None), error(args.folder, rest_csv, model)
            mnist = read_card(model).get("mnist_test_accuracy")
            print(
                f"| {len(picked)} | {len(rest)} | {before:.2%} | {after:.2%} | "
                f"{1 - after / before:.0%} | {mnist:.2%} | {seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
