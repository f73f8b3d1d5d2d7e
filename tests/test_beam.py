"""``predict --engine beam``: the same CSV as the local engine, really run on Beam with
more than one worker thread, and a clear exit 2 when the extra is missing."""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from batchdigits.cli import app
from batchdigits.errors import ExitCode
from batchdigits.options import BeamSettings, PredictOptions
from batchdigits.run.driver import predict_folder

beam = pytest.importorskip("apache_beam", reason="the beam extra is not installed")

from batchdigits.run.beam_steps import beam_flags  # noqa: E402

runner = CliRunner()


@pytest.fixture
def mixed_folder(tmp_path, mnist):
    """MNIST PNGs at the top, dark-on-light JPEGs of another size in a subfolder, BMPs a
    level deeper, three bad files, a text file and a hidden file (both skipped), and an
    image in a hidden folder (ignored)."""
    root = tmp_path / "in"
    deeper = root / "sub" / "deeper"
    deeper.mkdir(parents=True)
    for i in range(24):
        Image.fromarray(mnist.x_test[i]).save(root / f"{i:03d}.png")
    for i in range(24, 36):
        image = Image.fromarray(255 - mnist.x_test[i]).resize((90, 90), Image.BILINEAR)
        image.save(root / "sub" / f"{i:03d}.jpg", quality=90)
    for i in range(36, 42):
        Image.fromarray(mnist.x_test[i]).save(deeper / f"{i:03d}.bmp")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    (root / "sub" / "empty.jpg").write_bytes(b"")
    (root / "sub" / "words.png").write_text("not an image")
    (root / "notes.txt").write_text("skipped")
    (root / ".hidden.png").write_text("skipped")
    (root / ".cache").mkdir()  # a hidden folder: not read, not counted
    Image.fromarray(mnist.x_test[50]).save(root / ".cache" / "050.png")
    return root


def test_beam_csv_equals_local_csv(mixed_folder, model_file, tmp_path):
    local = tmp_path / "local.csv"
    on_beam = tmp_path / "beam.csv"
    predict_folder(mixed_folder, local, PredictOptions(model=model_file, probabilities=True))
    options = PredictOptions(engine="beam", model=model_file, probabilities=True)
    summary = predict_folder(mixed_folder, on_beam, options)
    metrics = summary.engine_counters
    # Same header, rows, order, predictions, confidences and probabilities (6 decimals),
    # and the same error rows: byte for byte.
    assert on_beam.read_bytes() == local.read_bytes()
    lines = on_beam.read_text().splitlines()
    assert len(lines) == 1 + 45
    assert lines[1].startswith("000.png,")
    errors = [line.split(",")[0] for line in lines[1:] if line.split(",")[4]]
    assert errors == ["broken.png", "sub/empty.jpg", "sub/words.png"]
    assert "empty file (0 bytes)" in on_beam.read_text()
    assert (summary.found, summary.errors, summary.skipped) == (45, 3, 2)
    # It really ran on Beam: the model handler counted its inferences, and the decode
    # step ran on more than one worker thread.
    assert metrics["inferences"] == 42
    workers = [name for name in metrics if name.startswith("worker ")]
    assert len(workers) >= 2, metrics
    assert sum(metrics[name] for name in workers) == 45  # every file decoded once


@pytest.mark.slow
def test_cli_engine_beam(mixed_folder, model_file, tmp_path, caplog):
    out = tmp_path / "cli.csv"
    result = runner.invoke(
        app,
        ["predict", str(mixed_folder), "-o", str(out), "--model", str(model_file)]
        + ["--engine", "beam", "--beam-max-batch", "16", "--no-recursive"],
    )
    assert result.exit_code == ExitCode.PARTIAL, result.output  # broken.png
    rows = out.read_text().splitlines()[1:]
    assert len(rows) == 25 and not any("/" in r.split(",")[0] for r in rows)
    # Beam's warning that it cannot read memory (without torch) would reach cron mail
    assert not [r for r in caplog.records if "Resource module" in r.getMessage()]


def test_engine_beam_without_the_extra(monkeypatch, digit_folder, tmp_path):
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # import fails as if absent
    result = runner.invoke(
        app, ["predict", str(digit_folder[0]), "-o", str(tmp_path / "o.csv"), "--engine", "beam"]
    )
    assert result.exit_code == ExitCode.USAGE
    assert "pip install 'batchdigits[beam]'" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.csv").exists()


def test_beam_options():
    assert beam_flags(["runner=DataflowRunner", "--project=p"]) == [
        "--runner=DataflowRunner",
        "--project=p",
    ]
    result = runner.invoke(
        app, ["predict", ".", "--engine", "beam", "--beam-option", "no-equals-sign"]
    )
    assert result.exit_code == ExitCode.USAGE and "KEY=VALUE" in result.stderr
    result = runner.invoke(app, ["predict", ".", "--engine", "beam", "--incremental"])
    assert result.exit_code == ExitCode.USAGE and "local engine only" in result.stderr


