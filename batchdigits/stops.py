"""A stop asked for by a signal: recorded, so no layer can swallow it, and raised where
the run can stop cleanly.

Ctrl-C (SIGINT) and SIGTERM (systemd, ``kill``, ``timeout``) end a run with exit 130 or
143 and keep the previous output. Two kinds of handler:

- :func:`record_signals`, set first thing by the console script (before Typer or
  TensorFlow is imported): a signal is only recorded; the command raises it when it
  starts its work (:func:`check_stop`), so a stop during start-up ends the documented way
  instead of killing the process or printing a traceback from an import;
- :func:`stops_raised`, while a command runs: recorded and raised at once (a server, a
  Beam pipeline, a wait for the lock stop there and then);
- :func:`stops_deferred`, inside it, around the stream of batches through TensorFlow:
  recorded only, and raised by :func:`check_stop` between batches.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from batchdigits.errors import Terminated

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_stops: list[KeyboardInterrupt] = []


def stop(exc: KeyboardInterrupt) -> None:
    """A signal asks the run to stop: record it (see :func:`check_stop`) and raise it."""
    _stops.append(exc)
    raise exc


def stop_for(signum: int) -> KeyboardInterrupt:
    """The stop a signal asks for: :class:`~batchdigits.errors.Terminated` for SIGTERM."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _record(signum: int, frame) -> None:
    _stops.append(stop_for(signum))


def _raise(signum: int, frame) -> None:
    stop(stop_for(signum))


def record_signals() -> None:
    """From now on, SIGINT and SIGTERM are recorded, not acted on (main thread only)."""
    for sig in SIGNALS:
        signal.signal(sig, _record)


@contextlib.contextmanager
def stops_raised() -> Iterator[None]:
    """For the ``with`` block, SIGINT and SIGTERM stop the run at once (recorded and
    raised); the handlers that were there before come back after it. (A stop recorded
    before the block stays recorded: the caller raises it with :func:`check_stop`.)
    Nothing changes outside the main thread, where handlers cannot be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@contextlib.contextmanager
def stops_deferred() -> Iterator[None]:
    """For code that runs inside TensorFlow (the stream of batches): where a stop would
    be raised at once (:func:`stops_raised`), it is only recorded meanwhile, and raised by
    the next :func:`check_stop` between batches. An exception raised at an arbitrary
    point inside TensorFlow's Python layer, while its C++ runtime calls back into it, can
    abort the process (SIGABRT) instead of stopping it. Handlers of anyone else (a
    library caller's own) are left as they are."""
    mine = threading.current_thread() is threading.main_thread() and all(
        signal.getsignal(sig) is _raise for sig in SIGNALS
    )
    if not mine:
        yield
        return
    for sig in SIGNALS:
        signal.signal(sig, _record)
    try:
        yield
    finally:
        for sig in SIGNALS:
            signal.signal(sig, _raise)


def recorded_stop() -> KeyboardInterrupt | None:
    """The first stop a signal asked for, or None (the CLI reports it over any error the
    stop caused inside a library call)."""
    return _stops[0] if _stops else None


def clear_stops() -> None:
    """Forget recorded stops (the command that a signal stopped has ended)."""
    _stops.clear()


def check_stop() -> None:
    """Raise the recorded stop, if a signal asked for one."""
    if (exc := recorded_stop()) is not None:
        raise exc
