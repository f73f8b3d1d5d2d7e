"""The web pages' commands: ``serve`` (draw digits, the JSON API) and ``review`` (label
the rows the model doubts). Both need the ``web`` extra."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from batchdigits.cli.app import app, err
from batchdigits.cli.exits import run
from batchdigits.cli.params import DigitsOption, ModelOption, ReviewThresholdOption
from batchdigits.options import (
    DEFAULT_UPLOAD_MAX_PIXELS,
    PredictOptions,
    ServeOptions,
    parse_digits,
)


class Server(str, enum.Enum):
    flask = "flask"
    waitress = "waitress"


HostOption = Annotated[
    str, typer.Option(help="Address to listen on (another than 127.0.0.1 exposes it).")
]
PortOption = Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")]
ServerOption = Annotated[
    Server,
    typer.Option(help="waitress: a production server. flask: Flask's development server."),
]
AllowHostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-host",
        help="Also answer requests whose Host is this name (repeatable; '*': any). "
        "Loopback names and --host are always allowed; others get 400 (DNS rebinding).",
        show_default=False,
    ),
]
UploadMaxPixelsOption = Annotated[
    int,
    typer.Option(
        "--max-pixels",
        min=1,
        help="Refuse uploaded images whose header declares more pixels than this "
        "(width x height), before decoding.",
    ),
]

ServeNumbersOption = Annotated[
    bool,
    typer.Option(
        "--numbers",
        help="Read whole numbers: the page's pad is wide enough to write one, and the API "
        "answers as predict --numbers does (prediction a string, digit_confidences).",
    ),
]
ReviewNumbersOption = Annotated[
    bool,
    typer.Option(
        "--numbers",
        help="The CSV was written by predict --numbers: predictions and labels are strings "
        "of digits (type them, Enter saves).",
    ),
]


def _say_listening(listen: ServeOptions, what: str, exposes: str) -> None:
    """The start-up line, and a warning when the address is reachable from elsewhere."""
    err.print(what)
    if listen.exposed:
        err.print(
            f"warning: listening on {listen.host}: anyone who can reach this machine can "
            f"{exposes} (there is no login)"
        )
        if listen.allowed_hosts is not None:
            err.print(
                "note: requests must name this machine as --host or an --allow-host name "
                "in their Host header; others get 400"
            )


@app.command()
def serve(
    model: ModelOption = None,
    host: HostOption = ServeOptions.host,
    port: PortOption = ServeOptions.port,
    server: ServerOption = Server.waitress,
    allow_host: AllowHostOption = None,
    max_content_length: Annotated[
        int, typer.Option(min=1, help="Largest request body in bytes (larger: 413).")
    ] = ServeOptions.max_content_length,
    threads: Annotated[
        int, typer.Option(min=1, help="waitress: worker threads.")
    ] = ServeOptions.threads,
    max_pixels: UploadMaxPixelsOption = DEFAULT_UPLOAD_MAX_PIXELS,
    review_threshold: ReviewThresholdOption = None,
    numbers: ServeNumbersOption = False,
    digits: DigitsOption = None,
) -> None:
    """Serve a page to draw digits on and the JSON API (needs 'batchdigits\\[web]')."""
    from batchdigits.web.draw import serve as run_server

    listen = ServeOptions(
        host, port, server.value, max_content_length, threads, tuple(allow_host or ())
    )

    def ready(url: str) -> None:
        what = f"serving on {url} ({listen.server}); Ctrl-C stops"
        _say_listening(listen, what, "use the page and the API")

    def start() -> None:
        length = None if digits is None else parse_digits(digits)
        options = PredictOptions(
            model=model,
            max_pixels=max_pixels,
            review_threshold=review_threshold,
            numbers=numbers,
            digits=length,
        )
        options.check()
        run_server(options, listen, ready)

    run(start)


@app.command()
def review(
    predictions: Annotated[
        Path, typer.Argument(help="A predictions CSV written by predict.", show_default=False)
    ],
    images: Annotated[
        Path | None,
        typer.Option(
            help="The folder the CSV's paths are relative to (predict's INPUT_DIR). "
            "Default: the CSV's own folder."
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="Where labels are saved as you go. Default: PREDICTIONS.labels.csv."),
    ] = None,
    model: ModelOption = None,
    numbers: ReviewNumbersOption = False,
    host: HostOption = ServeOptions.host,
    port: PortOption = ServeOptions.port,
    server: ServerOption = Server.waitress,
    allow_host: AllowHostOption = None,
) -> None:
    """Review the rows the model doubts in the browser and label them (needs
    'batchdigits\\[web]'); the labels feed evaluate and tune."""
    from batchdigits.web.review_app import REVIEW_MAX_CONTENT_LENGTH
    from batchdigits.web.review_app import review as run_review
    from batchdigits.web.review_session import ReviewSession

    listen = ServeOptions(
        host,
        port,
        server.value,
        max_content_length=REVIEW_MAX_CONTENT_LENGTH,
        allow_hosts=tuple(allow_host or ()),
    )
    session = run(lambda: ReviewSession.open(predictions, images, labels, numbers))

    def ready(url: str) -> None:
        what = (
            f"reviewing {len(session.rows)} rows of {predictions} on {url} ({listen.server}); "
            f"labels go to {session.labels_path} ({len(session.labels)} so far); Ctrl-C stops"
        )
        _say_listening(listen, what, "see the images and change the labels")

    options = PredictOptions(model=model, numbers=numbers)
    run(lambda: run_review(session, options, listen, ready))
