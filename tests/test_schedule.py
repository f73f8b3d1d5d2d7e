"""Safe to schedule: the lock, incremental runs, foreign outputs, quiet and cron-friendly
output, the JSON summary, signals, and the jobs/ wrapper under a bare environment."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import EXE
from typer.testing import CliRunner

from batchdigits.cli import app
from batchdigits.run.lock import output_lock

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def predict(*args: str):
    return runner.invoke(app, ["predict", *args])


def test_second_run_on_the_same_output_exits_75_naming_the_first(
    digit_folder, tmp_path, model_file
):
    root, _ = digit_folder
    out = tmp_path / "out.csv"
    summary = tmp_path / "s.json"
    with output_lock(out):
        result = predict(
            str(root), "-o", str(out), "--model", str(model_file), "--summary-json", str(summary)
        )
    assert result.exit_code == 75, result.output
    assert f"pid {os.getpid()}" in result.stderr and "started" in result.stderr
    assert not out.exists()  # no work was done
    assert json.loads(summary.read_text())["exit_code"] == 75


def test_a_planted_lock_link_is_refused_and_its_target_kept(digit_folder, tmp_path, model_file):
    """A cron job writing into a folder others can write to: ``out.csv.lock`` planted as a
    link to a file the job may write must not be truncated or written."""
    root, _ = digit_folder
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"someone's data\n")
    out = tmp_path / "out.csv"
    (tmp_path / "out.csv.lock").symlink_to(victim)
    result = predict(str(root), "-o", str(out), "--model", str(model_file))
    assert result.exit_code == 73, result.output
    assert "is a symbolic link" in result.stderr and "Traceback" not in result.output
    assert victim.read_bytes() == b"someone's data\n"
    assert not out.exists()


@pytest.mark.parametrize("bad, code", [("folder", 66), ("model", 66), ("corrupt model", 65)])
def test_a_run_that_fails_its_checks_leaves_no_lock(digit_folder, tmp_path, model_file, bad, code):
    root, _ = digit_folder
    out = tmp_path / "out.csv"
    model = model_file
    if bad == "folder":
        root = tmp_path / "missing"
    elif bad == "model":
        model = tmp_path / "absent.keras"
    else:
        model = tmp_path / "corrupt.keras"
        model.write_bytes(b"PK\x03\x04 not a whole zip")
    result = predict(str(root), "-o", str(out), "--model", str(model))
    assert result.exit_code == code, result.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == []


def test_a_run_removes_its_lock(digit_folder, tmp_path, model_file):
    root, _ = digit_folder
    out = tmp_path / "out.csv"
    result = predict(str(root), "-o", str(out), "--model", str(model_file))
    assert result.exit_code == 3, result.output
    assert out.is_file() and not (tmp_path / "out.csv.lock").exists()


def test_wait_lock_waits_for_the_other_run(digit_folder, tmp_path, model_file):
    root, _ = digit_folder
    out = tmp_path / "out.csv"
    held, release = threading.Event(), threading.Event()

    def hold():
        with output_lock(out):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    threading.Timer(1.0, release.set).start()
    t0 = time.monotonic()
    result = predict(str(root), "-o", str(out), "--model", str(model_file), "--wait-lock", "20")
    holder.join()
    assert result.exit_code == 3, result.output  # broken.png: CSV complete, one error
    assert time.monotonic() - t0 >= 0.9 and out.is_file()
    # Waiting too short still ends in 75.
    with output_lock(out):
        result = predict(
            str(root), "-o", str(out), "--model", str(model_file), "--wait-lock", "0.5"
        )
    assert result.exit_code == 75 and "after waiting 0.5 s" in result.stderr


def test_foreign_output_is_not_overwritten_without_force(digit_folder, tmp_path, model_file):
    root, _ = digit_folder
    out = tmp_path / "notes.csv"
    out.write_text("name,phone\nAda,123\n")
    result = predict(str(root), "-o", str(out), "--model", str(model_file))
    assert result.exit_code == 73 and "--force" in result.stderr
    assert out.read_text() == "name,phone\nAda,123\n"
    result = predict(str(root), "-o", str(out), "--model", str(model_file), "--force")
    assert result.exit_code == 3
    assert out.read_text().startswith("path,prediction,confidence,needs_review,error\n")


def _summary(path: Path) -> dict:
    return json.loads(path.read_text())


def test_incremental_runs_equal_full_runs_and_count_what_they_did(
    digit_folder, tmp_path, model_file, mnist
):
    from conftest import save_digit

    root, _ = digit_folder
    out, full, s = tmp_path / "inc.csv", tmp_path / "full.csv", tmp_path / "s.json"
    args = ["-o", str(out), "--model", str(model_file), "--incremental", "--summary-json", str(s)]
    assert predict(str(root), *args).exit_code == 3
    first = _summary(s)
    assert (first["new"], first["reused"], first["found"]) == (17, 0, 17)
    assert Path(str(out) + ".state").is_file()

    # Nothing changed: everything reused but the broken file, which is tried again.
    assert predict(str(root), *args).exit_code == 3
    again = _summary(s)
    assert (again["reused"], again["retried"], again["new"], again["changed"]) == (16, 1, 0, 0)

    # One new, one changed (other digit, newer mtime), one removed, the broken one fixed.
    save_digit(root / "png" / "new.png", mnist.x_test[40])
    changed = root / "png" / "digit_00.png"
    save_digit(changed, mnist.x_test[41])
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    (root / "digit_11.PNG").unlink()
    save_digit(root / "broken.png", mnist.x_test[42])
    result = predict(str(root), *args)
    assert result.exit_code == 0, result.output
    third = _summary(s)
    assert (third["new"], third["changed"], third["removed"], third["retried"]) == (1, 1, 1, 1)
    assert third["reused"] == 17 - 1 - 1 - 1
    assert "reused" in result.stderr

    assert predict(str(root), "-o", str(full), "--model", str(model_file)).exit_code == 0
    assert out.read_bytes() == full.read_bytes()  # identical to a full run

    # Same size, new mtime: predicted again (and still equal to a full run).
    touched = root / "png" / "digit_01.png"
    size = touched.stat().st_size
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert predict(str(root), *args).exit_code == 0
    assert touched.stat().st_size == size
    assert (_summary(s)["changed"], _summary(s)["reused"]) == (1, 16)
    assert out.read_bytes() == full.read_bytes()

    # A different model reprocesses everything; so does another review threshold.
    from batchdigits.model.network import with_temperature
    from batchdigits.model.store import load_model, read_card, save_model

    changed = tmp_path / "other.keras"  # the same network, another calibration
    save_model(with_temperature(load_model(model_file), 1.5), changed, read_card(model_file))
    other = ["-o", str(out), "--incremental", "--summary-json", str(s), "--model", str(changed)]
    assert predict(str(root), *other).exit_code == 0
    assert _summary(s)["reused"] == 0 and _summary(s)["predicted"] == 17
    result = predict(str(root), *args, "--review-threshold", "0.5")
    assert result.exit_code == 0 and _summary(s)["reused"] == 0


def test_incremental_ignores_a_state_that_does_not_match_the_csv(
    digit_folder, tmp_path, model_file
):
    root, _ = digit_folder
    out, s = tmp_path / "inc.csv", tmp_path / "s.json"
    args = ["-o", str(out), "--model", str(model_file), "--incremental", "--summary-json", str(s)]
    predict(str(root), *args)
    # A full run replaced the CSV afterwards (its rows may differ): the state is stale.
    predict(str(root), "-o", str(out), "--model", str(model_file), "--review-threshold", "0.1")
    predict(str(root), *args)
    assert _summary(s)["reused"] == 0 and _summary(s)["new"] == 17


def test_quiet_prints_nothing_on_success_but_speaks_on_partial(tmp_path, model_file, mnist):
    from conftest import save_digit

    root = tmp_path / "ok"
    for i in range(3):
        save_digit(root / f"{i}.png", mnist.x_test[i])
    result = predict(str(root), "-o", str(tmp_path / "o.csv"), "--model", str(model_file), "-q")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    (root / "bad.png").write_bytes(b"not a png")
    result = predict(str(root), "-o", str(tmp_path / "o.csv"), "--model", str(model_file), "-q")
    assert result.exit_code == 3 and "1 errors" in result.stderr


def test_summary_json_and_plain_logs_without_a_terminal(digit_folder, tmp_path, model_file):
    root, _ = digit_folder
    s = tmp_path / "s.json"
    result = predict(
        str(root),
        "-o",
        str(tmp_path / "o.csv"),
        "--model",
        str(model_file),
        "--summary-json",
        str(s),
        "--log-every",
        "1",
    )
    assert result.exit_code == 3
    data = _summary(s)
    assert data["exit_code"] == 3 and data["found"] == 17 and data["errors"] == 1
    assert data["output"] == str(tmp_path / "o.csv") and data["seconds"] > 0
    assert data["model_fingerprint"].startswith("sha256:") and data["images_per_second"] > 0
    assert "\x1b[" not in result.stderr and "\r" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3


def _slow_run(root: Path, out: Path, model: Path) -> subprocess.Popen:
    """predict as a real process, slowed down (one image per model call) so it can be
    caught while writing."""
    return subprocess.Popen(
        [EXE, "predict", str(root), "-o", str(out), "--model", str(model), "--batch-size", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_temp(folder: Path, name: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until rows reach the temporary CSV: the run is inside its stream (the file itself
    appears before TensorFlow is imported; a stop there is test_cli's case)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.stat().st_size > 0 for p in folder.glob(f".{name}.*.tmp")):
            return
        time.sleep(0.05)
    raise AssertionError(f"no rows reached a temporary file (exit {proc.poll()})")


@pytest.fixture
def many_digits(tmp_path, mnist):
    from conftest import save_digit

    root = tmp_path / "many"
    for i in range(3000):
        save_digit(root / f"{i:04d}.png", mnist.x_test[i % 1000])
    return root


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_keep_the_previous_csv(many_digits, tmp_path, model_file, sig, code):
    out = tmp_path / "out.csv"
    previous = "path,prediction,confidence,needs_review,error\nold.png,1,0.990000,false,\n"
    out.write_text(previous)
    proc = _slow_run(many_digits, out, model_file)
    _wait_for_temp(tmp_path, "out.csv", proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "previous output is kept" in stderr and "Traceback" not in stderr
    assert out.read_text() == previous
    assert not list(tmp_path.glob(".out.csv.*.tmp"))


@pytest.mark.slow
def test_sigkill_keeps_the_previous_csv_and_the_next_run_cleans_up(
    many_digits, tmp_path, model_file
):
    out = tmp_path / "out.csv"
    previous = "path,prediction,confidence,needs_review,error\nold.png,1,0.990000,false,\n"
    out.write_text(previous)
    proc = _slow_run(many_digits, out, model_file)
    _wait_for_temp(tmp_path, "out.csv", proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert out.read_text() == previous
    assert list(tmp_path.glob(".out.csv.*.tmp"))  # left behind by the killed run
    # The killed run's lock died with it; the next run works and removes the leftovers.
    small = tmp_path / "small"
    shutil.copytree(many_digits, small, ignore=lambda d, names: names[20:])
    result = predict(str(small), "-o", str(out), "--model", str(model_file))
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.glob(".out.csv.*.tmp"))
    assert len(out.read_text().splitlines()) == 21


def _cron_env(**extra: str) -> list[str]:
    """cron's environment: ``env -i`` with only a minimal PATH (and ``extra``)."""
    return ["env", "-i", "PATH=/usr/bin:/bin", *(f"{k}={v}" for k, v in extra.items())]


