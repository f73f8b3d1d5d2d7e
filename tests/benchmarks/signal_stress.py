"""Signals at any moment of a run, many times, with every core busy: the exit code must be
130 (SIGINT) or 143 (SIGTERM) every time, the previous CSV kept, nothing left behind.

Each round starts ``batchdigits predict`` on a folder of MNIST test digits (from the
committed fixture), waits a random time (from the start: the import, the model load, the
stream, the publishing all get hit) and sends the signal. Busy loops keep the cores
loaded meanwhile, which is when a stop lands in the odd windows.

Usage::

    python tests/benchmarks/signal_stress.py --rounds 50 [--files 3000] [--max-delay 12]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import EXE  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "mnist-test-2000.npz"
PREVIOUS = "path,prediction,confidence,needs_review,error\nold.png,1,0.990000,false,\n"
EXPECTED = {signal.SIGINT: 130, signal.SIGTERM: 143}
SIGNALS = {
    "INT": [signal.SIGINT],
    "TERM": [signal.SIGTERM],
    "both": [signal.SIGINT, signal.SIGTERM],
}


def burn(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


def make_folder(root: Path, n: int) -> None:
    digits = np.load(FIXTURE)["x_test"]
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(digits[i % len(digits)]).save(root / f"{i:05d}.png")


def one_round(exe: str, root: Path, work: Path, sig: int, delay: float, extra: list[str]) -> dict:
    out = work / "out.csv"
    out.write_text(PREVIOUS)
    proc = subprocess.Popen(
        [exe, "predict", str(root), "-o", str(out), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    finished_first = proc.poll() is not None
    if not finished_first:
        proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    kept = out.read_text() == PREVIOUS
    leftovers = sorted(p.name for p in work.iterdir() if p.name != "out.csv")
    return {
        "code": proc.returncode,
        "finished_first": finished_first,
        "kept": kept,
        "leftovers": leftovers,
        "stderr": stderr,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--min-delay", type=float, default=0.05)
    parser.add_argument("--max-delay", type=float, default=12.0)
    parser.add_argument("--signal", choices=("INT", "TERM", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra", default="--batch-size 16", help="more predict options")
    parser.add_argument("--exe", default=EXE, help="the batchdigits to run (another version)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    burners = [
        multiprocessing.Process(target=burn, args=(time.monotonic() + 36000,), daemon=True)
        for _ in range(os.cpu_count() or 1)
    ]
    for b in burners:
        b.start()
    outcomes: Counter = Counter()
    bad = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "digits"
            make_folder(root, args.files)
            for i in range(args.rounds):
                sig = rng.choice(SIGNALS[args.signal])
                delay = rng.uniform(args.min_delay, args.max_delay)
                work = Path(tmp) / f"round{i}"
                work.mkdir()
                r = one_round(args.exe, root, work, sig, delay, args.extra.split())
                ok = r["finished_first"] or (
                    r["code"] == EXPECTED[sig] and r["kept"] and not r["leftovers"]
                )
                outcomes[(signal.Signals(sig).name, r["code"], ok)] += 1
                print(f"round {i}: {signal.Signals(sig).name} at {delay:.2f} s -> {r['code']}")
                if not ok:
                    bad.append((i, sig, delay, r))
    finally:
        for b in burners:
            b.terminate()
    print(dict(outcomes))
    for i, sig, delay, r in bad:
        print(f"--- round {i}: {signal.Signals(sig).name} at {delay:.2f} s: exit {r['code']}")
        print(f"kept={r['kept']} leftovers={r['leftovers']}\n{r['stderr'][-3000:]}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
