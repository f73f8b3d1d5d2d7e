"""The stress benchmark: how ``batchdigits predict`` reads the files real users have.

    python tests/benchmarks/stress.py [--images 1000] [--model M.keras] [--data MNIST_DIR]

Generates every variant of ``variants.py`` (beside this script) (tight crops, 1-bit, tiny, edge
bands, salt-and-pepper, fog, outlines, crossing lines, photo backgrounds; half of each
dark ink on light paper, half light on dark) from the last ``--images`` MNIST *test*
digits, writes them as PNG files, runs ``batchdigits predict`` on the folder as a user
would (a subprocess), and prints one table: variant, images, accuracy, "no digit" rate,
share flagged for review, and the coverage and accuracy of the rows not flagged. It also
scores the development set (``../shared/dev-digits``) when it exists. MNIST comes from
``--data``, ``$BATCHDIGITS_MNIST`` or ``../shared/mnist``. ``--json`` also writes the
figures to a file.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from variants import DEFAULT_TARGET, TARGETS, VARIANTS, variant_set

from batchdigits.evaluation.labels import digit_labels, read_labels
from batchdigits.training.data import load_mnist

REPO = Path(__file__).resolve().parents[2]
DEV = REPO.parent / "shared" / "dev-digits"


def write_stress_folder(root: Path, digits: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """Every variant of ``digits`` as PNG files under ``root/VARIANT/``; returns the
    labels by relative path."""
    truth = {}
    for name in VARIANTS:
        (root / name).mkdir(parents=True, exist_ok=True)
        images, _ = variant_set(name, digits)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            rel = f"{name}/{i:05d}.png"
            Image.fromarray(image).save(root / rel, compress_level=1)
            truth[rel] = int(label)
    return truth


def run_predict(
    folder: Path, output: Path, model: str | None = None, python: str = sys.executable
) -> None:
    # ``python -m batchdigits``: the package that interpreter imports (another virtual
    # environment's, to compare two commits side by side)
    command = [python, "-m", "batchdigits", "predict", str(folder), "-o", str(output), "--quiet"]
    if model:
        command += ["--model", model]
    # run from the output's folder: ``-m`` puts the working directory first on the path
    done = subprocess.run(command, capture_output=True, text=True, cwd=output.parent)
    if done.returncode not in (0, 3):
        raise SystemExit(f"predict failed ({done.returncode}): {done.stderr}")


def score(output: Path, truth: dict[str, int], group=lambda path: path.split("/")[0]):
    """Figures per group of rows (by default the first folder of the path)."""
    groups: dict[str, list[tuple[bool, bool, bool]]] = {}
    with open(output, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["path"] not in truth:
                continue
            predicted = row["prediction"] != ""
            right = predicted and int(row["prediction"]) == truth[row["path"]]
            flagged = row["needs_review"] == "true" or not predicted
            no_digit = row["error"] == "no digit found"
            groups.setdefault(group(row["path"]), []).append((right, no_digit, flagged))
    figures = {}
    for name, rows in groups.items():
        right, no_digit, flagged = (np.array(column) for column in zip(*rows, strict=True))
        kept = ~flagged
        figures[name] = {
            "images": len(rows),
            "accuracy": float(right.mean()),
            "no_digit": float(no_digit.mean()),
            "flagged": float(flagged.mean()),
            "unflagged_accuracy": float(right[kept].mean()) if kept.any() else float("nan"),
        }
    return figures


def dev_truth(folder: Path = DEV) -> dict[str, int]:
    return digit_labels(read_labels(folder / "semeion.labels.csv"))


def table(figures: dict[str, dict]) -> str:
    lines = [
        "| variant | images | right | target | no digit | flagged | right when not flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in figures.items():
        target = TARGETS.get(name, DEFAULT_TARGET) if name in VARIANTS else 0.94
        lines.append(
            f"| {name} | {f['images']} | {f['accuracy']:.2%} | {target:.0%} | "
            f"{f['no_digit']:.2%} | {f['flagged']:.2%} | {f['unflagged_accuracy']:.2%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="digits per variant")
    parser.add_argument("--model", default=None, help="a .keras model (default: the shipped one)")
    parser.add_argument("--data", default=None, help="MNIST folder")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument(
        "--python", default=sys.executable, help="the Python whose batchdigits predicts"
    )
    args = parser.parse_args()
    data = args.data or os.environ.get("BATCHDIGITS_MNIST") or REPO.parent / "shared" / "mnist"
    mnist = load_mnist(data)
    digits, labels = mnist.x_test[-args.images :], mnist.y_test[-args.images :]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "stress"
        truth = write_stress_folder(root, digits, labels)
        run_predict(root, Path(tmp) / "stress.csv", args.model, args.python)
        figures = score(Path(tmp) / "stress.csv", truth)
        figures = {name: figures[name] for name in VARIANTS}
        if DEV.exists():
            run_predict(DEV / "semeion", Path(tmp) / "dev.csv", args.model, args.python)
            dev = score(Path(tmp) / "dev.csv", dev_truth(), group=lambda path: "dev-digits")
            figures["dev-digits (semeion)"] = dev["dev-digits"]
    print(table(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
