"""Errors into exit codes, in one place: every command runs its library call through
:func:`run`, which turns a :class:`~batchdigits.errors.BatchDigitsError` into its
message and documented code, a signal's stop into 130 or 143, and anything else into
"unexpected error" (exit 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer

from batchdigits.cli.app import err, say_error
from batchdigits.cli.signals import signals_stop_the_run
from batchdigits.errors import BatchDigitsError, ExitCode
from batchdigits.stops import check_stop, recorded_stop

T = TypeVar("T")


def run(func: Callable[[], T], on_error: Callable[[int, str], None] | None = None) -> T:
    """Call ``func``; turn every error into a message on stderr and an exit code.
    ``on_error(code, message)`` is told first (e.g. to write --summary-json)."""

    def fail(code: ExitCode, message: str, shown: str | None = None) -> typer.Exit:
        if shown is None:
            say_error(message)
        elif shown:  # "" when the caller has printed it already
            err.print(shown)
        if on_error is not None:
            on_error(int(code), message)
        return typer.Exit(int(code))

    from batchdigits.runtime.native_stderr import native_stderr_held

    with signals_stop_the_run(), native_stderr_held() as held:
        return _call(func, fail, held)


def _stopped(fail: Callable, exc: KeyboardInterrupt) -> typer.Exit:
    code = getattr(exc, "exit_code", ExitCode.INTERRUPTED)
    what = "terminated (SIGTERM)" if code == ExitCode.TERMINATED else "interrupted"
    message = f"{what}; the previous output is kept, nothing partial was written"
    return fail(code, message, message)


def _call(func: Callable[[], T], fail: Callable, held: Callable[[], str]) -> T:
    try:
        check_stop()  # a stop asked for while the command line started
        return func()
    except KeyboardInterrupt as exc:
        raise _stopped(fail, exc) from None
    except Exception as exc:
        # A signal's stop can surface as another error (an import cut short while Keras
        # loads a model reads as a bad model file): the stop is what happened.
        if (stop := recorded_stop()) is not None:
            raise _stopped(fail, stop) from None
        if isinstance(exc, BatchDigitsError):
            raise fail(exc.exit_code, str(exc)) from None
        raise _bug(fail, exc, held) from None


def _bug(fail: Callable, exc: Exception, held: Callable[[], str]) -> typer.Exit:
    """The last resort: a bug, never a user error."""
    native = held()[-2000:]
    say_error(
        f"{type(exc).__name__}: {exc}\n"
        + (f"Native library messages:\n{native}\n" if native else "")
        + "This is a bug in batchdigits; please report it with the command you ran.",
        "unexpected error",
    )
    return fail(ExitCode.UNEXPECTED, f"unexpected error: {type(exc).__name__}: {exc}", "")
