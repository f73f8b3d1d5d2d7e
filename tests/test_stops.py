"""Signals: recorded at start-up, raised at once while a command runs, deferred to between
batches inside TensorFlow, and the process left as it was found afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
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
    (tmp_path / "out.csv").write_text("path,prediction,confidence,needs_review,error\n")
    proc = subprocess.Popen(
        [EXE, "predict", str(tmp_path), "-o", str(tmp_path / "out.csv")],
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.15)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "previous output is kept" in stderr and "Traceback" not in stderr
