"""One run at a time per output: an ``fcntl.flock`` on ``OUTPUT.lock``.

The lock is taken before any work and released when the process ends, however it ends:
the kernel drops flock locks with their process, so a killed run never blocks the next.
The lock file holds the holder's PID and start time, for the message a second run shows.
The file itself is left in place (removing it would let two runs lock different files).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LockedError, write_error

POLL_SECONDS = 0.2


def lock_path(output: str | os.PathLike) -> Path:
    p = Path(output)
    return p.with_name(p.name + ".lock")


@contextmanager
def output_lock(output: str | os.PathLike, wait_seconds: float = 0.0) -> Iterator[Path]:
    """Hold the lock of ``output`` for the ``with`` block; wait up to ``wait_seconds`` for
    another run to finish, else raise :class:`LockedError` naming that run."""
    path = lock_path(output)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        deadline = time.monotonic() + max(0.0, wait_seconds)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(fd)
                    waited = f" after waiting {wait_seconds:g} s" if wait_seconds > 0 else ""
                    raise LockedError(
                        f"another run ({holder}) is writing {output}{waited}; "
                        f"it holds {path}. Use --wait-lock SECONDS to wait for it"
                    ) from None
                time.sleep(POLL_SECONDS)
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, started {started}\n".encode(), 0)
        except OSError as exc:
            raise write_error(path, exc) from exc
        yield path
    finally:
        os.close(fd)  # releases the lock


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"
