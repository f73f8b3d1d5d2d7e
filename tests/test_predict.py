"""predict_folder: one row per image file, error rows, order, and a CSV pandas reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import save_digit
from helpers import model_probabilities
from PIL import Image

from batchdigits.errors import ExitCode, InputNotFoundError, OutputError
from batchdigits.imaging.one_file import prepare_pixels
from batchdigits.imaging.preprocess import normalize
from batchdigits.options import PredictOptions
from batchdigits.rows import COLUMNS
from batchdigits.run.driver import predict_folder


def read_csv(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_rows_errors_and_summary(digit_folder, model_file, tmp_path):
    root, labels = digit_folder
    out = tmp_path / "out.csv"
    summary = predict_folder(root, out, PredictOptions(model=model_file, batch_size=5))

    df = read_csv(out)
    assert tuple(df.columns) == COLUMNS
    expected_paths = sorted([*labels, "broken.png"])
    assert list(df["path"]) == expected_paths  # sorted, '/' separators, hidden file skipped
    broken = df[df["path"] == "broken.png"].iloc[0]
    assert broken["prediction"] == "" and broken["confidence"] == ""
    assert "cannot decode image" in broken["error"]
    ok = df[df["path"] != "broken.png"]
    assert (ok["error"] == "").all()
    assert ok["prediction"].astype(int).between(0, 9).all()
    conf = ok["confidence"].astype(float)
    assert conf.between(0, 1).all()
    assert all(len(c.split(".")[1]) == 6 for c in ok["confidence"])

    assert summary.found == len(labels) + 1
    assert summary.errors == 1 and summary.predicted == len(labels)
    assert summary.skipped == 2  # notes.txt and .hidden.png
    assert summary.exit_code == ExitCode.PARTIAL


def test_predictions_match_the_model_on_the_same_pixels(digit_folder, model_file, tmp_path, mnist):
    """The streamed pipeline gives what the model says for the file's pixels."""
    root, labels = digit_folder
    out = tmp_path / "out.csv"
    predict_folder(root, out, PredictOptions(model=model_file, batch_size=4))
    df = read_csv(out).set_index("path")
    pngs = sorted(p for p in labels if p.lower().endswith(".png"))
    index = {f"png/digit_{i:02d}.png": i for i in range(6)}
    index.update({f"digit_{i:02d}.PNG": i for i in range(6, 12)})
    x = np.stack([normalize(mnist.x_test[index[p]])[0] for p in pngs])
    probs = model_probabilities(model_file, x)
    assert list(df.loc[pngs, "prediction"].astype(int)) == list(probs.argmax(axis=1))
    np.testing.assert_allclose(
        df.loc[pngs, "confidence"].astype(float), probs.max(axis=1), atol=2e-6
    )


def test_batch_size_does_not_change_results(digit_folder, model_file, tmp_path):
    root, _ = digit_folder
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    predict_folder(root, a, PredictOptions(model=model_file, batch_size=1))
    predict_folder(root, b, PredictOptions(model=model_file, batch_size=256))
    da, db = read_csv(a), read_csv(b)
    assert list(da["path"]) == list(db["path"])
    assert list(da["prediction"]) == list(db["prediction"])
    assert list(da["error"]) == list(db["error"])
    ok = da["confidence"] != ""
    # Batched maths may differ in the last float bits; nothing more.
    np.testing.assert_allclose(
        da.loc[ok, "confidence"].astype(float), db.loc[ok, "confidence"].astype(float), atol=2e-6
    )


def test_no_recursive_reads_top_level_only(digit_folder, model_file, tmp_path):
    root, labels = digit_folder
    out = tmp_path / "out.csv"
    predict_folder(root, out, PredictOptions(model=model_file, recursive=False))
    assert list(read_csv(out)["path"]) == sorted(
        ["broken.png", *(p for p in labels if "/" not in p)]
    )


def test_empty_folder_gives_header_only(tmp_path, model_file):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out.csv"
    summary = predict_folder(tmp_path / "empty", out, PredictOptions(model=model_file))
    assert out.read_text() == ",".join(COLUMNS) + "\n"
    assert summary.found == 0 and summary.exit_code == ExitCode.OK


