"""Files that appear whole or not at all: the one atomic writer every output uses.

:class:`AtomicFile` writes to a temporary file in the target's own folder and, on
:meth:`~AtomicFile.commit`, fsyncs it and renames it over the target (``os.replace``),
so a reader sees the previous complete file or the new complete one, never anything in
between; :meth:`~AtomicFile.abort` drops it. The CSV writer, ``--summary-json``, the
incremental sidecar, model cards and reports all go through it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from batchdigits.errors import OutputError, write_error

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def temp_prefix(target: str | os.PathLike) -> str:
    return f".{Path(target).name}."


def create_temp(target: Path) -> tuple[int, Path]:
    """A new, empty temporary file beside ``target`` (``.NAME.XXXX.tmp``), open for writing.

    Created with ``O_EXCL | O_NOFOLLOW`` and mode 0666, so the kernel applies the umask
    (no umask toggling, which would race with other threads); when ``target`` exists, the
    file takes its mode, so a replaced output keeps its permissions."""
    for _ in range(100):
        tmp = target.parent / f"{temp_prefix(target)}{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, _CREATE, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise write_error(target, exc) from exc
        with contextlib.suppress(OSError):
            os.fchmod(fd, target.stat().st_mode & 0o777)
        return fd, tmp
    raise OutputError(f"cannot create a temporary file beside {target}")


def remove_stale_temps(target: str | os.PathLike) -> list[Path]:
    """Delete temporary files that killed runs left beside ``target``. Call it only while
    holding the target's lock: then no live run is writing one."""
    out = Path(target)
    removed = []
    try:
        candidates = list(out.parent.glob(temp_prefix(out) + "*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


class AtomicFile:
    """A text file written beside ``target`` and published by :meth:`commit`.

    Every write goes through :meth:`guarded`: an ``OSError`` (a full disk, ...) drops the
    temporary file and becomes an :class:`~batchdigits.errors.OutputError` naming the
    target."""

    def __init__(self, target: str | os.PathLike) -> None:
        self.target = Path(target)
        fd, self.tmp_path = create_temp(self.target)
        self.file: TextIO = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def guarded(self, write, *args) -> None:
        try:
            write(*args)
        except OSError as exc:
            self.abort()
            raise write_error(self.target, exc) from exc

    def commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp_path, self.target)
        except OSError as exc:
            self.abort()
            raise write_error(self.target, exc) from exc

    def abort(self) -> None:
        """Drop the temporary file (even when closing it fails: the disk is full)."""
        try:
            if not self.file.closed:
                self.file.close()
        except OSError:
            pass
        finally:
            self.tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_text(path: str | os.PathLike) -> Iterator[TextIO]:
    """A text file that appears at ``path`` only when the ``with`` block completes."""
    atomic = AtomicFile(path)
    try:
        yield atomic.file
    except BaseException as exc:
        atomic.abort()
        if isinstance(exc, OSError):
            raise write_error(atomic.target, exc) from exc
        raise
    atomic.commit()


def write_json_atomic(path: str | os.PathLike, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    import json

    with atomic_text(path) as f:
        f.write(json.dumps(data, indent=2) + "\n")
