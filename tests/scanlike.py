"""Scan-like digit files made from MNIST test digits, for tests and measurements (the
images themselves come from :mod:`batchdigits.training.probes`)."""

from __future__ import annotations

import numpy as np

from batchdigits.training.probes import encode, scan_like


def write_scan_set(folder, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Write one scan per digit into ``folder``; return {file name: label}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = {}
    for i, (digit, label) in enumerate(zip(images, labels, strict=True)):
        data, ext = encode(scan_like(digit, rng), rng)
        name = f"{i:05d}{ext}"
        (folder / name).write_bytes(data)
        truth[name] = int(label)
    return truth
