"""The Typer app every command registers on, the stderr console, and the messages and
progress display they share."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from batchdigits import __version__

app = typer.Typer(
    name="batchdigits",
    help="Predict handwritten digits for a folder of images, into a CSV.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# One log line stays one line; text is printed as is (no markup, so a [bracket] in a
# path or message survives): only say_error's label is styled.
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)


def say_error(message: str, label: str = "error") -> None:
    err.print(Text.assemble((f"{label}:", "bold red"), " ", message))


def reporter(quiet: bool = False, every: float = 30.0):
    """Progress on stderr: a bar on a terminal, bounded plain lines otherwise."""
    from batchdigits.progress import make_reporter

    return make_reporter(err, quiet, every)


def _version(value: bool) -> None:
    if value:
        print(f"batchdigits {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Predict handwritten digits for a folder of images, into a CSV."""
