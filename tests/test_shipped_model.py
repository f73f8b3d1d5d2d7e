"""The model that ships in the package, measured through the product's own path:
the 10,000 MNIST test images are written as PNG files and read back by predict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from batchdigits.model import default_model_path, read_card
from batchdigits.predict import predict_folder

MIN_ACCURACY = 0.993


def test_shipped_model_is_package_data():
    path = default_model_path()
    assert path.is_file() and path.suffix == ".keras"
    assert read_card()["test_images"] == 10000


@pytest.mark.slow
def test_shipped_model_accuracy_on_mnist_test_pngs(mnist, tmp_path):
    folder = tmp_path / "mnist-test"
    folder.mkdir()
    for i, image in enumerate(mnist.x_test):
        Image.fromarray(image).save(folder / f"{i:05d}.png", compress_level=1)
    out = tmp_path / "pred.csv"
    summary = predict_folder(folder, out)  # no model given: the shipped one
    assert summary.errors == 0 and summary.found == 10000
    df = pd.read_csv(out)
    truth = mnist.y_test[[int(p.split(".")[0]) for p in df["path"]]]
    accuracy = float(np.mean(df["prediction"].to_numpy() == truth))
    assert accuracy >= MIN_ACCURACY, f"shipped model: {accuracy:.4%} < {MIN_ACCURACY:.2%}"


SCAN_MIN_ACCURACY = 0.99
SCAN_IMAGES = 2000


@pytest.mark.slow
def test_shipped_model_on_scan_like_images(mnist, tmp_path):
    """Dark ink on noisy, unevenly lit paper, larger canvases, off-centre, varied scale,
    pen and JPEG quality, made from MNIST *test* digits: read through predict."""
    from scanlike import write_scan_set

    truth = write_scan_set(
        tmp_path / "scans", mnist.x_test[-SCAN_IMAGES:], mnist.y_test[-SCAN_IMAGES:], seed=11
    )
    out = tmp_path / "scans.csv"
    summary = predict_folder(tmp_path / "scans", out)
    assert summary.errors == 0
    df = pd.read_csv(out)
    accuracy = float(
        np.mean([truth[p] == y for p, y in zip(df["path"], df["prediction"], strict=True)])
    )
    assert accuracy >= SCAN_MIN_ACCURACY, f"scan-like: {accuracy:.2%} < {SCAN_MIN_ACCURACY:.0%}"
