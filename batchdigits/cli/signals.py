"""Signals during a command: Ctrl-C (SIGINT) and SIGTERM (systemd, kill, timeout) stop the
run, which exits 130 or 143 and keeps the previous output (:mod:`batchdigits.stops`).

When the command ends, the handlers that were there before are put back and the record
is cleared: a process that calls the command line as a function (``batchdigits.cli.app``)
is left as it was found.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from batchdigits.stops import clear_stops, stops_raised


@contextlib.contextmanager
def signals_stop_the_run() -> Iterator[None]:
    """For the ``with`` block: SIGINT and SIGTERM stop the run."""
    try:
        with stops_raised():
            yield
    finally:
        clear_stops()
