"""One run at a time per output: the lock in-process (the cross-process behaviour with
real runs is in test_schedule.py)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from batchdigits.errors import LockedError, OutputError
from batchdigits.lock import lock_path, output_lock


def test_lock_names_its_holder_and_is_released(tmp_path):
    out = tmp_path / "p.csv"
    with output_lock(out) as path:
        assert path == lock_path(out) == tmp_path / "p.csv.lock"
        assert f"pid {os.getpid()}, started " in path.read_text()
        holder = rf"another run \(pid {os.getpid()}, started"
        with pytest.raises(LockedError, match=holder), output_lock(out):
            pass
    with output_lock(out):  # released: taken again at once
        pass
    assert lock_path(out).exists()  # left in place on purpose


def test_wait_for_the_lock(tmp_path):
    out = tmp_path / "p.csv"
    held = threading.Event()

    def hold():
        with output_lock(out):
            held.set()
            time.sleep(0.6)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    t0 = time.monotonic()
    with pytest.raises(LockedError, match="after waiting 0.2 s"), output_lock(out, 0.2):
        pass
    with output_lock(out, wait_seconds=10):
        assert time.monotonic() - t0 >= 0.3
    thread.join()


def test_lock_in_a_folder_that_cannot_hold_it(tmp_path):
    missing = tmp_path / "missing" / "p.csv"
    with pytest.raises(OutputError, match=r"cannot write .*p\.csv\.lock"), output_lock(missing):
        pass