def test_missing_input_and_unwritable_output(tmp_path, model_file, digit_folder):
    with pytest.raises(InputNotFoundError):
        predict_folder(tmp_path / "nope", tmp_path / "o.csv", PredictOptions(model=model_file))
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    root, _ = digit_folder
    with pytest.raises(OutputError, match="does not exist"):
        predict_folder(root, tmp_path / "no" / "such" / "o.csv", PredictOptions(model=model_file))


def test_previous_output_kept_when_run_fails(tmp_path, digit_folder, monkeypatch, model_file):
    root, _ = digit_folder
    out = tmp_path / "out.csv"
    previous = "path,prediction,confidence,needs_review,error\nold.png,1,0.990000,false,\n"
    out.write_text(previous)

    from batchdigits.model.inference import Inference

    def boom(*args, **kwargs):
        yield []
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Inference, "rows", boom)
    with pytest.raises(RuntimeError):
        predict_folder(root, out, PredictOptions(model=model_file))
    assert out.read_text() == previous
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_output_inside_input_is_not_read(tmp_path, model_file, mnist):
    from conftest import save_digit

    root = tmp_path / "d"
    save_digit(root / "a.png", mnist.x_test[0])
    save_digit(root / "out.png", mnist.x_test[1])  # an output named like an image
    predict_folder(
        root, root / "out.png", PredictOptions(model=model_file, force=True)
    )  # over an image
    assert list(read_csv(root / "out.png")["path"]) == ["a.png"]


def test_needs_review_and_probability_columns(digit_folder, model_file, tmp_path):
    root, labels = digit_folder
    out = tmp_path / "out.csv"
    summary = predict_folder(
        root, out, PredictOptions(model=model_file, review_threshold=0.6, probabilities=True)
    )
    df = read_csv(out)
    assert list(df.columns) == [*COLUMNS, *(f"p{d}" for d in range(10))]
    ok = df[df["error"] == ""]
    probs = ok[[f"p{d}" for d in range(10)]].astype(float).to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (probs.argmax(axis=1) == ok["prediction"].astype(int)).all()
    np.testing.assert_allclose(probs.max(axis=1), ok["confidence"].astype(float), atol=1e-6)
    expected = np.where(ok["confidence"].astype(float) < 0.6, "true", "false")
    assert list(ok["needs_review"]) == list(expected)
    bad = df[df["error"] != ""]
    assert (bad["needs_review"] == "true").all() and (bad["p0"] == "").all()
    assert summary.needs_review == int((df["needs_review"] == "true").sum())
    assert summary.review_threshold == 0.6

    # Extremes: everything flagged, or only the rows without a prediction.
    predict_folder(root, out, PredictOptions(model=model_file, review_threshold=1.0))
    assert (read_csv(out)["needs_review"] == "true").all()
    predict_folder(root, out, PredictOptions(model=model_file, review_threshold=0.0))
    df = read_csv(out)
    assert list(df["needs_review"] == "true") == list(df["error"] != "")


def test_review_threshold_defaults_to_the_model_card(digit_folder, model_file, tmp_path):
    from batchdigits.model.store import read_card

    summary = predict_folder(digit_folder[0], tmp_path / "o.csv", PredictOptions(model=model_file))
    assert summary.review_threshold == read_card(model_file)["review_threshold"]


def test_paths_enter_the_pipeline_a_chunk_at_a_time(tmp_path, mnist, monkeypatch):
    """Queueing streams: when the first batch comes out, most paths were never read."""
    from collections.abc import Sequence

    from PIL import Image

    from batchdigits.imaging import pipeline

    for i in range(400):
        Image.fromarray(mnist.x_test[i]).save(tmp_path / f"{i:03d}.png")

    class Watched(Sequence):
        def __init__(self, items):
            self.items, self.highest = items, -1

        def __len__(self):
            return len(self.items)

        def __getitem__(self, index):
            self.highest = max(self.highest, index)
            return self.items[index]

    monkeypatch.setattr(pipeline, "PATH_CHUNK", 16)
    paths = Watched([str(tmp_path / f"{i:03d}.png") for i in range(400)])
    batches = iter(pipeline.image_batches(paths, batch_size=8))
    first = next(batches)
    assert first[0].numpy().tolist() == list(range(8))
    assert paths.highest < 200  # a few chunks ahead, not the whole listing
    rest = [int(i) for b in batches for i in b[0].numpy()]
    assert rest == list(range(8, 400)) and paths.highest == 399


