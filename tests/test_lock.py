"""One run at a time per output: the lock in-process (the cross-process behaviour with
real runs is in test_schedule.py)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from batchdigits.errors import LockedError, OutputError
from batchdigits.run.lock import lock_path, output_lock


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
    assert not lock_path(out).exists()  # removed by the run that made it


def test_a_planted_symbolic_link_is_refused_and_its_target_kept(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    out = tmp_path / "p.csv"
    lock_path(out).symlink_to(victim)
    with pytest.raises(OutputError, match="is a symbolic link"), output_lock(out):
        pass
    assert victim.read_bytes() == b"precious\n"
    assert lock_path(out).is_symlink()  # not ours to remove either


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_lock_path_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    out = tmp_path / "p.csv"
    if kind == "fifo":
        os.mkfifo(lock_path(out))
    else:
        lock_path(out).mkdir()
    with pytest.raises(OutputError, match="lock file"), output_lock(out):
        pass


def test_a_stale_lock_file_is_replaced_not_truncated(tmp_path):
    out = tmp_path / "p.csv"
    stale = lock_path(out)
    stale.write_text("pid 1, started long ago\n")
    other = tmp_path / "hard-link"
    os.link(stale, other)  # another name for the same file: it must keep its bytes
    with output_lock(out) as path:
        assert f"pid {os.getpid()}" in path.read_text()
    assert other.read_text() == "pid 1, started long ago\n"
    assert not stale.exists()


def test_threads_never_hold_the_lock_together(tmp_path):
    out = tmp_path / "p.csv"
    inside, overlaps, done = [0], [], []

    def worker():
        for _ in range(15):
            with output_lock(out, wait_seconds=30):
                inside[0] += 1
                if inside[0] != 1:
                    overlaps.append(inside[0])
                time.sleep(0.002)
                inside[0] -= 1
        done.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(done) == 4 and overlaps == []
    assert not lock_path(out).exists()


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