@pytest.mark.slow
def test_wrapper_runs_under_crons_environment(tmp_path, model_file, mnist):
    """No HOME, then an unusable HOME; working directory /; settings from arguments,
    then from a config file. CSV, summary and dated summary copies appear; nothing is
    printed on success; Keras writes nothing into HOME."""
    from conftest import save_digit

    root = tmp_path / "scans"
    for i in range(4):
        save_digit(root / f"{i}.png", mnist.x_test[i])
    out = tmp_path / "results" / "p.csv"
    out.parent.mkdir()
    wrapper = str(REPO / "jobs" / "run-predict.sh")
    venv = sys.prefix
    model = ["--model", str(model_file)]
    run = dict(capture_output=True, text=True, timeout=300, cwd="/")

    done = subprocess.run(
        [*_cron_env(BATCHDIGITS_VENV=venv), "/bin/sh", wrapper, str(root), str(out), *model],
        **run,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""  # quiet: cron sends no mail
    assert len(out.read_text().splitlines()) == 5
    summaries = out.parent / "summaries"
    latest = json.loads((summaries / "latest.json").read_text())
    assert latest["exit_code"] == 0 and latest["new"] == 4
    assert len(list(summaries.glob("summary-*.json"))) == 1

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    config = tmp_path / "predict.conf"
    config.write_text(
        f"BATCHDIGITS_VENV={venv}\nBATCHDIGITS_INPUT={root}\nBATCHDIGITS_OUTPUT={out}\n"
        f"BATCHDIGITS_OPTIONS=--model {model_file}\n"
    )
    env = _cron_env(HOME=str(blocked / "home"), BATCHDIGITS_CONFIG=str(config))
    done = subprocess.run([*env, "/bin/sh", wrapper], **run)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    assert json.loads((summaries / "latest.json").read_text())["reused"] == 4
    assert len(list(summaries.glob("summary-*.json"))) == 2

    usage = subprocess.run([*_cron_env(), "/bin/sh", wrapper], **run)
    assert usage.returncode == 2 and "usage" in usage.stderr


@pytest.mark.slow
def test_crontab_lines_command_runs_under_env_i(tmp_path, model_file, mnist):
    """The command of jobs/crontab.example, with its paths pointed at a test folder."""
    from conftest import save_digit

    root = tmp_path / "scans"
    save_digit(root / "a.png", mnist.x_test[0])
    out = tmp_path / "results" / "predictions.csv"
    out.parent.mkdir()
    line = [x for x in (REPO / "jobs" / "crontab.example").read_text().splitlines() if x[:1] == "*"]
    command = " ".join(line[0].split()[5:])
    command = command.replace("/opt/batchdigits/jobs", str(REPO / "jobs"))
    command = command.replace("/srv/scans", str(root)).replace("/srv/results", str(out.parent))
    env = _cron_env(BATCHDIGITS_VENV=sys.prefix, BATCHDIGITS_OPTIONS=f"--model {model_file}")
    done = subprocess.run([*env, "/bin/sh", "-c", command], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and out.is_file()
    assert (out.parent / "summaries" / "latest.json").is_file()


@pytest.mark.slow
def test_two_concurrent_runs_one_works_the_other_exits_75(many_digits, tmp_path, model_file):
    out = tmp_path / "out.csv"
    first = _slow_run(many_digits, out, model_file)
    _wait_for_temp(tmp_path, "out.csv", first)
    second = subprocess.run(
        [EXE, "predict", str(many_digits), "-o", str(out), "--model", str(model_file)],
        capture_output=True,
        text=True,
    )
    assert second.returncode == 75, second.stderr
    assert f"pid {first.pid}" in second.stderr
    first.terminate()
    first.communicate(timeout=60)


@pytest.mark.slow
def test_with_wait_lock_concurrent_runs_both_succeed(tmp_path, model_file, mnist):
    from conftest import save_digit

    root = tmp_path / "few"
    for i in range(300):
        save_digit(root / f"{i:03d}.png", mnist.x_test[i])
    out = tmp_path / "out.csv"
    cmd = [EXE, "predict", str(root), "-o", str(out), "--model", str(model_file)]
    procs = [
        subprocess.Popen([*cmd, "--wait-lock", "120"], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert [code for code, _ in results] == [0, 0], results
    assert len(out.read_text().splitlines()) == 301


def test_job_scripts_pass_shellcheck():  # shellcheck comes with the test extra
    scripts = [REPO / "jobs" / "run-predict.sh", REPO / ".ci" / "run"]
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).with_name("shellcheck"))
    done = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_unexpected_errors_exit_1_without_a_traceback(digit_folder, tmp_path, monkeypatch):
    import batchdigits.run.driver as predict_module

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire [sector 7]")

    monkeypatch.setattr(predict_module, "predict_folder", boom)
    root, _ = digit_folder
    s = tmp_path / "s.json"
    result = predict(str(root), "-o", str(tmp_path / "o.csv"), "--summary-json", str(s))
    assert result.exit_code == 1
    assert "unexpected error: RuntimeError: disk on fire [sector 7]" in result.stderr
    assert "bug" in result.stderr
    assert "Traceback" not in result.output
    assert _summary(s)["exit_code"] == 1 and "disk on fire" in _summary(s)["error"]


def test_incremental_streams_and_survives_a_sidecar_that_disagrees(
    digit_folder, tmp_path, model_file
):
    """The previous rows are read as a stream beside the listing; where the sidecar and
    the CSV disagree the stream stops and the rest is predicted again: the CSV still
    equals a full run's."""
    from batchdigits.run.state import load_previous, state_path

    root, _ = digit_folder
    out, full, s = tmp_path / "inc.csv", tmp_path / "full.csv", tmp_path / "s.json"
    args = ["-o", str(out), "--model", str(model_file), "--incremental", "--summary-json", str(s)]
    predict(str(root), *args)
    predict(str(root), "-o", str(full), "--model", str(model_file))
    sidecar = state_path(out)
    lines = sidecar.read_text().splitlines(keepends=True)
    settings = json.loads(lines[0])["settings"]
    rows = load_previous(out, settings).rows()
    assert next(rows)[0] == lines[1].split(",")[0]  # a generator, one row at a time
    rows.close()
    lines[6] = "not/the/same/path.png" + lines[6][lines[6].index(",") :]
    sidecar.write_text("".join(lines))
    assert predict(str(root), *args).exit_code == 3
    summary = _summary(s)
    assert summary["reused"] == 5 - 1  # rows before the disagreement (less the broken one)
    assert summary["reused"] + summary["new"] + summary["retried"] == 17
    assert out.read_bytes() == full.read_bytes()


def test_nothing_new_imports_no_tensorflow_and_touches_nothing(digit_folder, tmp_path, model_file):
    """The cron case: an --incremental run over an unchanged folder lists, stats and
    plans, finds nothing to predict, and stops there: TensorFlow (and numpy) are never
    imported, the CSV and sidecar keep their bytes and mtimes, the summary is written."""
    root, _ = digit_folder
    (root / "broken.png").unlink()  # an error row would be retried every run
    out = tmp_path / "p.csv"
    args = ["predict", str(root), "-o", str(out), "--model", str(model_file), "--incremental"]
    assert predict(*args[1:]).exit_code == 0
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in (out, Path(f"{out}.state"))]
    code = (
        "import sys\n"
        "from batchdigits.cli import app\n"
        f"sys.argv = ['batchdigits', *{args!r}, '--summary-json', {str(tmp_path / 's.json')!r}]\n"
        "try:\n"
        "    app()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "assert 'tensorflow' not in sys.modules and 'numpy' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    after = [(p.read_bytes(), p.stat().st_mtime_ns) for p in (out, Path(f"{out}.state"))]
    assert after == before
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["reused"] == summary["found"] == 16 and summary["predicted_this_run"] == 0


def _fake_venv(tmp_path: Path) -> Path:
    """A virtual environment whose ``batchdigits`` only writes its --summary-json, and
    whose ``date`` always says the same second (so runs share a second for sure)."""
    venv = tmp_path / "fake-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f'PATH="{venv}/bin:$PATH"\n')
    fake = venv / "bin" / "batchdigits"
    fake.write_text(
        "#!/bin/sh\n"
        'while [ "$#" -gt 0 ]; do\n'
        '  if [ "$1" = --summary-json ]; then echo "{\\"run\\": $$}" > "$2"; fi\n'
        "  shift\n"
        "done\n"
    )
    date = venv / "bin" / "date"
    date.write_text("#!/bin/sh\necho 20261203T080000Z\n")
    for script in (fake, date):
        script.chmod(0o755)
    return venv


def test_wrapper_keeps_every_runs_summary_in_the_same_second(tmp_path):
    venv = _fake_venv(tmp_path)
    out = tmp_path / "results" / "p.csv"
    out.parent.mkdir()
    wrapper = str(REPO / "jobs" / "run-predict.sh")
    env = _cron_env(BATCHDIGITS_VENV=str(venv))
    for _ in range(3):
        done = subprocess.run(
            [*env, "/bin/sh", wrapper, str(tmp_path), str(out)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    summaries = sorted((out.parent / "summaries").glob("summary-*.json"))
    runs = [json.loads(p.read_text())["run"] for p in summaries]
    assert len(summaries) == 3 and len(set(runs)) == 3
    assert all(p.name.startswith("summary-20261203T080000Z-") for p in summaries)
    latest = json.loads((out.parent / "summaries" / "latest.json").read_text())
    assert latest["run"] in runs