def test_inference_failures_become_error_rows(mixed_folder, model_file, tmp_path, monkeypatch):
    """A batch the model fails on goes to RunInference's failure output: its files get
    error rows, the others are predicted, the run completes."""
    from batchdigits.model.inference import Inference

    real = Inference.predict_prepared

    def failing(self, grays):
        if any(g.shape == (90, 90) for g in grays):  # the JPEGs of the subfolder
            raise RuntimeError("simulated model failure")
        return real(self, grays)

    monkeypatch.setattr(Inference, "predict_prepared", failing)
    out = tmp_path / "beam.csv"
    summary = predict_folder(
        mixed_folder,
        out,
        PredictOptions(
            engine="beam", model=model_file, beam=BeamSettings(min_batch=1, max_batch=4)
        ),
    )
    rows = {line.split(",")[0]: line for line in out.read_text().splitlines()[1:]}
    assert len(rows) == 45 and summary.found == 45
    failed = [path for path, line in rows.items() if "model failed (RuntimeError)" in line]
    assert {f"sub/{i:03d}.jpg" for i in range(24, 36)} <= set(failed)
    assert len(failed) < 42  # only the failing batches
    assert rows["000.png"].split(",")[1].isdigit() or "model failed" in rows["000.png"]


@pytest.mark.slow
def test_local_engine_imports_nothing_of_beam(digit_folder, model_file, tmp_path):
    import subprocess

    code = (
        "import sys\n"
        "from batchdigits.cli import app\n"
        f"sys.argv = ['batchdigits', 'predict', {str(digit_folder[0])!r}, '-o', "
        f"{str(tmp_path / 'o.csv')!r}, '--model', {str(model_file)!r}, '-q']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "assert 'batchdigits.imaging.pipeline' in sys.modules\n"
        "print('beam imported:', 'apache_beam' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "beam imported: False" in done.stdout, done.stderr[-2000:]
    assert (tmp_path / "o.csv").exists(), done.stderr[-2000:]


@pytest.mark.slow
def test_beam_equals_local_for_any_batch_size_and_any_file_name(mixed_folder, model_file, tmp_path):
    """The model call has --batch-size's shape on both engines (not --beam-max-batch's),
    and a file name that is not valid UTF-8 travels through Beam as bytes."""
    import os

    name = os.path.join(os.fsencode(mixed_folder), b"odd\xffname.png")
    Image.fromarray(np.zeros((28, 28), np.uint8) + 255).save(os.fsdecode(name))
    for batch_size in (8, 100):
        options = PredictOptions(model=model_file, batch_size=batch_size, probabilities=True)
        local, on_beam = tmp_path / f"local{batch_size}.csv", tmp_path / f"beam{batch_size}.csv"
        predict_folder(mixed_folder, local, options)
        summary = predict_folder(mixed_folder, on_beam, replace(options, engine="beam"))
        assert on_beam.read_bytes() == local.read_bytes()
        assert summary.found == 46 and "odd\\xffname.png" in on_beam.read_text()


def test_a_cloud_path_without_its_beam_extra_is_a_usage_error(tmp_path):
    pytest.importorskip("apache_beam")
    try:
        import apache_beam.io.gcp.gcsfilesystem  # noqa: F401

        pytest.skip("Beam's GCP extra is installed here")
    except ImportError:
        pass
    result = runner.invoke(
        app, ["predict", "gs://bucket/x", "--engine", "beam", "-o", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "pip install 'apache-beam[gcp]'" in result.stderr and "bug" not in result.stderr
    result = runner.invoke(
        app, ["predict", "nope://x", "--engine", "beam", "-o", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == ExitCode.USAGE and "a scheme Beam knows" in result.stderr


COPY_A_REMOTE_MODEL = """
import io, os, stat, sys
from apache_beam.io.filesystems import FileSystems
from batchdigits.run import beam_steps

source = sys.argv[1]
FileSystems.open = staticmethod(lambda path: open(source, "rb"))  # gs:// read as a file
first = beam_steps._local_copy("gs://bucket/models/m.keras")
again = beam_steps._local_copy("gs://bucket/models/m.keras")
folder = os.path.dirname(first)
assert first == again, (first, again)
assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
assert open(first, "rb").read() == open(source, "rb").read()
assert beam_steps._local_copy(None) is None and beam_steps._local_copy("/m.keras") == "/m.keras"
print(folder)
"""


def test_a_remote_model_is_copied_into_a_private_folder_removed_at_exit(tmp_path):
    """Once per worker process, mode 0700, under a name nobody can plant, and gone
    when the process ends."""
    import subprocess

    source = tmp_path / "m.keras"
    source.write_bytes(b"model bytes" * 1000)
    done = subprocess.run(
        [sys.executable, "-c", COPY_A_REMOTE_MODEL, str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    folder = done.stdout.strip().splitlines()[-1]
    assert os.path.basename(folder).startswith("batchdigits-model-")
    assert not os.path.exists(folder)  # removed when the process ended
