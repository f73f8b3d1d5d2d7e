"""The one place TensorFlow and Keras are imported, lazily and quietly.

``batchdigits --help`` and argument errors never import TensorFlow; functions that
need it call :func:`tf` or :func:`keras` at run time.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from types import ModuleType


def _quiet_environment() -> None:
    # No C++ log lines: a corrupt JPEG is reported in the CSV, not by libjpeg on stderr.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    home = os.path.expanduser("~")
    if not os.path.isdir(home) or not os.access(home, os.W_OK):
        # cron and systemd may run us with no (or a read-only) HOME: Keras would try
        # to create ~/.keras there. Point it at a private temporary folder instead.
        os.environ.setdefault(
            "KERAS_HOME", os.path.join(tempfile.gettempdir(), "batchdigits-keras")
        )


_modules: dict[str, ModuleType] = {}


@contextlib.contextmanager
def _native_stderr_captured():
    """Hold back what native code writes to fd 2 (absl's start-up INFO lines, the CUDA
    probe on a machine without a GPU): cron would mail it. Replayed if import fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def tf() -> ModuleType:
    """Import and return ``tensorflow``."""
    if "tf" not in _modules:
        _quiet_environment()
        with _native_stderr_captured():
            import tensorflow

            tensorflow.config.list_physical_devices()  # device probing happens here, quietly
        _modules["tf"] = tensorflow
    return _modules["tf"]


def keras() -> ModuleType:
    """Import and return ``keras`` (Keras 3, TensorFlow backend)."""
    if "keras" not in _modules:
        tf()
        import keras as _keras

        _modules["keras"] = _keras
    return _modules["keras"]
