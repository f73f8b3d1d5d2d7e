"""evaluate: both label layouts, the right accuracy, readable PNGs and JSON."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from batchdigits.cli import app

runner = CliRunner()


@pytest.fixture
def labelled(tmp_path, mnist):
    """The same 40 MNIST test digits twice: in sub-folders 0-9, and flat with a CSV."""
    by_folder, flat = tmp_path / "by_folder", tmp_path / "flat"
    rows = []
    for i in range(40):
        label = int(mnist.y_test[i])
        (by_folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(mnist.x_test[i]).save(by_folder / str(label) / f"{i:03d}.png")
        flat.mkdir(exist_ok=True)
        Image.fromarray(mnist.x_test[i]).save(flat / f"{i:03d}.png")
        rows.append((f"{i:03d}.png", label))
    (flat / "broken.png").write_bytes(b"not an image")
    rows.append(("broken.png", 4))
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(labels, index=False)
    return by_folder, flat, labels


def test_both_layouts_agree_and_accuracy_is_right(labelled, tmp_path):
    by_folder, flat, labels = labelled
    out = tmp_path / "per_file.csv"
    report = tmp_path / "report"
    result = runner.invoke(
        app, ["evaluate", str(by_folder), "-o", str(out), "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "Per digit" in result.stdout
    df = pd.read_csv(out)
    assert list(df.columns)[-1] == "label" and len(df) == 40
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["images"] == 40
    assert metrics["accuracy"] == pytest.approx((df["prediction"] == df["label"]).mean())
    assert sum(map(sum, metrics["confusion_matrix"])) == 40
    assert "trade-off" in result.stdout
    at_threshold = [
        r for r in metrics["review_tradeoff"] if r["threshold"] == metrics["review_threshold"]
    ]
    assert at_threshold[0]["coverage"] == pytest.approx(metrics["review_coverage"], abs=1e-6)
    kept = df["confidence"] >= 0.9
    at_09 = [r for r in metrics["review_tradeoff"] if r["threshold"] == 0.9][0]
    assert at_09["coverage"] == pytest.approx(kept.mean(), abs=1e-6)
    for name in ("confusion_matrix.png", "reliability_diagram.png", "misclassified.png"):
        with Image.open(report / name) as image:
            image.load()
            assert image.width > 100 and image.height > 100

    flat_out = tmp_path / "flat.csv"
    result = runner.invoke(
        app, ["evaluate", str(flat), "--labels", str(labels), "-o", str(flat_out)]
    )
    assert result.exit_code == 3, result.output  # broken.png: a row, counted as wrong
    flat_df = pd.read_csv(flat_out)
    assert len(flat_df) == 41
    right = (flat_df["prediction"] == flat_df["label"]).sum()
    assert right == (df["prediction"] == df["label"]).sum()
    assert f"{right / 41:.4%}" in result.stdout


def test_a_wrong_label_costs_exactly_one(labelled, tmp_path):
    _, flat, labels = labelled
    table = pd.read_csv(labels)
    base = runner.invoke(
        app, ["evaluate", str(flat), "--report", str(tmp_path / "a"), "--labels", str(labels)]
    )
    table.loc[0, "label"] = (table.loc[0, "label"] + 1) % 10
    table.to_csv(labels, index=False)
    changed = runner.invoke(
        app, ["evaluate", str(flat), "--report", str(tmp_path / "b"), "--labels", str(labels)]
    )
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert base.exit_code == changed.exit_code == 3
    assert round((a["accuracy"] - b["accuracy"]) * 41) == 1  # 000.png is read right


def test_bad_labels(tmp_path, labelled):
    _, flat, _ = labelled
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\n000.png,seven\n")
    result = runner.invoke(app, ["evaluate", str(flat), "--labels", str(bad)])
    assert result.exit_code == 65 and "not a digit" in result.stderr
    bad.write_text("file,digit\n000.png,7\n")
    assert runner.invoke(app, ["evaluate", str(flat), "--labels", str(bad)]).exit_code == 65
    result = runner.invoke(app, ["evaluate", str(flat)])  # no 0-9 folders, no --labels
    assert result.exit_code == 66 and "no labelled images" in result.stderr
    result = runner.invoke(app, ["evaluate", str(flat), "--labels", str(tmp_path / "none.csv")])
    assert result.exit_code == 66
