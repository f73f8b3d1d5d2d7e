"""The process environment TensorFlow and Keras start in: quiet native logs, the
TensorFlow backend, and a private Keras home where ``$HOME`` cannot hold one."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import stat
import tempfile


def quiet_environment() -> None:
    # No C++ log lines: a corrupt JPEG is reported in the CSV, not by libjpeg on stderr.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    home = os.path.expanduser("~")
    if "KERAS_HOME" not in os.environ and (not os.path.isdir(home) or not os.access(home, os.W_OK)):
        # cron and systemd may run us with no (or a read-only) HOME: Keras would try
        # to create ~/.keras there. Point it at a private folder of this user's instead.
        os.environ["KERAS_HOME"] = private_keras_home()


def private_keras_home() -> str:
    """``$TMPDIR/batchdigits-keras-UID``: made with mode 0700 and used only while it is a
    real folder of this user's that nobody else can enter; otherwise (another user made
    it first, or a link stands there) a fresh private folder, removed at exit."""
    path = os.path.join(tempfile.gettempdir(), f"batchdigits-keras-{os.geteuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    try:
        info = os.lstat(path)
    except OSError:
        info = None
    if (
        info is not None
        and stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and info.st_mode & 0o077 == 0
    ):
        return path
    fresh = tempfile.mkdtemp(prefix="batchdigits-keras-")
    atexit.register(shutil.rmtree, fresh, True)
    return fresh
