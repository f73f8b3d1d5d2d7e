"""The one place TensorFlow and Keras are imported: lazily, quietly, and (for the command
line's own process) lean.

``batchdigits --help`` and argument errors never import TensorFlow; functions that
need it call :func:`tf` or :func:`keras` at run time.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from types import ModuleType

from batchdigits.runtime.environment import quiet_environment
from batchdigits.runtime.native_stderr import captured_during_import

_modules: dict[str, ModuleType] = {}

#: What Keras imports at its start for features the command line never uses: pandas (for
#: DataFrames given to ``fit``) and matplotlib (``keras.visualization``), a quarter of
#: TensorFlow's import here (1.0-1.3 s) and ~95 MB. See :func:`import_lean`.
KERAS_EXTRAS = ("pandas", "matplotlib")
_lean = {"on": False}


def import_lean() -> None:
    """For a process the command line owns (``cli.main``): TensorFlow and Keras are
    imported with :data:`KERAS_EXTRAS` hidden, so Keras starts without them (its
    DataFrame input and image galleries are off in this process; nothing of ours uses
    them, and they import normally afterwards: the report draws with matplotlib). A
    library caller's process keeps Keras whole."""
    _lean["on"] = True


def _import(name: str) -> ModuleType:
    """``import name``, lean if :func:`import_lean` asked for it: with :data:`KERAS_EXTRAS`
    hidden. A version that cannot start without one of them gets the whole import."""
    extras = KERAS_EXTRAS if _lean["on"] else ()
    try:
        with _hidden(extras):
            return importlib.import_module(name)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in extras:
            raise
    return importlib.import_module(name)


@contextlib.contextmanager
def _hidden(names):
    """``import name`` raises ImportError meanwhile, for each of ``names`` not imported."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # the import system's "not available"
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


def tf() -> ModuleType:
    """Import and return ``tensorflow``."""
    if "tf" not in _modules:
        quiet_environment()
        with captured_during_import():
            tensorflow = _import("tensorflow")  # which imports Keras too
            tensorflow.config.list_physical_devices()  # device probing happens here, quietly
        # No Grappler rewrites of our functions: the normalisation's ~2,400-op graph took
        # 0.4-0.9 s to optimise at its first call and ran no faster for it (nor did the
        # model), and without them a compiled function computes exactly what the same
        # code does eagerly (small runs normalise eagerly: see ``inference``).
        tensorflow.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
        _modules["tf"] = tensorflow
    return _modules["tf"]


def keras() -> ModuleType:
    """Import and return ``keras`` (Keras 3, TensorFlow backend)."""
    if "keras" not in _modules:
        tf()
        with captured_during_import():
            _modules["keras"] = _import("keras")
    return _modules["keras"]
