"""The one place TensorFlow and Keras are imported, lazily and quietly.

``batchdigits --help`` and argument errors never import TensorFlow; functions that
need it call :func:`tf` or :func:`keras` at run time.
"""

from __future__ import annotations

import os
import tempfile
from types import ModuleType


def _quiet_environment() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ INFO/WARNING chatter
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    home = os.path.expanduser("~")
    if not os.path.isdir(home) or not os.access(home, os.W_OK):
        # cron and systemd may run us with no (or a read-only) HOME: Keras would try
        # to create ~/.keras there. Point it at a private temporary folder instead.
        os.environ.setdefault(
            "KERAS_HOME", os.path.join(tempfile.gettempdir(), "batchdigits-keras")
        )


_modules: dict[str, ModuleType] = {}


def tf() -> ModuleType:
    """Import and return ``tensorflow``."""
    if "tf" not in _modules:
        _quiet_environment()
        import tensorflow

        _modules["tf"] = tensorflow
    return _modules["tf"]


def keras() -> ModuleType:
    """Import and return ``keras`` (Keras 3, TensorFlow backend)."""
    if "keras" not in _modules:
        tf()
        import keras as _keras

        _modules["keras"] = _keras
    return _modules["keras"]
