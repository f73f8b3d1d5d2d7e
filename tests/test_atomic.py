"""Files that appear whole or not at all: the one atomic writer (no TensorFlow)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from batchdigits.atomic import AtomicFile, atomic_text, create_temp, remove_stale_temps
from batchdigits.errors import OutputError


@pytest.fixture
def no_umask_calls(monkeypatch):
    """Reading the umask by setting it races with other threads: never call it."""

    def refuse(*args):
        raise AssertionError("os.umask was called")

    monkeypatch.setattr(os, "umask", refuse)


def test_new_files_get_the_usual_mode_without_touching_the_umask(tmp_path, no_umask_calls):
    with atomic_text(tmp_path / "new.txt") as f:
        f.write("x")
    mode = stat.S_IMODE((tmp_path / "new.txt").stat().st_mode)
    assert mode == 0o666 & ~_umask_from_proc()


def test_a_replaced_file_keeps_its_mode(tmp_path, no_umask_calls):
    target = tmp_path / "kept.txt"
    target.write_text("old")
    target.chmod(0o640)
    with atomic_text(target) as f:
        f.write("new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_planted_link_at_a_temporary_name_is_never_written_through(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out.csv"
    names = iter(["aaaaaaaaaaaa", "bbbbbbbbbbbb"])
    monkeypatch.setattr("secrets.token_hex", lambda n: next(names))
    (tmp_path / ".out.csv.aaaaaaaaaaaa.tmp").symlink_to(victim)  # guessed name: taken
    fd, tmp = create_temp(target)
    os.close(fd)
    assert tmp.name == ".out.csv.bbbbbbbbbbbb.tmp" and victim.read_text() == "precious"


def test_abort_leaves_nothing_and_stale_temporaries_go(tmp_path):
    atomic = AtomicFile(tmp_path / "x.csv")
    atomic.file.write("half")
    atomic.abort()
    assert list(tmp_path.iterdir()) == []
    stale = tmp_path / ".x.csv.123456789abc.tmp"
    stale.write_text("left by a killed run")
    assert remove_stale_temps(tmp_path / "x.csv") == [stale] and not stale.exists()


def test_a_folder_that_cannot_hold_it_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="cannot write"):
        AtomicFile(tmp_path / "missing" / "x.csv")


def _umask_from_proc() -> int:
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask line")