def test_eager_small_runs_write_the_same_csv_as_compiled_ones(
    tmp_path, mnist, model_file, monkeypatch
):
    """A run of at most EAGER_IMAGES files normalises and predicts op by op, a larger one
    through the compiled functions: the CSV must be the same bytes either way, for MNIST
    digits, scans larger than the 64 px cleaning size, colour and mixed sizes together."""
    from scanlike import write_scan_set

    import batchdigits.model.inference as inference

    root = tmp_path / "mixed"
    for i in range(20):
        save_digit(root / f"m{i:02d}.png", mnist.x_test[i])
    write_scan_set(root / "scans", mnist.x_test[20:40], mnist.y_test[20:40])
    colour = np.stack([mnist.x_test[40], mnist.x_test[40] // 2, 255 - mnist.x_test[40]], -1)
    Image.fromarray(colour.astype(np.uint8)).resize((90, 70)).save(root / "colour.png")
    options = PredictOptions(model=model_file, batch_size=16, probabilities=True)

    eager, compiled = tmp_path / "eager.csv", tmp_path / "compiled.csv"
    assert inference.EAGER_IMAGES >= 41
    predict_folder(root, eager, options)
    monkeypatch.setattr(inference, "EAGER_IMAGES", 0)
    predict_folder(root, compiled, options)
    assert eager.read_bytes() == compiled.read_bytes()
    assert len(read_csv(eager)) == 41


def test_the_next_batch_is_normalised_in_another_thread_while_the_model_reads_this_one(
    tmp_path, mnist, model_file, monkeypatch
):
    """With the compiled functions, one worker thread normalises batch k+1 (``begin``)
    before the main thread runs the model on batch k (``finish``); the rows are those of
    the serial path, in order; a failure in the worker reaches the caller."""
    import threading

    import batchdigits.model.inference as inference
    from batchdigits.imaging.files import find_images

    for i in range(40):
        save_digit(tmp_path / "in" / f"{i:02d}.png", mnist.x_test[i])
    monkeypatch.setattr(inference, "EAGER_IMAGES", 0)
    model = inference.Inference.open(PredictOptions(model=model_file, batch_size=8))
    events, begin, finish = [], inference.Inference.begin, inference.Inference.finish
    second_begun = threading.Event()

    def recording_begin(self, gray, sizes, compiled=True):
        events.append(("begin", threading.current_thread().name, compiled))
        if len(events) > 1:
            second_begun.set()
        return begin(self, gray, sizes, compiled)

    def recording_finish(self, begun, compiled=True):
        # the model's first batch waits for the second batch's normalisation to start:
        # it can only if that runs on another thread, submitted before this call
        events.append(("finish", threading.current_thread().name, second_begun.wait(30)))
        return finish(self, begun, compiled)

    monkeypatch.setattr(inference.Inference, "begin", recording_begin)
    monkeypatch.setattr(inference.Inference, "finish", recording_finish)
    listing = find_images(tmp_path / "in")
    rows = [row for batch in model.rows(listing) for row in batch]

    assert [e[0] for e in events[:3]] == ["begin", "begin", "finish"]  # finish waited
    assert [e[0] for e in events].count("finish") == 5 and all(e[2] for e in events)
    assert {e[1] for e in events if e[0] == "begin"} == {"batchdigits-normalise_0"}
    assert {e[1] for e in events if e[0] == "finish"} == {threading.current_thread().name}
    serial = model.rows_of_prepared(
        [r.path for r in rows], [prepare_pixels(mnist.x_test[i]) for i in range(40)]
    )
    assert [(r.path, r.prediction, r.confidence) for r in rows] == [
        (r.path, r.prediction, r.confidence) for r in serial
    ]

    def failing_begin(self, gray, sizes, compiled=True):
        raise OSError("the disk went away")

    monkeypatch.setattr(inference.Inference, "begin", failing_begin)
    with pytest.raises(OSError, match="the disk went away"):
        list(model.rows(listing))
