"""The one place TensorFlow and Keras are imported, lazily and quietly.

``batchdigits --help`` and argument errors never import TensorFlow; functions that
need it call :func:`tf` or :func:`keras` at run time.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import shutil
import stat
import sys
import tempfile
from types import ModuleType

from .errors import recorded_stop


def _quiet_environment() -> None:
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


@contextlib.contextmanager
def _native_stderr_captured():
    """Hold back what the import writes to stderr, natively to fd 2 (absl's start-up INFO
    lines, the CUDA probe on a machine without a GPU) or through Python (matplotlib,
    which Keras imports, warning about an unusable HOME): cron would mail it. Replayed
    if the import fails, not when a signal stopped it (the stop is the whole story)."""
    sys.stderr.flush()
    saved, saved_stderr = os.dup(2), sys.stderr
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        sys.stderr = open(os.dup(sink.fileno()), "w", encoding="utf-8", errors="replace")  # noqa: SIM115
        try:
            yield
        except BaseException as exc:
            if not isinstance(exc, KeyboardInterrupt) and recorded_stop() is None:
                sys.stderr.flush()
                sink.seek(0)
                saved_stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            sys.stderr.close()
            sys.stderr = saved_stderr
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def native_stderr_held():
    """For the length of a command: Python's own messages (``sys.stderr``) keep the real
    stderr, while what native libraries write straight to fd 2 (libjpeg's "Improper
    call to JPEG library in state 201" for a truncated JPEG, TensorFlow's C++ logs) goes
    to a temporary file: the bad file's row in the CSV says what happened, and cron mail
    stays clean. Yields a function returning what was held back (shown for a bug).
    Does nothing where ``sys.stderr`` is not fd 2 (a test runner's capture)."""
    try:
        direct = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        direct = False
    if not direct:
        yield lambda: ""
        return
    sys.stderr.flush()
    real = os.dup(2)
    saved = sys.stderr
    with tempfile.TemporaryFile() as sink:
        sys.stderr = open(  # noqa: SIM115 - closed below
            real, "w", encoding="utf-8", errors="backslashreplace", buffering=1
        )
        os.dup2(sink.fileno(), 2)

        def held() -> str:
            sink.seek(0)
            return sink.read().decode("utf-8", "replace")

        try:
            yield held
        finally:
            sys.stderr.flush()
            os.dup2(real, 2)
            sys.stderr.close()  # closes ``real``
            sys.stderr = saved


def tf() -> ModuleType:
    """Import and return ``tensorflow``."""
    if "tf" not in _modules:
        _quiet_environment()
        with _native_stderr_captured():
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
        with _native_stderr_captured():
            _modules["keras"] = _import("keras")
    return _modules["keras"]
