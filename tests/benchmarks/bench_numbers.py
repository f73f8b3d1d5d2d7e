"""The numbers benchmark: synthetic handwritten numbers from MNIST *test* digits
(``written_numbers.py``: apart, touching, overlapping, with separators, in a form's cell;
1-8 digits, both polarities) read by ``batchdigits predict --numbers`` as a user would
(the five-digit numbers once more with ``--digits 5``, as a user who knows the length
reads them), and by RapidOCR side by side (``--rapidocr PYTHON``: a Python with ``pip
install rapidocr onnxruntime``; its recogniser alone, and with its detector).

    python tests/benchmarks/bench_numbers.py --count 300 [--rapidocr /path/to/python]

Prints one table: exact-match accuracy, character error rate, the share of rows not
flagged for review and how many of them are exact, and images per second (whole
``predict`` processes, start-up included; RapidOCR's reading loop alone)."""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from written_numbers import KINDS, number_set

from batchdigits.evaluation.numbers import edit_distance
from batchdigits.training.data import load_mnist

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


KNOWN_LENGTH = "gaps, 5 digits, read with --digits 5"


def write_set(folder: Path, kind: str, count: int, lengths, mnist) -> dict[str, str]:
    """``count`` numbers of ``kind`` as PNGs in ``folder/kind``; their labels by path."""
    images, labels = number_set(mnist.x_test, mnist.y_test, kind, count, lengths)
    (folder / kind).mkdir(parents=True, exist_ok=True)
    truth = {}
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        rel = f"{kind}/{i:05d}.png"
        Image.fromarray(image).save(folder / rel)
        truth[rel] = label
    return truth


def score(read: dict[str, tuple[str, bool]], truth: dict[str, str]) -> dict:
    """Figures of readings ``path -> (digits, flagged)`` against the labels."""
    exact = np.array([read.get(p, ("", True))[0] == t for p, t in truth.items()])
    flagged = np.array([read.get(p, ("", True))[1] for p in truth])
    errors = sum(edit_distance(read.get(p, ("", True))[0], t) for p, t in truth.items())
    kept = ~flagged
    return {
        "images": len(truth),
        "exact": float(exact.mean()),
        "cer": errors / sum(len(t) for t in truth.values()),
        "unflagged": float(kept.mean()),
        "unflagged_exact": float(exact[kept].mean()) if kept.any() else float("nan"),
    }


def run_predict(folder: Path, output: Path, python: str = sys.executable, extra=()) -> float:
    """``batchdigits predict --numbers`` as a whole process; its seconds."""
    command = [
        python,
        "-m",
        "batchdigits",
        "predict",
        str(folder),
        "--numbers",
        "-o",
        str(output),
        "-q",
        *extra,
    ]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=output.parent)
    if done.returncode not in (0, 3):
        raise SystemExit(f"predict failed ({done.returncode}): {done.stderr}")
    return time.perf_counter() - t0


def read_csv(output: Path) -> dict[str, tuple[str, bool]]:
    with open(output, encoding="utf-8", newline="") as f:
        return {
            r["path"]: (r["prediction"], r["needs_review"] == "true") for r in csv.DictReader(f)
        }


def run_rapidocr(python: str, folder: Path, paths: list[str], detect: bool, work: Path):
    """RapidOCR's readings (never flagged: it has no calibrated review rule) and seconds."""
    listing = work / "list.txt"
    listing.write_text("\n".join(str(folder / p) for p in paths))
    out = work / ("rapid_det.csv" if detect else "rapid.csv")
    command = [python, str(HERE / "rapidocr_read.py"), str(listing), str(out)]
    done = subprocess.run(command + (["--det"] if detect else []), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"RapidOCR failed: {done.stderr[-2000:]}")
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    seconds = float(rows[-1][1])
    read = {os.path.relpath(r[0], folder): (r[1], False) for r in rows[1:-1]}
    return read, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300, help="numbers per kind")
    parser.add_argument("--data", help="MNIST folder")
    parser.add_argument("--rapidocr", metavar="PYTHON", help="a Python with rapidocr")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--model", help="a reader of numbers (default: the shipped one)")
    args = parser.parse_args()
    data = args.data or os.environ.get("BATCHDIGITS_MNIST") or REPO.parent / "shared" / "mnist"
    mnist = load_mnist(data)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = {}
        for kind in args.kinds.split(","):
            sets[kind] = write_set(work / "in", kind, args.count, (1, 8), mnist)
        sets["gaps, 5 digits"] = {
            "five/" + k.split("/", 1)[1]: v
            for k, v in write_set(work / "in5", "gaps", args.count, 5, mnist).items()
        }
        os.replace(work / "in5" / "gaps", work / "in" / "five")
        extra = ["--model", str(Path(args.model).resolve())] if args.model else []
        seconds = run_predict(work / "in", work / "out.csv", extra=extra)
        ours = read_csv(work / "out.csv")
        # the five-digit numbers again, as a user who knows the length reads them
        run_predict(work / "in" / "five", work / "five.csv", extra=[*extra, "--digits", "5"])
        known = {"five/" + k: v for k, v in read_csv(work / "five.csv").items()}
        total = sum(len(t) for t in sets.values())
        rate = total / seconds
        print(f"batchdigits predict --numbers: {total} images in {seconds:.1f} s ({rate:.0f}/s)")
        peers = {}
        if args.rapidocr:
            paths = [p for t in sets.values() for p in t]
            for detect in (False, True):
                read, sec = run_rapidocr(args.rapidocr, work / "in", paths, detect, work)
                name = "RapidOCR, detector + recogniser" if detect else "RapidOCR, recogniser"
                peers[name] = read
                print(f"{name}: {len(paths) / sec:.0f} images/s")
        sets[KNOWN_LENGTH] = sets["gaps, 5 digits"]
        print("| kind | reader | exact | CER | not flagged | exact when not flagged |")
        print("|---|---|---|---|---|---|")
        for kind, truth in sets.items():
            readers = {"batchdigits": ours, **peers}
            if kind == KNOWN_LENGTH:
                readers = {"batchdigits": known}
            for name, read in readers.items():
                f = score(read, truth)
                flag = (
                    f"{f['unflagged']:.1%} | {f['unflagged_exact']:.2%}"
                    if name == "batchdigits"
                    else "- | -"
                )
                print(f"| {kind} | {name} | {f['exact']:.1%} | {f['cer']:.1%} | {flag} |")


if __name__ == "__main__":
    main()
