"""The console script's process: ``main`` runs the app and ends the process with its
exit code, without the interpreter's slow teardown once TensorFlow is loaded."""

from __future__ import annotations

import sys
from typing import NoReturn

from batchdigits.cli.app import app


def main() -> None:
    """Console-script entry point (and ``python -m batchdigits``): the process is the
    command line's, so TensorFlow is imported lean and the process ends without its
    teardown (:func:`end_process`)."""
    from batchdigits.runtime.lazy import import_lean

    import_lean()
    try:
        app()
    except SystemExit as exc:
        end_process(exc.code)
    end_process(0)


def end_process(code: int | str | None) -> NoReturn:
    """End the process with ``code`` as :func:`sys.exit` reads it. Once TensorFlow is
    loaded, Python's teardown of its modules and objects takes 0.4-1 s at every exit and
    keeps nothing: the atexit handlers run, standard output and error are flushed, and
    the process ends there. Every file of ours is closed before this (each written in a
    ``with`` block, the outputs atomically). Otherwise (no TensorFlow, or threads of
    ours still running, to be joined) the ordinary exit."""
    import atexit
    import contextlib
    import os
    import threading

    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if "tensorflow" not in sys.modules or run_handlers is None or any(not t.daemon for t in others):
        sys.exit(code)
    if code is None or isinstance(code, int):
        status = code or 0
    else:  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        status = 1
    run_handlers()
    for stream in (sys.stdout, sys.stderr):
        # a closed pipe or stream: nothing more can be said there
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)
