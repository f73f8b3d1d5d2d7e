"""What several test files share: the installed console script, a free loopback port,
a server process that is up, peak memory, and a number written with MNIST test digits."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

#: The installed ``batchdigits`` console script of this environment.
EXE = shutil.which("batchdigits", path=str(Path(sys.executable).parent)) or str(
    Path(sys.executable).with_name("batchdigits")
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: list[str], port: int, **popen) -> subprocess.Popen:
    """Start a ``batchdigits serve``/``review`` process and wait (up to 60 s) until its
    ``/healthz`` answers on ``port``."""
    proc = subprocess.Popen(args, **popen)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server on port {port} did not start (exit {proc.poll()})")


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory (MiB) of a running process, from the kernel."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def run_peak_rss_mib(args: list[str]) -> float:
    """Run a command to its end (it must succeed); its peak resident memory (MiB)."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss / 1024


def number_image(mnist, indices, gap: int = 6, dark_ink: bool = True) -> tuple[np.ndarray, str]:
    """MNIST test digits side by side, ``gap`` pixels apart, on paper: the image, label."""
    digits = [mnist.x_test[i][:, 4:24] for i in indices]
    spacer = np.zeros((28, gap), np.uint8)
    parts = [spacer]
    for d in digits:
        parts += [d, spacer]
    ink = np.pad(np.concatenate(parts, 1), ((6, 6), (0, 0)))
    image = 255 - ink if dark_ink else ink
    return image.astype(np.uint8), "".join(str(int(mnist.y_test[i])) for i in indices)


def model_probabilities(model_file, x: np.ndarray) -> np.ndarray:
    """What a model file says for the 28x28 inputs ``x``, computed plainly: its one
    network's probabilities, or, for a cascade, the first look's where it is sure (its
    confidence at least the card's ``second_opinion.consulted_below``) and the strong
    network's elsewhere."""
    from batchdigits.model.network import networks
    from batchdigits.model.store import load_model, read_card

    first, second = networks(load_model(model_file))
    probabilities = np.asarray(first(x, training=False))
    if second is None:
        return probabilities
    opinion = read_card(model_file)["second_opinion"]
    assert opinion["answers"] == "second", "a pair whose second answers alone: a cascade"
    doubtful = probabilities.max(1) < opinion["consulted_below"]
    return np.where(doubtful[:, None], np.asarray(second(x, training=False)), probabilities)
