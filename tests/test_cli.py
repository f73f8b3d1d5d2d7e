"""The command line: exit codes, stdout/stderr, and the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from helpers import EXE
from typer.testing import CliRunner

from batchdigits.cli import app
from batchdigits.model.store import card_path

runner = CliRunner()


def test_help_lists_commands_without_importing_tensorflow():
    code = (
        "import sys; from typer.testing import CliRunner; from batchdigits.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); print(r.output); "
        "assert 'tensorflow' not in sys.modules, 'TensorFlow imported for --help'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for command in ("train", "predict", "info"):
        assert command in done.stdout


def test_predict_exit_codes_and_streams(digit_folder, model_file, tmp_path):
    root, labels = digit_folder
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(root), "-o", str(out), "--model", str(model_file)])
    assert result.exit_code == 3, result.output  # broken.png could not be read
    assert result.stdout == ""  # results only in the CSV
    assert f"{len(labels) + 1} image files" in result.stderr
    assert "1 errors" in result.stderr and str(out) in result.stderr
    assert len(pd.read_csv(out)) == len(labels) + 1

    (root / "broken.png").unlink()
    result = runner.invoke(app, ["predict", str(root), "-o", str(out), "--model", str(model_file)])
    assert result.exit_code == 0, result.output


def test_predict_missing_input_is_66(tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path / "nope"), "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 66
    assert "does not exist" in result.stderr and "Traceback" not in result.output
    (tmp_path / "file.png").write_bytes(b"x")
    result = runner.invoke(app, ["predict", str(tmp_path / "file.png")])
    assert result.exit_code == 66 and "is not a folder" in result.stderr


def test_predict_unwritable_output_is_73(digit_folder, model_file, tmp_path):
    root, _ = digit_folder
    bad = tmp_path / "missing-dir" / "o.csv"
    args = ["predict", str(root), "--model", str(model_file), "-o"]
    result = runner.invoke(app, [*args, str(bad)])
    assert result.exit_code == 73 and "missing-dir" in result.stderr
    result = runner.invoke(app, [*args, str(tmp_path)])  # a folder
    assert result.exit_code == 73 and "is a folder" in result.stderr
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        result = runner.invoke(app, [*args, str(locked / "o.csv")])
        assert result.exit_code == 73


def test_predict_bad_model_file(digit_folder, tmp_path):
    root, _ = digit_folder
    bogus = tmp_path / "bogus.keras"
    bogus.write_text("not a model")
    result = runner.invoke(
        app, ["predict", str(root), "--model", str(bogus), "-o", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 65 and "cannot load model" in result.stderr
    result = runner.invoke(app, ["predict", str(root), "--model", str(tmp_path / "none.keras")])
    assert result.exit_code == 66 and "--train-if-missing" in result.stderr


def test_usage_errors_are_2(tmp_path):
    assert runner.invoke(app, ["predict"]).exit_code == 2
    assert runner.invoke(app, ["predict", str(tmp_path), "--batch-size", "0"]).exit_code == 2
    assert runner.invoke(app, ["train", "--epochs", "zero"]).exit_code == 2
    result = runner.invoke(app, ["predict", str(tmp_path), "--train-if-missing"])
    assert result.exit_code == 2 and "--model" in result.stderr


def test_info_prints_the_card(model_file):
    result = runner.invoke(app, ["info", "--model", str(model_file)])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == json.loads(card_path(model_file).read_text())


def test_info_of_the_shipped_model():
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    card = json.loads(result.stdout)
    assert card["test_accuracy"] >= 0.993 and card["test_images"] == 10000


def test_train_without_any_data_source_is_66(tmp_path, monkeypatch):
    import batchdigits.training.data as data

    monkeypatch.delenv("BATCHDIGITS_MNIST", raising=False)
    monkeypatch.setattr(data, "_keras_download", lambda: (_ for _ in ()).throw(OSError("offline")))
    result = runner.invoke(app, ["train", "-o", str(tmp_path / "m.keras")])
    assert result.exit_code == 66
    assert "Tried:" in result.stderr and "--data" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.keras").exists()


def test_train_with_corrupt_data_is_65(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"nonsense")
    result = runner.invoke(
        app, ["train", "--data", str(tmp_path), "--skip-checksum", "-o", str(tmp_path / "m.keras")]
    )
    assert result.exit_code == 65 and "npz" in result.stderr


@pytest.mark.slow
def test_predict_train_if_missing(mnist_path, digit_folder, tmp_path, monkeypatch):
    """One command trains (train's defaults, here shortened) and then predicts."""
    import batchdigits.training.train as train_module

    real = train_module.TrainConfig
    monkeypatch.setattr(
        train_module, "TrainConfig", lambda: real(epochs=1, limit=1000, batch_size=32)
    )
    root, labels = digit_folder
    model = tmp_path / "new" / "m.keras"
    out = tmp_path / "o.csv"
    args = ["predict", str(root), "--model", str(model), "--train-if-missing"]
    result = runner.invoke(app, [*args, "--data", str(mnist_path), "-o", str(out)])
    assert result.exit_code == 3, result.output
    assert model.is_file() and card_path(model).is_file()
    assert "training a new model" in result.stderr
    assert len(pd.read_csv(out)) == len(labels) + 1


@pytest.mark.slow
def test_console_script_in_a_subprocess(digit_folder, model_file, tmp_path):
    exe = EXE
    assert exe, "the batchdigits console script is not installed next to this Python"
    done = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "predict" in done.stdout

    root, labels = digit_folder
    out = tmp_path / "sub.csv"
    done = subprocess.run(
        [exe, "predict", str(root), "-o", str(out), "--model", str(model_file)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout == ""
    assert "\x1b[" not in done.stderr  # no colour codes when stderr is not a terminal
    assert len(pd.read_csv(out)) == len(labels) + 1

    done = subprocess.run(
        [sys.executable, "-m", "batchdigits", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("batchdigits ")


@pytest.mark.slow
def test_train_command_limit_500_one_epoch(mnist_path, tmp_path, mnist):
    out = tmp_path / "m.keras"
    args = ["train", "--data", str(mnist_path), "--limit", "500", "--epochs", "1", "-o", str(out)]
    result = runner.invoke(app, [*args, "--batch-size", "32", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert f"saved {out}" in result.stderr and "test accuracy" in result.stderr
    card = json.loads(card_path(out).read_text())
    assert card["limit"] == 500 and card["epochs"] == 1 and card["seed"] == 5
    assert card["train_images"] + card["validation_images"] == 500

    from batchdigits.model.store import load_model

    x = mnist.x_test[:32, ..., None].astype("float32")
    a = load_model(out)(x, training=False).numpy()
    b = load_model(out)(x, training=False).numpy()
    assert (a == b).all() and a.shape == (32, 10)


def test_help_shows_bracketed_extras_and_defaults():
    """Rich markup must not eat the square brackets of pip extras or hand-written defaults."""
    wide = {"COLUMNS": "200"}
    predict_help = CliRunner().invoke(app, ["predict", "--help"], env=wide).stdout
    assert "batchdigits[beam]" in predict_help and "[default: 32, or" in predict_help
    serve_help = CliRunner().invoke(app, ["serve", "--help"], env=wide).stdout
    assert "batchdigits[web]" in serve_help
    assert "serve" in CliRunner().invoke(app, ["--help"], env=wide).stdout


STOPPED_WHILE_LOADING = """
import os, signal, sys, time, types
import batchdigits.model.store as m
from batchdigits.cli import app

def load_model(path, compile=False):  # as Keras does: the stop ends a C import as ImportError
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    except BaseException:
        raise ImportError("initialization failed") from None

m.keras = lambda: types.SimpleNamespace(models=types.SimpleNamespace(load_model=load_model))
sys.argv = ["batchdigits", *sys.argv[1:]]
app()
"""


def test_a_stop_that_surfaces_as_another_error_is_reported_as_the_stop(
    digit_folder, model_file, tmp_path
):
    root, _ = digit_folder
    out = tmp_path / "out.csv"
    previous = "path,prediction,confidence,needs_review,error\nold.png,1,0.990000,false,\n"
    out.write_text(previous)
    args = ["predict", str(root), "-o", str(out), "--model", str(model_file)]
    run = subprocess.run(
        [sys.executable, "-c", STOPPED_WHILE_LOADING, *args], capture_output=True, text=True
    )
    assert run.returncode == 143, run.stderr
    assert "terminated (SIGTERM); the previous output is kept" in run.stderr
    assert "cannot load model" not in run.stderr and "Traceback" not in run.stderr
    assert out.read_text() == previous and not list(tmp_path.glob("*.tmp"))


IMPORT_WITH_NOISE = """
import os, signal, sys, time
import batchdigits.model.store as m
from batchdigits.cli import app
from batchdigits.runtime.native_stderr import captured_during_import

HOW = sys.argv[1]

def keras():  # an import that writes natively to fd 2, then is stopped or fails
    with captured_during_import():
        os.write(2, b"native import noise\\n")
        if HOW == "stop":
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        raise ImportError("the import failed")

m.keras = keras
sys.argv = ["batchdigits", *sys.argv[2:]]
app()
"""


@pytest.mark.parametrize("how, code, replayed", [("stop", 143, False), ("fail", 65, True)])
def test_the_import_noise_is_replayed_when_it_fails_not_when_it_is_stopped(
    digit_folder, model_file, tmp_path, how, code, replayed
):
    root, _ = digit_folder
    args = ["predict", str(root), "-o", str(tmp_path / "out.csv"), "--model", str(model_file)]
    run = subprocess.run(
        [sys.executable, "-c", IMPORT_WITH_NOISE, how, *args], capture_output=True, text=True
    )
    assert run.returncode == code, run.stderr
    assert ("native import noise" in run.stderr) == replayed, run.stderr
    assert "Traceback" not in run.stderr


ENDS_WITH_WITNESSES = """
import atexit, os, sys
from batchdigits.cli import main

def note(what):
    with open(os.environ["WITNESS"], "a") as f:
        f.write(what + "\\n")

class Witness:  # collected by Python's teardown of this module, if there is one
    def __del__(self, open=open, path=os.environ["WITNESS"]):  # builtins go first
        with open(path, "a") as f:
            f.write("teardown\\n")

witness = Witness()
atexit.register(lambda: (note("atexit"), sys.stdout.write("written at exit, not flushed")))
sys.argv = ["batchdigits", *sys.argv[1:]]
main()
"""


def _run_with_witnesses(tmp_path, *args):
    witness = tmp_path / "witness.txt"
    run = subprocess.run(
        [sys.executable, "-c", ENDS_WITH_WITNESSES, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "WITNESS": str(witness)},
    )
    return run, witness.read_text().split()


@pytest.mark.slow
def test_a_run_that_loaded_tensorflow_ends_without_the_teardown(digit_folder, model_file, tmp_path):
    root, labels = digit_folder
    out = tmp_path / "out.csv"
    run, seen = _run_with_witnesses(
        tmp_path, "predict", str(root), "-o", str(out), "--model", str(model_file)
    )
    assert run.returncode == 3, run.stderr  # the corrupt file's row: the code is kept
    assert len(pd.read_csv(out)) == len(labels) + 1 and not list(tmp_path.glob("*.tmp"))
    assert seen == ["atexit"]  # handlers ran; the slow teardown did not
    assert run.stdout == "written at exit, not flushed"  # flushed after the handlers


def test_a_run_without_tensorflow_exits_the_ordinary_way(tmp_path):
    run, seen = _run_with_witnesses(tmp_path, "--version")
    assert run.returncode == 0 and run.stdout.startswith("batchdigits ")
    assert seen == ["atexit", "teardown"]


class _Ended(Exception):
    pass


@pytest.fixture
def ending(monkeypatch):
    """end_process with TensorFlow loaded, the atexit handlers and os._exit recorded
    instead of run (this test process must go on)."""
    import atexit
    import types

    from batchdigits.cli import process as cli

    calls = []
    tf_module = sys.modules.get("tensorflow") or types.ModuleType("tensorflow")
    monkeypatch.setitem(sys.modules, "tensorflow", tf_module)
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: calls.append("atexit"))

    def exit_now(status):
        calls.append(status)
        raise _Ended

    monkeypatch.setattr(os, "_exit", exit_now)
    return cli.end_process, calls


@pytest.mark.parametrize(("code", "status"), [(None, 0), (0, 0), (3, 3), (143, 143)])
def test_end_process_keeps_the_exit_status(ending, code, status):
    end_process, calls = ending
    with pytest.raises(_Ended):
        end_process(code)
    assert calls == ["atexit", status]


def test_end_process_prints_a_message_code_and_exits_1(ending, capsys):
    end_process, calls = ending
    with pytest.raises(_Ended):
        end_process("cannot go on")
    assert calls == ["atexit", 1] and capsys.readouterr().err == "cannot go on\n"


def test_end_process_waits_for_threads_still_running(ending):
    import threading

    end_process, calls = ending
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        with pytest.raises(SystemExit) as stopped:
            end_process(3)
    finally:
        release.set()
        worker.join()
    assert stopped.value.code == 3 and calls == []  # the ordinary exit joins the thread


KERAS_EXTRAS_SEEN = """
import sys
from batchdigits.runtime import lazy as _lazy
if sys.argv[1] == "lean":
    _lazy.import_lean()
_lazy.keras()
from keras.src.trainers.data_adapters import array_slicing
loaded = [name for name in _lazy.KERAS_EXTRAS if name in sys.modules]
print(" ".join(loaded) or "-", "dataframes" if array_slicing.pandas else "no-dataframes")
import matplotlib.pyplot, pandas  # importable afterwards: the report draws with matplotlib
print(pandas.DataFrame({"a": [1]}).shape, matplotlib.pyplot.figure() is not None)
"""


@pytest.mark.parametrize(
    ("mode", "first_line"),
    [("lean", "- no-dataframes"), ("library", "pandas matplotlib dataframes")],
)
@pytest.mark.slow
def test_the_command_line_imports_keras_without_its_extras(mode, first_line):
    run = subprocess.run(
        [sys.executable, "-c", KERAS_EXTRAS_SEEN, mode], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [first_line, "(1, 1) True"]


def test_main_turns_the_lean_import_on(monkeypatch):
    from batchdigits.cli import process as cli
    from batchdigits.runtime import lazy as _lazy

    monkeypatch.setitem(_lazy._lean, "on", False)
    seen = []
    monkeypatch.setattr(cli, "app", lambda: seen.append(_lazy._lean["on"]))
    monkeypatch.setattr(cli, "end_process", lambda code: seen.append(code))
    cli.main()
    assert seen == [True, 0]


FAKE_MODULES = ("bd_fake_extra", "bd_fake_extra.sub", "bd_tolerant", "bd_needy")


@pytest.fixture
def fake_extras(tmp_path, monkeypatch):
    """A fake optional package and two modules that import it: one only if it can, one
    always; the lean import set to hide the fake package."""
    from batchdigits.runtime import lazy as _lazy

    (tmp_path / "bd_fake_extra").mkdir()
    (tmp_path / "bd_fake_extra" / "__init__.py").write_text("VALUE = 1\n")
    (tmp_path / "bd_fake_extra" / "sub.py").write_text("")
    (tmp_path / "bd_tolerant.py").write_text(
        "try:\n    import bd_fake_extra\nexcept ImportError:\n    bd_fake_extra = None\n"
    )
    (tmp_path / "bd_needy.py").write_text("import bd_fake_extra.sub\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_lazy, "KERAS_EXTRAS", ("bd_fake_extra",))
    monkeypatch.setitem(_lazy._lean, "on", True)
    yield _lazy._import
    for name in FAKE_MODULES:
        sys.modules.pop(name, None)


def test_a_lean_import_hides_the_extras_only_while_it_runs(fake_extras):
    tolerant = fake_extras("bd_tolerant")
    assert tolerant.bd_fake_extra is None and "bd_fake_extra" not in sys.modules
    import bd_fake_extra  # afterwards it imports as usual

    assert bd_fake_extra.VALUE == 1


def test_a_module_that_needs_an_extra_gets_the_whole_import(fake_extras):
    needy = fake_extras("bd_needy")
    assert needy.bd_fake_extra.VALUE == 1 and "bd_fake_extra.sub" in sys.modules
