"""Exception types raised by the library, and the exit codes the CLI maps them to.

Only ``cli.py`` turns these into messages and exit codes; library code raises them.
The codes follow the BSD ``sysexits.h`` conventions where one fits.
"""

from __future__ import annotations

import errno
import os
from enum import IntEnum


class ExitCode(IntEnum):
    """Documented process exit codes (see README, "Exit codes")."""

    OK = 0
    UNEXPECTED = 1
    USAGE = 2  # bad options or arguments (Typer's own code)
    PARTIAL = 3  # finished, but some files could not be read; the CSV is complete
    DATA_ERR = 65  # training data or model file present but invalid
    NO_INPUT = 66  # input folder, training data or model missing
    CANT_CREATE = 73  # the output cannot be written
    LOCKED = 75  # another run holds the output's lock (EX_TEMPFAIL: try again later)
    INTERRUPTED = 130  # Ctrl-C (SIGINT); the previous output is kept
    OUTPUT_CLOSED = 141  # -o -: the reader closed the pipe early (128 + SIGPIPE)
    TERMINATED = 143  # SIGTERM (128 + 15); the previous output is kept


class BatchDigitsError(Exception):
    """Base class: an error a user can cause and fix. Carries its exit code."""

    exit_code: ExitCode = ExitCode.UNEXPECTED


class InputNotFoundError(BatchDigitsError):
    """The input folder does not exist or is not a folder."""

    exit_code = ExitCode.NO_INPUT


class DataNotFoundError(BatchDigitsError):
    """No MNIST source could be loaded."""

    exit_code = ExitCode.NO_INPUT


class DataFormatError(BatchDigitsError):
    """An MNIST file exists but is malformed (magic, shape, labels, checksum)."""

    exit_code = ExitCode.DATA_ERR


class ModelNotFoundError(BatchDigitsError):
    """The model file does not exist."""

    exit_code = ExitCode.NO_INPUT


class ModelLoadError(BatchDigitsError):
    """The model file exists but cannot be loaded as a batchdigits model."""

    exit_code = ExitCode.DATA_ERR


class LabelError(BatchDigitsError):
    """A labels CSV is malformed (header, or a label that is not 0-9)."""

    exit_code = ExitCode.DATA_ERR


class OutputError(BatchDigitsError):
    """The output file or its folder cannot be written."""

    exit_code = ExitCode.CANT_CREATE


class ForeignOutputError(OutputError):
    """The output exists but is not a CSV this tool wrote: never overwritten silently."""


class OutputClosedError(BatchDigitsError):
    """``-o -``: whoever reads the CSV stopped reading (``| head``)."""

    exit_code = ExitCode.OUTPUT_CLOSED


class LockedError(BatchDigitsError):
    """Another run holds the lock of the same output."""

    exit_code = ExitCode.LOCKED


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop like Ctrl-C (the temporary output is dropped), exit 143."""

    exit_code = ExitCode.TERMINATED


class UsageError(BatchDigitsError):
    """Options that do not go together (e.g. ``--incremental`` with ``--engine beam``)."""

    exit_code = ExitCode.USAGE


_ADVICE = {
    errno.ENOSPC: "the disk is full: free space on it, or write somewhere else",
    errno.EDQUOT: "the disk quota is used up: free space, or write somewhere else",
    errno.EFBIG: "the file is larger than this filesystem or the file-size limit "
    "(ulimit -f) allows: raise the limit, or write somewhere else",
    errno.EIO: "the disk reported an input/output error: check it (dmesg)",
    errno.EROFS: "the filesystem is read-only: write somewhere else",
    errno.EACCES: "permission denied: fix the folder's permissions, or write somewhere else",
    errno.EPERM: "operation not permitted: fix the permissions, or write somewhere else",
}


def write_error(path: str | os.PathLike, exc: OSError) -> OutputError:
    """An :class:`OutputError` (exit 73) that names the file, the cause and what to do."""
    cause = exc.strerror or str(exc)
    advice = _ADVICE.get(exc.errno or 0, "")
    return OutputError(f"cannot write {path}: {cause}" + (f"; {advice}" if advice else ""))
