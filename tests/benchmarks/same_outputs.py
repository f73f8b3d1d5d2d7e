"""Record every output a refactoring must leave unchanged, for a before/after ``diff -r``.

Builds one mixed folder (PNG and JPEG digits in sub-folders 0-9, scan-like JPEGs, a
TIFF, an RGBA PNG, bad files, odd and non-UTF-8 names, a text file) from the committed
fixture of MNIST test digits, then runs the given Python's installed ``batchdigits``
on it as a user would and keeps what it wrote:

- ``predict`` (plain, ``--probabilities``, ``--batch-size 64``), ``--incremental``
  (a full run, then a run after adding, changing and deleting files, with its sidecar),
  ``--engine beam`` (plain and ``--probabilities``);
- ``evaluate --labels ... -o`` (its CSV, stdout and ``--report``'s metrics.json);
- ``POST /api/predict`` of every file to ``batchdigits serve`` (the JSON answers).

Usage::

    python tests/benchmarks/same_outputs.py OUT_DIR [--python /other/venv/bin/python]
    diff -r BEFORE_DIR AFTER_DIR
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "mnist-test-2000.npz"


def build_folder(root: Path) -> dict[str, int]:
    """The mixed folder; returns the labels of the files that have one."""
    from batchdigits.training.probes import encode, scan_like

    data = np.load(FIXTURE)
    x, y = data["x_test"], data["y_test"]
    rng = np.random.default_rng(5)
    labels = {}
    for i in range(300):
        d = int(y[i])
        rel = f"{d}/m{i:04d}.png" if i % 3 else f"{d}/m{i:04d}.jpg"
        (root / str(d)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(root / rel, **({"quality": 90} if i % 3 == 0 else {}))
        labels[rel] = d
    (root / "scans").mkdir()
    for i in range(300, 340):
        blob, ext = encode(scan_like(x[i], rng), rng)
        rel = f"scans/s{i}{ext}"
        (root / rel).write_bytes(blob)
        labels[rel] = int(y[i])
    Image.fromarray(255 - x[340]).save(root / "odd name, with comma.tif")
    labels["odd name, with comma.tif"] = int(y[340])
    rgba = np.dstack([np.zeros((28, 28, 3), np.uint8), x[341]])
    Image.fromarray(rgba, "RGBA").save(root / 'ünï "quoted".png')
    labels['ünï "quoted".png'] = int(y[341])
    Image.fromarray(x[342]).save(os.fsdecode(os.path.join(os.fsencode(root), b"bad\xffname.png")))
    buf = io.BytesIO()
    Image.fromarray(x[343]).save(buf, format="PNG")
    (root / "truncated.png").write_bytes(buf.getvalue()[:60])
    (root / "text.jpg").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("skipped")
    (root / "blank.png").write_bytes(_png(np.full((40, 40), 255, np.uint8)))
    return labels


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def run(python: str, args: list[str], cwd: Path, out: Path | None = None) -> None:
    result = subprocess.run(
        [python, "-m", "batchdigits", *args], cwd=cwd, capture_output=True, text=True
    )
    if out is not None:
        out.write_text(result.stdout)
    print(f"exit {result.returncode}: batchdigits {' '.join(args)}", file=sys.stderr)


def change_folder(root: Path) -> None:
    data = np.load(FIXTURE)
    Image.fromarray(data["x_test"][400]).save(root / "3" / "added.png")
    Image.fromarray(data["x_test"][401]).save(root / "7" / "m0001.png")  # other content
    (root / "scans" / next(p.name for p in sorted((root / "scans").iterdir()))).unlink()


def api_answers(python: str, root: Path, cwd: Path) -> dict[str, object]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [python, "-m", "batchdigits", "serve", "--port", str(port)],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        answers = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            request = urllib.request.Request(
                base + "/api/predict",
                data=path.read_bytes(),
                headers={"Content-Type": "application/octet-stream"},
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    answer = (response.status, json.loads(response.read()))
            except urllib.error.HTTPError as exc:
                answer = (exc.code, json.loads(exc.read()))
            answers[os.fsencode(path.relative_to(root)).decode("utf-8", "backslashreplace")] = (
                answer
            )
        return answers
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "mixed"
        root.mkdir()
        labels = build_folder(root)
        with open(work / "labels.csv", "w", encoding="utf-8") as f:
            f.write("path,label\n" + "".join(f'"{p}",{d}\n' for p, d in sorted(labels.items())))
        py = args.python
        run(py, ["predict", str(root), "-o", str(out / "plain.csv")], work)
        run(py, ["predict", str(root), "-o", str(out / "probs.csv"), "--probabilities"], work)
        run(py, ["predict", str(root), "-o", str(out / "batch64.csv"), "--batch-size", "64"], work)
        run(py, ["predict", str(root), "-o", str(out / "beam.csv"), "--engine", "beam"], work)
        beam_probs = ["--engine", "beam", "--probabilities"]
        run(py, ["predict", str(root), "-o", str(out / "beam-probs.csv"), *beam_probs], work)
        eval_args = ["evaluate", str(root), "--labels", str(work / "labels.csv")]
        eval_args += ["-o", str(out / "evaluate.csv"), "--report", str(work / "report")]
        run(py, eval_args, work, out / "evaluate-stdout.txt")
        shutil.copy(work / "report" / "metrics.json", out / "evaluate-metrics.json")
        (out / "api.json").write_text(json.dumps(api_answers(py, root, work), indent=1))
        inc = ["predict", str(root), "-o", str(work / "inc.csv"), "--incremental"]
        run(py, inc, work)
        shutil.copy(work / "inc.csv", out / "incremental-1.csv")
        change_folder(root)
        run(py, inc, work)
        shutil.copy(work / "inc.csv", out / "incremental-2.csv")
        state = (work / "inc.csv.state").read_text().splitlines()
        meta = json.loads(state[0])
        meta.pop("csv")  # the CSV's own size and mtime: the mtime differs run to run
        # each file's mtime differs between two builds of the folder: path and size only
        stamps = [line.rsplit(",", 1)[0] for line in state[1:]]
        (out / "incremental-2.state").write_text("\n".join([json.dumps(meta), *stamps]))


if __name__ == "__main__":
    main()
