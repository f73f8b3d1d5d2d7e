"""Training the reader of numbers again with the module its card names: a short run end
to end (fields made, trained, calibrated, saved with its card), then read by
``predict --numbers --model`` as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO, save_digit
from helpers import number_image

from batchdigits.model.store import card_path

SHIPPED = REPO / "batchdigits" / "model" / "numbers.keras"


@pytest.mark.slow
def test_the_training_module_writes_a_reader_and_card_that_predict_reads(
    tmp_path, mnist, mnist_path
):
    output = tmp_path / "reader.keras"
    command = [
        *(sys.executable, "-m", "batchdigits.training.reader", "-o", str(output)),
        *("--count", "120", "--epochs", "2", "--seed", "5", "--learning-rate", "1e-5"),
        *("--initial", str(SHIPPED), "--data", str(mnist_path), "--calibration-count", "150"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    card = json.loads(card_path(output).read_text())
    shipped = json.loads(card_path(SHIPPED).read_text())
    assert card["format"] == shipped["format"]
    assert set(shipped) <= set(card)  # every field the shipped card has
    assert card["held_out"] == 12 and card["epochs"] == 2
    assert len(card["held_out_exact_by_epoch"]) == 2
    assert card["calibration_images"] == 150
    assert "150 other synthetic numbers" in card["confidence"]
    assert 0.0 < card["confidence_power"] <= 1.0
    assert 0.0 < card["review_threshold"] <= 1.0
    assert "warm-started from numbers.keras" in card["trained_on"]
    # a learning rate this small keeps the shipped reader's skill: most numbers read right
    assert card["calibration_exact"] > 0.5

    fields = tmp_path / "fields"
    fields.mkdir()
    truth = {}
    for n, indices in enumerate([(0, 1, 2), (3, 4), (5, 6, 7, 8), (9, 10, 11)]):
        image, label = number_image(mnist, indices)
        save_digit(fields / f"{n}.png", image)
        truth[f"{n}.png"] = label
    csv = tmp_path / "out.csv"
    predict = [sys.executable, "-m", "batchdigits", "predict", str(fields), "--numbers"]
    done = subprocess.run(
        [*predict, "--model", str(output), "-o", str(csv), "-q"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pd.read_csv(csv, dtype={"prediction": str}, keep_default_na=False)
    assert len(rows) == 4
    names = rows["path"].map(lambda p: p.split("/")[-1])
    read = dict(zip(names, rows["prediction"], strict=True))
    assert sum(read[k] == v for k, v in truth.items()) >= 3
