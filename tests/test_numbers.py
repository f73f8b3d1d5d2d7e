"""``--numbers``: a whole number in each image, read as a string of digits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import save_digit
from helpers import number_image
from typer.testing import CliRunner

from batchdigits.cli import app
from batchdigits.errors import UsageError
from batchdigits.imaging.one_file import prepare_pixels
from batchdigits.model.inference import Inference
from batchdigits.numbers.reader import NOTHING, best_path, read_fields
from batchdigits.numbers.second import CROPS_PER_CALL
from batchdigits.numbers.segment import Primitive, pieces, primitives
from batchdigits.numbers.sequence import collapsed, greedy, path_of_length
from batchdigits.options import PredictOptions, parse_digits

runner = CliRunner()


def best_of_length(p, lengths):
    """The best reading of an allowed length, as prediction makes it from the path."""
    path = path_of_length(p, lengths)
    return None if path is None else collapsed(path, p, 1.0)


def test_digits_option_is_a_count_or_a_range():
    assert parse_digits("5") == (5, 5)
    assert parse_digits(" 3-6 ") == (3, 6)
    with pytest.raises(UsageError):
        parse_digits("five")
    with pytest.raises(UsageError):
        PredictOptions(digits=(3, 3)).check()  # --digits without --numbers
    with pytest.raises(UsageError):
        PredictOptions(numbers=True, digits=(6, 3)).check()


def test_the_best_path_reads_the_most_probable_string_of_the_lengths_allowed():
    # primitives 0 and 1 either two digits (a 1 and a 7) or one digit (a 4)
    cands = [(0, 1), (1, 2), (0, 2)]
    p = np.full((3, 10), 0.01, np.float32)
    p[0, 1], p[1, 7], p[2, 4] = 0.9, 0.9, 0.6
    assert best_path(2, cands, p, (1, 32)).digits == "17"
    assert best_path(2, cands, p, (1, 1)).digits == "4"  # --digits 1
    one = best_path(2, cands, p, (1, 1))
    assert one.confidence == pytest.approx(0.6) and one.digit_confidences == (pytest.approx(0.6),)
    assert best_path(2, cands, p, (3, 5)) is NOTHING  # no path of 3-5 digits
    two = best_path(2, cands, p, (2, 2))
    assert two.confidence == pytest.approx(0.81)  # the whole string: the product


def test_separators_go_and_a_digits_parts_stay_together():
    ink = np.zeros((40, 90), np.float32)
    ink[5:35, 5:20] = 1.0  # a digit
    ink[31:35, 25:29] = 1.0  # a decimal point beside it
    ink[5:35, 35:50] = 1.0  # a digit
    ink[5:9, 60:78] = 1.0  # a 5's bar ...
    ink[12:35, 60:75] = 1.0  # ... above its body
    labels = np.zeros(ink.shape, np.int64)
    # label each block by hand (no TensorFlow needed for the segmentation itself)
    labels[5:35, 5:20], labels[31:35, 25:29], labels[5:35, 35:50] = 1, 2, 3
    labels[5:9, 60:78], labels[12:35, 60:75] = 4, 5
    parts = pieces(labels, ink)
    assert len(parts) == 3  # the point gone, the bar joined to its body
    assert [p.left for p in parts] == [5, 35, 60]
    prims = primitives(parts, ink)
    assert all(isinstance(p, Primitive) for p in prims) and len(prims) == 3


def test_a_wide_piece_is_cut_where_its_column_profile_is_lowest():
    ink = np.zeros((30, 60), np.float32)
    ink[0:30, 0:26] = 1.0
    ink[14:16, 26:34] = 1.0  # a thin bridge: two digits touching
    ink[0:30, 34:60] = 1.0
    labels = (ink > 0).astype(np.int64)
    prims = primitives(pieces(labels, ink), ink)
    assert len(prims) >= 2
    assert any(26 <= p.right <= 34 for p in prims)  # a cut on the bridge
    assert prims[0].cut_right and prims[-1].cut_left


@pytest.mark.parametrize("dark_ink", [True, False])
def test_numbers_of_mnist_digits_apart_are_read(mnist, dark_ink):
    inference = Inference.open(PredictOptions())  # the segmentation reads with the digit model
    rng = np.random.default_rng(3)
    cases = [
        number_image(mnist, rng.choice(200, int(rng.integers(1, 7)), replace=False), 6, dark_ink)
        for _ in range(20)
    ]
    got = read_fields(inference, [prepare_pixels(image) for image, _ in cases])
    right = sum(g.digits == label for g, (_, label) in zip(got, cases, strict=True))
    assert right >= 18, [(g.digits, label) for g, (_, label) in zip(got, cases, strict=True)]
    for g in got:
        assert len(g.digit_confidences) == len(g.digits)
        assert g.confidence == pytest.approx(float(np.prod(g.digit_confidences)), rel=1e-6)


def test_a_blank_field_has_no_digit(mnist):
    blank = np.full((40, 120), 230, np.uint8)
    assert read_fields(Inference.open(PredictOptions()), [prepare_pixels(blank)]) == [NOTHING]
    inference = Inference.open(PredictOptions(numbers=True))
    row = inference.rows_of_prepared(["blank.png"], [prepare_pixels(blank)])[0]
    assert row.error == "no digit found" and row.needs_review


def test_the_shipped_sequence_reader_reads_numbers_apart(mnist):
    inference = Inference.open(PredictOptions(numbers=True))
    rng = np.random.default_rng(4)
    cases = [
        number_image(mnist, rng.choice(200, int(rng.integers(1, 7)), replace=False))
        for _ in range(20)
    ]
    rows = inference.rows_of_prepared(
        [str(i) for i in range(20)], [prepare_pixels(c) for c, _ in cases]
    )
    right = sum(r.prediction == label for r, (_, label) in zip(rows, cases, strict=True))
    assert right >= 17, [(r.prediction, label) for r, (_, label) in zip(rows, cases, strict=True)]
    unflagged = [
        (r.prediction, label)
        for r, (_, label) in zip(rows, cases, strict=True)
        if not r.needs_review
    ]
    assert all(a == b for a, b in unflagged), unflagged


def _folder(tmp_path, mnist):
    root = tmp_path / "numbers"
    labels = {}
    for i, indices in enumerate([[3, 10, 2], [13, 5], [3, 7, 1, 11, 4]]):
        image, label = number_image(mnist, indices)
        save_digit(root / f"n{i}.png", image)
        labels[f"n{i}.png"] = label
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 8)
    return root, labels


def test_the_best_reading_of_a_length_is_the_most_probable_path_of_that_length():
    # steps: "1", blank, "1", "2": the best path reads 112; of 2 digits, 12 (the first
    # step's 1 merged into the second 1 by reading the blank as a 1)
    p = np.full((4, 11), 0.01, np.float32)
    p[0, 2], p[1, 0], p[1, 2], p[2, 2], p[3, 3] = 0.9, 0.6, 0.3, 0.9, 0.9
    assert greedy(p[None])[0][0] == "112"
    digits, confidence, each = best_of_length(p, (2, 2))
    assert digits == "12" and len(each) == 2
    assert confidence == pytest.approx(0.9 * 0.3 * 0.9 * 0.9, rel=1e-6)
    assert best_of_length(p, (3, 3)) == greedy(p[None])[0]  # the best path is allowed
    assert best_of_length(p, (5, 8)) is None  # 4 steps hold at most 4 digits
    four = best_of_length(p, (4, 4))[0]  # every step a digit, the second not a 1
    assert len(four) == 4 and four[0] == "1" and four[1] != "1" and four[2:] == "12"


def test_the_best_reading_of_a_length_matches_an_exhaustive_search():
    from itertools import product

    rng = np.random.default_rng(3)
    for _ in range(60):
        steps, symbols = int(rng.integers(1, 6)), int(rng.integers(2, 5))
        p = rng.dirichlet(np.full(symbols, 0.5), size=steps).astype(np.float32)
        fewest = int(rng.integers(1, 4))
        lengths = (fewest, fewest + int(rng.integers(0, 2)))
        readings = [
            greedy(np.eye(symbols, dtype=np.float32)[list(path)][None])[0][0]
            for path in product(range(symbols), repeat=steps)
        ]
        scores = [
            float(np.prod(p[np.arange(steps), list(path)], dtype=np.float64))
            for path in product(range(symbols), repeat=steps)
        ]
        allowed = [
            s for r, s in zip(readings, scores, strict=True) if lengths[0] <= len(r) <= lengths[1]
        ]
        got = best_of_length(p, lengths)
        if not allowed:
            assert got is None
        else:
            assert got[1] == pytest.approx(max(allowed), rel=1e-9)
            assert lengths[0] <= len(got[0]) <= lengths[1]


def test_predict_numbers_writes_strings_with_their_digits_confidences(tmp_path, mnist):
    root, labels = _folder(tmp_path, mnist)
    out = tmp_path / "out.csv"
    args = ["predict", str(root), "--numbers", "-o", str(out), "--probabilities", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output  # the broken file: a partial run
    table = pd.read_csv(out, dtype={"prediction": str}, keep_default_na=False)
    assert list(table.columns) == [
        "path",
        "prediction",
        "confidence",
        "needs_review",
        "error",
        "digit_confidences",
    ]
    rows = table.set_index("path")
    assert rows.loc["n0.png", "prediction"] == labels["n0.png"]  # the leading 0 kept
    for path in labels:
        each = [float(v) for v in rows.loc[path, "digit_confidences"].split()]
        assert len(each) == len(rows.loc[path, "prediction"])
    assert rows.loc["broken.png", "error"] and rows.loc["broken.png", "digit_confidences"] == ""
    assert sum(rows.loc[p, "prediction"] == t for p, t in labels.items()) >= 2
    # --digits: the best reading of 3 digits; the 2- and 5-digit numbers forced to 3
    # are unlikely readings, flagged; the 3-digit one reads as without --digits
    before = rows["prediction"]
    result = runner.invoke(app, [*args[:-1], "--digits", "3", "-q"])
    assert result.exit_code == 3, result.output
    table = pd.read_csv(out, dtype={"prediction": str}, keep_default_na=False)
    forced = table.set_index("path")
    for path, label in labels.items():
        assert len(forced.loc[path, "prediction"]) == 3
        if len(label) != 3:
            assert float(forced.loc[path, "confidence"]) < 0.5
            assert forced.loc[path, "needs_review"] in (True, "true")
        elif len(before[path]) == 3:
            assert forced.loc[path, "prediction"] == before[path]


def test_bad_digits_options_exit_2(tmp_path, mnist):
    root, _ = _folder(tmp_path, mnist)
    for extra in (
        ["--digits", "5"],
        ["--numbers", "--digits", "x"],
        ["--numbers", "--digits", "9-2"],
    ):
        result = runner.invoke(app, ["predict", str(root), "-o", str(tmp_path / "o.csv"), *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert "Traceback" not in result.output
    assert not (tmp_path / "o.csv").exists()


def test_evaluate_numbers_with_string_labels(tmp_path, mnist):
    root, labels = _folder(tmp_path, mnist)
    rows = [("path", "label")] + [(p, f"{t[:1]}.{t[1:]}") for p, t in labels.items()]  # "0.72"
    (tmp_path / "labels.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    report = tmp_path / "report"
    args = ["evaluate", str(root), "--labels", str(tmp_path / "labels.csv"), "--numbers"]
    result = runner.invoke(app, [*args, "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert "character error rate" in result.output and "Per length" in result.output
    import json

    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["images"] == 3
    assert set(metrics["per_length"]) == {"2", "3", "5"}
    assert 0.0 <= metrics["character_error_rate"] <= 1.0
    # a label that is not a number is refused with its line
    (tmp_path / "bad.csv").write_text("path,label\nn0.png,12a\n")
    result = runner.invoke(
        app, ["evaluate", str(root), "--labels", str(tmp_path / "bad.csv"), "--numbers"]
    )
    assert result.exit_code != 0 and "line 2" in result.output


@pytest.mark.slow
def test_the_beam_engine_writes_the_same_numbers_csv(tmp_path, mnist):
    pytest.importorskip("apache_beam")
    root, _ = _folder(tmp_path, mnist)
    outputs = []
    for engine in ("local", "beam"):
        out = tmp_path / f"{engine}.csv"
        args = ["predict", str(root), "--numbers", "--probabilities", "-o", str(out), "-q"]
        result = runner.invoke(app, [*args, "--engine", engine])
        assert result.exit_code == 3, result.output
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_numbers_read_with_the_model_given(tmp_path, mnist, model_file):
    """With --numbers, --model names a reader of numbers: a copy of the shipped one reads
    the same strings and names itself in the summary; a digit model is refused (65)."""
    import json
    import shutil

    from batchdigits.model.store import card_path, default_model_path

    root, _ = _folder(tmp_path, mnist)
    mine = tmp_path / "mine.keras"
    shutil.copyfile(default_model_path(numbers=True), mine)
    shutil.copyfile(card_path(default_model_path(numbers=True)), card_path(mine))
    tables = []
    for extra in ([], ["--model", str(mine)]):
        out = tmp_path / f"out{len(tables)}.csv"
        summary = tmp_path / f"summary{len(tables)}.json"
        args = [
            "predict",
            str(root),
            "--numbers",
            "-o",
            str(out),
            "-q",
            "--summary-json",
            str(summary),
        ]
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 3, result.output
        tables.append(out.read_bytes())
        model = json.loads(summary.read_text())["model"]
        assert model == (str(mine) if extra else "(shipped numbers model)")
    assert tables[0] == tables[1]
    out = tmp_path / "digit-model.csv"
    args = ["predict", str(root), "--numbers", "--model", str(model_file), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 65, result.output
    assert "--numbers needs a reader of numbers" in result.output and not out.exists()
    result = runner.invoke(app, [*args, "--train-if-missing"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def _labelled_numbers(tmp_path, mnist, count: int):
    """``count`` numbers of 1-5 MNIST test digits in a folder, and their labels CSV."""
    root = tmp_path / "labelled"
    rng = np.random.default_rng(7)
    lines = ["path,label"]
    for i in range(count):
        image, label = number_image(mnist, rng.choice(1000, int(rng.integers(1, 6))), 5)
        save_digit(root / f"f{i:03d}.png", image)
        lines.append(
            f"f{i:03d}.png,{label[:1]}.{label[1:]}" if len(label) > 1 else f"f{i:03d}.png,{label}"
        )
    lines.append("f999.png,x")  # not a number: left out
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    return root, tmp_path / "labels.csv"


def test_tune_numbers_learns_from_corrected_strings(tmp_path, mnist, mnist_path):
    """tune --numbers saves a reader of numbers with its card, keeps the best held-out
    epoch (never worse than the base), and predict --numbers --model reads with it."""
    import json

    root, labels = _labelled_numbers(tmp_path, mnist, 40)
    out = tmp_path / "mine.keras"
    args = ["tune", str(root), "--numbers", "--labels", str(labels), "-o", str(out)]
    result = runner.invoke(app, [*args, "--epochs", "2", "--data", str(mnist_path)])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "mine.card.json").read_text())
    assert card["format"] == "batchdigits-numbers-card/1"
    assert card["labelled_numbers"] == 40 and card["held_out_numbers"] == 10
    assert card["held_out_exact_after"] >= card["held_out_exact_before"]
    assert 0.0 < card["confidence_power"] <= 1.0 and 0.0 <= card["review_threshold"] <= 1.0
    assert "held-out exact" in result.output
    predicted = tmp_path / "p.csv"
    args = ["predict", str(root), "--numbers", "--model", str(out), "-o", str(predicted), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    table = pd.read_csv(predicted, dtype={"prediction": str}, keep_default_na=False)
    assert len(table) == 40 and (table["prediction"].str.len() >= 1).all()


def test_tune_numbers_refuses_what_it_cannot_learn_from(tmp_path, mnist):
    root, labels = _labelled_numbers(tmp_path, mnist, 8)
    out = tmp_path / "mine.keras"
    for extra, words in (
        (["--labels", str(labels)], "too few labelled numbers"),
        ([], "needs --labels"),
    ):
        result = runner.invoke(app, ["tune", str(root), "--numbers", "-o", str(out), *extra])
        assert result.exit_code == 65, result.output
        assert words in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize("dark_ink", [True, False])
@pytest.mark.parametrize("side", ["left", "bottom"])
def test_a_wide_scanner_margin_and_the_ruling_at_its_edge_leave_no_ink(mnist, dark_ink, side):
    from batchdigits.imaging.preprocess import pad_batch
    from batchdigits.numbers.field import field_ink

    image, _ = number_image(mnist, [3, 10, 2] if side == "left" else [3, 10, 2, 5])
    ink = 255.0 - image.astype(np.float32)  # the number's ink, 0..255
    h, w = ink.shape
    # the cell: room for the number, a solid margin a third of it deep, ragged along its
    # inner side, and a one-pixel ruling all along that side
    rng = np.random.default_rng(7)
    if side == "left":
        cell = np.zeros((h + 24, int((w + 12) / 0.6)), np.float32)
        deep = int(cell.shape[1] * 0.35)
        cell[12 : 12 + h, deep + 8 : deep + 8 + w] = ink
        edge = deep + np.round(np.cumsum(rng.normal(0, 0.5, cell.shape[0]))).astype(int)
        for r, e in enumerate(edge):
            cell[r, :e] = 255.0
        cell[:, deep + 4] = 220.0
        band = np.zeros(cell.shape, bool)
        band[:, : deep + 6] = True
    else:
        cell = np.zeros((int(h * 2.2), w + 20), np.float32)
        deep = int(cell.shape[0] * 0.35)
        cell[8 : 8 + h, 10 : 10 + w] = ink
        for c in range(cell.shape[1]):
            cell[cell.shape[0] - deep - int(rng.integers(0, 3)) :, c] = 255.0
        cell[cell.shape[0] - deep - 5, :] = 220.0
        band = np.zeros(cell.shape, bool)
        band[cell.shape[0] - deep - 7 :, :] = True
    digits = (cell > 128) & ~band
    noise = rng.normal(0, 3, cell.shape)
    pixels = np.clip((255.0 - cell if dark_ink else cell) * 0.8 + 20 + noise, 0, 255)
    gray, sizes = pad_batch([prepare_pixels(pixels.astype(np.uint8))])
    clean, has_ink = field_ink(gray, sizes)
    clean = clean.numpy()[0, : cell.shape[0], : cell.shape[1]]
    assert has_ink.numpy()[0]
    left = np.argwhere(band & (clean > 0))
    assert not len(left), left[:: max(1, len(left) // 20)]  # no margin, edge or ruling
    assert (clean[digits] > 0.25).mean() > 0.9  # the digits stay


def test_fields_without_margins_skip_their_search_with_the_same_bits(mnist, monkeypatch):
    """The cleaning looks for scanner margins only in the fields whose edge rows or
    columns could be one: the bound never misses what the full search finds, it skips
    clean fields, and a mixed batch is cleaned bit for bit as when every field is
    searched."""
    import tensorflow as tf

    from batchdigits.imaging.preprocess import pad_batch
    from batchdigits.numbers import field
    from batchdigits.training.numbers import synthetic_numbers

    # cells with margins, rulings and print (the training generator), and numbers apart
    cells, _ = synthetic_numbers(mnist.x_train, mnist.y_train, 24, seed=4)
    apart = [number_image(mnist, [3 * k, 3 * k + 1, 3 * k + 2])[0] for k in range(8)]
    gray, sizes = pad_batch([prepare_pixels(i) for i in cells + apart])
    ink, _ = field.field_ink(gray, sizes)
    h, w = sizes[:, 0], sizes[:, 1]
    # the cleaned ink, with a band along one edge of every other field: solid, or with
    # a pixel missing in every row (column) at its edge, which only the bridge closes
    mask = ink.numpy() >= field.INK
    rng = np.random.default_rng(3)
    for i in range(0, len(mask), 2):
        hi, wi = (int(v) for v in sizes[i])
        edge = [(slice(0, hi), slice(0, 6)), (slice(hi - 5, hi), slice(0, wi))][i % 4 // 2]
        mask[i][edge] = True
        if i % 8 >= 4:
            if i % 4 // 2:
                mask[i, hi - 1, rng.integers(0, wi, wi // 3)] = False
            else:
                mask[i, rng.integers(0, hi, hi // 3), 0] = False
    for bridge in (True, False):
        m = tf.constant(mask)
        bound = field._may_have_margins(m, h, w, bridge=bridge).numpy()
        found = field._margins(m, h, w, bridge=bridge).numpy().any((1, 2))
        assert not (found & ~bound).any()  # never skips a margin the search finds
        assert found[::2].sum() >= 8 and not bound[1::2][-4:].any()  # numbers apart: none

    real = field._may_have_margins
    asked = []

    def everywhere(*args, **kwargs):
        asked.append(real(*args, **kwargs).numpy())
        return tf.ones_like(asked[-1])

    monkeypatch.setattr(field, "_may_have_margins", everywhere)
    full = field.field_ink(gray, sizes)[0].numpy()
    np.testing.assert_array_equal(full, ink.numpy())
    assert len(asked) == 2 and not any(a[24:].any() for a in asked)  # bands, then edges


def test_a_fields_inputs_do_not_depend_on_how_far_its_batch_is_padded(mnist):
    from batchdigits.imaging.preprocess import pad_batch
    from batchdigits.numbers.reader import sequence_inputs_fn

    images = [number_image(mnist, ix)[0] for ix in ([3, 10, 2], [13, 5], [3, 7, 1, 11, 4])]
    grays = [prepare_pixels(np.pad(image, ((0, 9 * k), (0, 0)))) for k, image in enumerate(images)]
    inputs = sequence_inputs_fn()
    together = inputs(*pad_batch(grays))[0].numpy()
    for k, gray in enumerate(grays):
        alone = inputs(*pad_batch([gray]))[0].numpy()[0]
        np.testing.assert_array_equal(alone, together[k])
        assert alone.max() > 0.5  # the number is there


def test_large_runs_read_numbers_with_the_compiled_reader_and_the_same_bits(
    tmp_path, mnist, monkeypatch
):
    """A run over EAGER_IMAGES files calls the reader compiled, a small one layer by
    layer: the CSV is the same bytes either way."""
    import batchdigits.model.inference as inference

    root = tmp_path / "numbers"
    rng = np.random.default_rng(4)
    for i in range(24):
        indices = rng.choice(len(mnist.x_test), int(rng.integers(1, 8)), replace=False)
        save_digit(root / f"n{i:02d}.png", number_image(mnist, list(indices))[0])
    compiled_calls = []
    real = inference.make_infer

    digit_calls = []

    class Counting:  # the compiled reader (and digit model), counting the rows of each call
        def __init__(self, model):
            self.infer = real(model)
            self.input_signature = self.infer.input_signature
            self.calls = compiled_calls if model.name == "batchdigits_numbers" else digit_calls

        def __call__(self, inputs):
            self.calls.append(len(inputs))
            return self.infer(inputs)

    monkeypatch.setattr(inference, "make_infer", Counting)
    outputs = []
    for eager_images in (inference.EAGER_IMAGES, 0):
        monkeypatch.setattr(inference, "EAGER_IMAGES", eager_images)
        out = tmp_path / f"{eager_images}.csv"
        args = ["predict", str(root), "--numbers", "--probabilities", "-o", str(out), "-q"]
        result = runner.invoke(app, [*args, "--batch-size", "8"])
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
        # compiled: one warm-up call on zeros, then the 3 batches of 8
        assert compiled_calls == ([8, 8, 8, 8] if eager_images == 0 else [])
        # the digit model's second opinion: always a full call of CROPS_PER_CALL
        assert set(digit_calls) <= {CROPS_PER_CALL}
    assert outputs[0] == outputs[1]
    assert len(pd.read_csv(tmp_path / "0.csv")) == 24
