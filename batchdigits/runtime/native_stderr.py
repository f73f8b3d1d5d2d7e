"""What native libraries write straight to file descriptor 2 (absl's start-up lines,
libjpeg's warnings, TensorFlow's C++ logs) is held back, so cron mail stays clean: the
bad file's row in the CSV says what happened."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from batchdigits.stops import recorded_stop


@contextlib.contextmanager
def captured_during_import():
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
            held = sys.stderr
            sys.stderr = saved_stderr
            _repoint_log_handlers(held, saved_stderr)
            held.close()
            os.dup2(saved, 2)
            os.close(saved)


def _repoint_log_handlers(held, stream) -> None:
    """A logging handler made during the import (TensorFlow's own logger) holds the
    temporary stream it saw as ``sys.stderr``: point it at the real one, or its later
    warnings would end in "Logging error" tracebacks about a closed file."""
    import logging

    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, logging.StreamHandler) and handler.stream is held:
                handler.setStream(stream)


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
