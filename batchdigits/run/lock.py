"""One run at a time per output: an ``fcntl.flock`` on ``OUTPUT.lock``.

The lock is taken after the run's checks (input, model) and released when the run
ends, however it ends: the kernel drops flock locks with their process, so a killed run
never blocks the next. The lock file holds the holder's PID and start time, for the
message a second run shows.

Safe in a folder other users can write to: the lock file is opened with ``O_NOFOLLOW``
(a planted symbolic link is refused, never followed), must be a regular file, and is
never truncated or written unless this run created it. A file left by a killed run is
replaced (removed while locked, then created anew). A run removes its lock file when it
ends; a waiting run that then holds the lock of a removed file notices (the path no
longer names the file it locked) and starts over, so two runs never hold two files.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from batchdigits.errors import LockedError, OutputError, write_error

POLL_SECONDS = 0.2
_OPEN_EXISTING = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def lock_path(output: str | os.PathLike) -> Path:
    p = Path(output)
    return p.with_name(p.name + ".lock")


@contextmanager
def output_lock(output: str | os.PathLike, wait_seconds: float = 0.0) -> Iterator[Path]:
    """Hold the lock of ``output`` for the ``with`` block; wait up to ``wait_seconds`` for
    another run to finish, else raise :class:`LockedError` naming that run."""
    path = lock_path(output)
    deadline = time.monotonic() + max(0.0, wait_seconds)
    while True:
        fd, created = _open(path)
        try:
            _wait_for(fd, path, output, deadline, wait_seconds)
            if not _still_named(fd, path):
                continue  # its holder removed it as it finished: lock the next one
            if not created:
                _remove(path)  # left by a killed run: ours now, replaced by a fresh one
                continue
            _write_holder(fd, path)
            try:
                yield path
            finally:
                if _still_named(fd, path):
                    _remove(path, quiet=True)  # still locked: a waiter sees it gone
            return
        finally:
            os.close(fd)  # releases the lock


def _open(path: Path) -> tuple[int, bool]:
    """A descriptor of the lock file, and whether this call created it."""
    try:
        return os.open(path, _CREATE, 0o644), True
    except FileExistsError:
        pass
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        fd = os.open(path, _OPEN_EXISTING)
    except FileNotFoundError:
        return _open(path)  # removed meanwhile: create it
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_a_lock(path, "a symbolic link") from exc
        raise write_error(path, exc) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_a_lock(path, "not a regular file")
    return fd, False


def _not_a_lock(path: Path, what: str) -> OutputError:
    return OutputError(
        f"lock file {path} is {what}; batchdigits never follows or writes such a path "
        "(someone may have planted it). Remove it, or write the output in a folder only "
        "you can write to"
    )


def _wait_for(fd: int, path: Path, output, deadline: float, wait_seconds: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                waited = f" after waiting {wait_seconds:g} s" if wait_seconds > 0 else ""
                raise LockedError(
                    f"another run ({_read_holder(fd)}) is writing {output}{waited}; "
                    f"it holds {path}. Use --wait-lock SECONDS to wait for it"
                ) from None
            time.sleep(POLL_SECONDS)


def _still_named(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open at ``fd``."""
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _remove(path: Path, quiet: bool = False) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if not quiet:
            raise OutputError(
                f"cannot replace the stale lock file {path} ({exc.strerror}); remove it"
            ) from exc


def _write_holder(fd: int, path: Path) -> None:
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    try:
        os.pwrite(fd, f"pid {os.getpid()}, started {started}\n".encode(), 0)
    except OSError as exc:
        raise write_error(path, exc) from exc


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"
