"""The environment TensorFlow starts in: a private Keras home where $HOME cannot hold
one (no TensorFlow needed)."""

from __future__ import annotations

import os
import stat

import pytest

from batchdigits.runtime import environment


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(environment.tempfile, "tempdir", None)  # re-read TMPDIR
    return tmp_path


def test_the_private_home_is_made_mode_0700_and_reused(tmpdir_env):
    first = environment.private_keras_home()
    assert first == str(tmpdir_env / f"batchdigits-keras-{os.geteuid()}")
    assert stat.S_IMODE(os.lstat(first).st_mode) == 0o700
    assert environment.private_keras_home() == first


@pytest.mark.parametrize("planted", ["link", "open-folder", "file"])
def test_a_planted_name_is_never_used(tmpdir_env, planted):
    name = tmpdir_env / f"batchdigits-keras-{os.geteuid()}"
    elsewhere = tmpdir_env / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if planted == "link":
        name.symlink_to(elsewhere)
    elif planted == "open-folder":
        name.mkdir()
        name.chmod(0o777)
    else:
        name.write_text("")
    home = environment.private_keras_home()
    assert home != str(name) and os.path.realpath(home) != str(elsewhere)
    info = os.lstat(home)
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700


def test_keras_home_is_set_only_where_home_cannot_hold_it(tmpdir_env, monkeypatch):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmpdir_env / "missing-home"))
    environment.quiet_environment()
    assert os.environ["KERAS_HOME"].startswith(str(tmpdir_env))
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmpdir_env))
    environment.quiet_environment()
    assert "KERAS_HOME" not in os.environ
