"""Shared fixtures: a small MNIST from the committed fixture (always there), the full
MNIST files where a test needs them, a tiny trained model, and generated folders of
digit images."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# The benchmarks' generators (stress variants) are imported by the tests that bound them.
sys.path.insert(0, str(REPO / "tests" / "benchmarks"))
#: The first 2,000 MNIST test digits and their labels (see tests/data/README.md).
FIXTURE = REPO / "tests" / "data" / "mnist-test-2000.npz"


@pytest.fixture(autouse=True)
def _work_in_a_temporary_folder(tmp_path, monkeypatch):
    """Every test runs in its own temporary folder: whatever a command writes by a
    relative name (``predictions.csv``, ``X.csv.lock``) lands there, never in the
    checkout or wherever pytest was started."""
    monkeypatch.chdir(tmp_path)


def keras_cache() -> Path:
    """Where ``keras.datasets.mnist.load_data()`` keeps its download."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "mnist.npz"


def network_answers(host: str = "storage.googleapis.com", port: int = 443) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False


def mnist_source() -> tuple[Path | None, str]:
    """The full MNIST files: ``$BATCHDIGITS_MNIST``, ``../shared/mnist``, the Keras cache,
    else the Keras download when the network answers. ``(path, what was tried)``."""
    env = os.environ.get("BATCHDIGITS_MNIST")
    for candidate in (env, REPO.parent / "shared" / "mnist", keras_cache()):
        if candidate and Path(candidate).exists():
            return Path(candidate), ""
    tried = "$BATCHDIGITS_MNIST (not set), ../shared/mnist, the Keras cache (empty)"
    if not network_answers():
        return None, f"no full MNIST: tried {tried} and the Keras download (no network)"
    from batchdigits.runtime.lazy import keras

    try:
        keras().datasets.mnist.load_data()  # downloads into the Keras cache
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return None, f"no full MNIST: tried {tried}; the Keras download failed ({exc})"
    return keras_cache(), ""


@pytest.fixture(scope="session")
def mnist_full_path() -> Path:
    """The full MNIST files, for the tests that measure on all of them (skipped, with the
    reason, where there are none)."""
    path, reason = mnist_source()
    if path is None:
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def mnist_full(mnist_full_path):
    from batchdigits.training.data import load_mnist

    return load_mnist(mnist_full_path)


@pytest.fixture(scope="session")
def mnist_path(tmp_path_factory) -> Path:
    """A small MNIST (an npz ``--data`` reads) made from the committed fixture: its first
    1,000 digits as the test set, the other 1,000 as the training set."""
    data = np.load(FIXTURE)
    path = tmp_path_factory.mktemp("mnist") / "mnist-small.npz"
    x, y = data["x_test"], data["y_test"]
    np.savez(path, x_train=x[1000:], y_train=y[1000:], x_test=x[:1000], y_test=y[:1000])
    return path


@pytest.fixture(scope="session")
def mnist(mnist_path):
    from batchdigits.training.data import load_mnist

    return load_mnist(mnist_path)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    """A model file of the tests' own, outside the package: a copy of the shipped model
    and its card (``--model PATH`` as a user passes it; no training needed)."""
    from batchdigits.model.store import card_path, default_model_path

    folder = tmp_path_factory.mktemp("model")
    out = folder / "model.keras"
    shutil.copyfile(default_model_path(), out)
    shutil.copyfile(card_path(default_model_path()), card_path(out))
    return out


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, mnist_path) -> Path:
    """A small model trained by ``train`` for two epochs on the fixture's 1,000 training
    digits (about 40 s; the slow tiers): about 80% right on the fixture's test digits."""
    from batchdigits.training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("trained") / "tiny.keras"
    train(out, mnist_path, TrainConfig(epochs=2, batch_size=16))
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
