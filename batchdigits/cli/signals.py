"""Signals during a command: Ctrl-C (SIGINT) and SIGTERM (systemd, kill, timeout) stop the
run, which exits 130 or 143 and keeps the previous output.

The stop is also recorded (:func:`batchdigits.errors.stop`): an exception raised while
TensorFlow runs Python code for it can be swallowed there, and the driver checks the
record between chunks. When the command ends, the handlers that were there before are
put back and the record is cleared: a process that calls the command line as a function
(``batchdigits.cli.app``) is left as it was found.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from batchdigits.errors import Terminated, clear_stops, stop


def _on_sigterm(signum, frame) -> None:
    stop(Terminated())


def _on_sigint(signum, frame) -> None:
    stop(KeyboardInterrupt())


@contextlib.contextmanager
def signals_stop_the_run() -> Iterator[None]:
    """For the ``with`` block: SIGINT and SIGTERM stop the run (main thread only: signal
    handlers cannot be set elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        clear_stops()
