"""Signals: recorded at start-up, raised at once while a command runs, deferred to between
batches inside TensorFlow, and the process left as it was found afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import save_digit
from helpers import EXE
from typer.testing import CliRunner

from batchdigits import stops
from batchdigits.cli import app
from batchdigits.errors import Terminated


@pytest.fixture
def clean_handlers():
    before = {sig: signal.getsignal(sig) for sig in stops.SIGNALS}
    stops.clear_stops()
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)
    stops.clear_stops()


def test_recorded_signals_wait_for_check_stop(clean_handlers):
    stops.record_signals()
    os.kill(os.getpid(), signal.SIGTERM)  # would end this test process if not recorded
    time.sleep(0.01)
    assert isinstance(stops.recorded_stop(), Terminated)
    with pytest.raises(Terminated):
        stops.check_stop()


def test_stops_raise_at_once_inside_and_are_deferred_in_the_stream(clean_handlers):
    with stops.stops_raised():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        stops.clear_stops()
        with stops.stops_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # recorded only: nothing raised inside the stream
            deferred = stops.recorded_stop()
        assert type(deferred) is KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            stops.check_stop()
        assert signal.getsignal(signal.SIGINT) is stops._raise  # back to raising


def test_deferral_leaves_a_library_callers_handlers_alone(clean_handlers):
    mine = signal.getsignal(signal.SIGTERM)
    with stops.stops_deferred():
        assert signal.getsignal(signal.SIGTERM) is mine


def test_the_command_line_in_a_process_leaves_it_as_it_found_it(clean_handlers, tmp_path):
    """``cli.app`` called twice in one process: a stop in the first call is reported
    (130), not left behind for the second; the handlers are put back each time."""
    runner = CliRunner()
    before = {sig: signal.getsignal(sig) for sig in stops.SIGNALS}
    stops._stops.append(KeyboardInterrupt())  # a stop that arrived as the command started
    first = runner.invoke(app, ["predict", str(tmp_path), "-o", str(tmp_path / "a.csv")])
    assert first.exit_code == 130 and "interrupted" in first.stderr
    assert {sig: signal.getsignal(sig) for sig in stops.SIGNALS} == before
    second = runner.invoke(app, ["predict", str(tmp_path), "-o", str(tmp_path / "b.csv")])
    assert second.exit_code == 0, second.output
    assert (tmp_path / "b.csv").read_text().startswith("path,prediction")


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_start_up_ends_the_documented_way(tmp_path, sig, code):
    """Before TensorFlow, before Typer: the console script records the stop at once."""
    # One image, so the run must import TensorFlow (seconds): the signal lands in start-up,
    # sent once the console script has set its handlers (an empty folder can finish
    # before a fixed delay ends, and the signal then meets Python's own shutdown).
    save_digit(tmp_path / "a.png", np.full((28, 28), 255, np.uint8))
    (tmp_path / "out.csv").write_text("path,prediction,confidence,needs_review,error\n")
    proc = subprocess.Popen(
        [EXE, "predict", str(tmp_path), "-o", str(tmp_path / "out.csv")],
        stderr=subprocess.PIPE,
        text=True,
    )
    # Python catches SIGINT from its own start; SIGTERM is the one the script adds last.
    _wait_until_caught(proc.pid, signal.SIGTERM)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "previous output is kept" in stderr and "Traceback" not in stderr
    assert (tmp_path / "out.csv").read_text().count("\n") == 1


def _wait_until_caught(pid: int, sig: int, timeout: float = 30.0) -> None:
    """Until the process has a handler for ``sig`` (Linux: SigCgt in /proc/PID/status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(
            next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1], 16
        )
        if caught >> (sig - 1) & 1:
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} never set a handler for signal {sig}")
