"""Shared fixtures: MNIST from ../shared/mnist (or $BATCHDIGITS_MNIST), a tiny trained
model, and generated folders of digit images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def mnist_source() -> Path | None:
    env = os.environ.get("BATCHDIGITS_MNIST")
    for candidate in (env, REPO.parent / "shared" / "mnist"):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    path = mnist_source()
    if path is None:
        pytest.skip("no MNIST source: set BATCHDIGITS_MNIST or put the files in ../shared/mnist")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_path):
    from batchdigits.data import load_mnist

    return load_mnist(mnist_path)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, mnist_path) -> Path:
    """A small model trained for one epoch on 2,000 images: fast, far better than chance."""
    from batchdigits.train import TrainConfig, train

    out = tmp_path_factory.mktemp("model") / "tiny.keras"
    train(out, mnist_path, TrainConfig(epochs=1, limit=2000, batch_size=32))
    return out


def save_digit(path: Path, pixels: np.ndarray, **save_args) -> Path:
    """Save a 28x28 uint8 MNIST digit (ink bright) as an image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **save_args)
    return path


@pytest.fixture
def digit_folder(tmp_path, mnist):
    """A folder with PNG and JPEG digits (one sub-folder), a non-image file, a corrupt
    PNG and a hidden file. Returns (folder, {relative path: true label})."""
    root = tmp_path / "digits"
    labels = {}
    for i in range(12):
        rel = f"png/digit_{i:02d}.png" if i < 6 else f"digit_{i:02d}.PNG"
        save_digit(root / rel, mnist.x_test[i])
        labels[rel] = int(mnist.y_test[i])
    for i in range(12, 16):
        rel = f"jpeg/d{i}.jpg"
        save_digit(root / rel, mnist.x_test[i], quality=95)
        labels[rel] = int(mnist.y_test[i])
    (root / "notes.txt").write_text("not an image")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    save_digit(root / ".hidden.png", mnist.x_test[0])
    return root, labels
