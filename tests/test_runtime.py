"""The environment TensorFlow starts in: a private Keras home where $HOME cannot hold
one (no TensorFlow needed)."""

from __future__ import annotations

import os
import stat
import sys

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


def test_a_log_handler_made_during_the_quiet_import_writes_to_the_real_stderr(capsys):
    """TensorFlow makes its logger's handler while its import runs, with the held-back
    stream as ``sys.stderr``: afterwards its warnings still reach stderr, no "Logging
    error" about a closed file."""
    import logging

    from batchdigits.runtime.native_stderr import captured_during_import

    logger = logging.getLogger("batchdigits-test-import-logger")
    logger.propagate = False
    with captured_during_import():
        handler = logging.StreamHandler(sys.stderr)
        logger.addHandler(handler)
    try:
        logger.warning("a warning after the import")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "a warning after the import" in err and "Logging error" not in err
