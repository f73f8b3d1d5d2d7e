"""``batchdigits tune``: a model tuned on labelled images (folders or review's CSV with x
rows), unreadable files listed and skipped (exit 3, model still written), too few labels
exit 65, and the card with held-out accuracy before and after."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import save_digit
from PIL import Image
from typer.testing import CliRunner

from batchdigits.cli import app
from batchdigits.errors import ExitCode
from batchdigits.model.store import read_card

runner = CliRunner()


def tight(digit: np.ndarray) -> np.ndarray:
    """A 16x16 1-bit tight crop, dark on light: a collection unlike MNIST."""
    rows, cols = np.nonzero(digit > 40)
    box = digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    ink = np.asarray(Image.fromarray(box).resize((16, 16), Image.BILINEAR))
    return np.where(ink > 110, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_tune_on_review_labels_with_not_a_digit_and_a_broken_file(
    tmp_path, mnist, mnist_path, model_file
):
    root = tmp_path / "mine"
    lines = ["path,label"]
    for i in range(80):
        save_digit(root / f"{i:03d}.png", tight(mnist.x_test[i]))
        lines.append(f"{i:03d}.png,{mnist.y_test[i]}")
    save_digit(root / "scribble.png", np.triu(np.full((20, 20), 255, np.uint8)))
    lines.append("scribble.png,x")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    lines.append("broken.png,3")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "tuned.keras"
    args = ["tune", str(root), "--labels", str(tmp_path / "labels.csv"), "-o", str(out)]
    result = runner.invoke(
        app, [*args, "--model", str(model_file), "--data", str(mnist_path), "--epochs", "2"]
    )
    assert result.exit_code == ExitCode.PARTIAL, result.output
    assert "skipped broken.png: cannot decode image" in result.stderr
    assert "held-out accuracy" in result.stderr and "MNIST test accuracy" in result.stderr
    card = read_card(out)
    assert card == json.loads(out.with_name("tuned.card.json").read_text())
    assert card["labelled_images"] == 81 and card["not_a_digit_images"] == 1
    held, train = card["held_out_images"], card["train_images"]
    assert held + train == 81 and 18 <= held <= 22  # a quarter of each digit's, rounded
    assert card["mnist_images_mixed"] == min(train * 4, 1000)
    assert 0 <= card["held_out_accuracy_before"] <= 1 and 0 <= card["held_out_accuracy_after"] <= 1
    assert card["tuned_from"].startswith(str(model_file))
    # evaluate reads review's labels as they are (x rows have no digit to score)
    result = runner.invoke(
        app, ["evaluate", str(root), "--labels", str(tmp_path / "labels.csv"), "--model", str(out)]
    )
    assert result.exit_code == ExitCode.PARTIAL  # broken.png
    assert "81" in result.stdout  # 80 digits + broken.png scored; scribble.png left out


def test_too_few_labels_is_exit_65(tmp_path, mnist, model_file):
    root = tmp_path / "few"
    for i in range(12):
        save_digit(root / str(mnist.y_test[i]) / f"{i}.png", mnist.x_test[i])
    result = runner.invoke(
        app, ["tune", str(root), "--model", str(model_file), "-o", str(tmp_path / "t.keras")]
    )
    assert result.exit_code == ExitCode.DATA_ERR
    assert "too few labelled digits" in result.stderr and "at least 30" in result.stderr
    assert not (tmp_path / "t.keras").exists()


@pytest.mark.slow
def test_tuning_a_cascade_tunes_its_strong_network(tmp_path, mnist, mnist_path):
    import keras

    from batchdigits.model.network import build_model, networks, paired
    from batchdigits.model.store import load_model, save_model

    keras.utils.set_random_seed(1)
    look = build_model([[4]], dense=8, dropout=0.0, block_dropout=0.0, batch_norm=False)
    strong = build_model([[8], [16]], dense=16, dropout=0.0, block_dropout=0.0, batch_norm=False)
    cascade = tmp_path / "cascade.keras"
    opinion = {"answers": "second", "consulted_below": 0.99, "review_threshold": 0.9}
    save_model(paired(look, strong), cascade, {"review_threshold": 0.9, "second_opinion": opinion})
    root = tmp_path / "mine"
    for i in range(40):
        save_digit(root / str(mnist.y_test[i]) / f"{i:03d}.png", mnist.x_test[i])
    out = tmp_path / "tuned.keras"
    args = ["tune", str(root), "-o", str(out), "--model", str(cascade)]
    result = runner.invoke(app, [*args, "--data", str(mnist_path), "--epochs", "1"])
    assert result.exit_code == ExitCode.OK, result.output
    tuned = load_model(out)
    assert networks(tuned)[1] is None  # one network: the strong one, tuned
    assert tuned.count_params() == strong.count_params() != look.count_params()
