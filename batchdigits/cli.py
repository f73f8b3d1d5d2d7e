"""The ``batchdigits`` command line: parses options, calls one library function, and turns
its exceptions into a message and a documented exit code. Nothing heavy is imported at
module level, so ``--help`` and argument errors are instant.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from . import __version__
from .errors import BatchDigitsError, ExitCode, recorded_stop
from .options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PIXELS,
    BeamSettings,
    PredictOptions,
    ServeOptions,
)

app = typer.Typer(
    name="batchdigits",
    help="Predict handwritten digits for a folder of images, into a CSV.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# One log line stays one line; text is printed as is (no markup, so a [bracket] in a
# path or message survives): only _error's label is styled.
err = Console(stderr=True, soft_wrap=True, markup=False, highlight=False)


def _error(message: str, label: str = "error") -> None:
    err.print(Text.assemble((f"{label}:", "bold red"), " ", message))


T = TypeVar("T")

DATA_HELP = (
    "MNIST: a folder with the four IDX files (.gz or raw) or an mnist.npz. "
    "Default: $BATCHDIGITS_MNIST, else the Keras download."
)
MODEL_HELP = "A .keras model. Default: the model shipped in the package."
BATCH_SIZE_HELP = "Images per model call."
MAX_PIXELS_HELP = (
    "Refuse images whose header declares more pixels than this (width x height), before "
    "decoding: decompression bombs cost nothing."
)
REVIEW_THRESHOLD_HELP = (
    "Flag rows (needs_review=true) whose confidence is below this. "
    "Default: the threshold in the model card."
)
SKIP_CHECKSUM_HELP = "Accept MNIST-format files whose checksums differ from the published ones."

DataOption = Annotated[Path | None, typer.Option("--data", help=DATA_HELP, show_default=False)]
ModelOption = Annotated[Path | None, typer.Option(help=MODEL_HELP)]
BatchSizeOption = Annotated[int, typer.Option(min=1, help=BATCH_SIZE_HELP)]
MaxPixelsOption = Annotated[int, typer.Option(min=1, help=MAX_PIXELS_HELP)]
ReviewThresholdOption = Annotated[
    float | None,
    typer.Option(min=0.0, max=1.0, help=REVIEW_THRESHOLD_HELP, show_default=False),
]
SkipChecksumOption = Annotated[bool, typer.Option("--skip-checksum", help=SKIP_CHECKSUM_HELP)]


def _run(func: Callable[[], T], on_error: Callable[[int, str], None] | None = None) -> T:
    """Call ``func``; turn every error into a message on stderr and an exit code.
    ``on_error(code, message)`` is told first (e.g. to write --summary-json)."""
    _stop_on_signals()

    def fail(code: ExitCode, message: str, shown: str | None = None) -> typer.Exit:
        if shown is None:
            _error(message)
        elif shown:  # "" when the caller has printed it already
            err.print(shown)
        if on_error is not None:
            on_error(int(code), message)
        return typer.Exit(int(code))

    from ._lazy import native_stderr_held

    with native_stderr_held() as held:
        return _call(func, fail, held)


def _stopped(fail: Callable, exc: KeyboardInterrupt) -> typer.Exit:
    code = getattr(exc, "exit_code", ExitCode.INTERRUPTED)
    what = "terminated (SIGTERM)" if code == ExitCode.TERMINATED else "interrupted"
    message = f"{what}; the previous output is kept, nothing partial was written"
    return fail(code, message, message)


def _call(func: Callable[[], T], fail: Callable, held: Callable[[], str]) -> T:
    try:
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
    _error(
        f"{type(exc).__name__}: {exc}\n"
        + (f"Native library messages:\n{native}\n" if native else "")
        + "This is a bug in batchdigits; please report it with the command you ran.",
        "unexpected error",
    )
    return fail(ExitCode.UNEXPECTED, f"unexpected error: {type(exc).__name__}: {exc}", "")


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM (systemd, kill, timeout) stop a run, exit 130 or 143.
    The stop is also recorded (:func:`errors.stop`): an exception raised while TensorFlow
    runs Python code for it can be swallowed there, and the driver checks the record."""
    import signal
    import threading

    from .errors import Terminated, stop

    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, lambda signum, frame: stop(Terminated()))
    signal.signal(signal.SIGINT, lambda signum, frame: stop(KeyboardInterrupt()))


def _reporter(quiet: bool = False, every: float = 30.0):
    from .progress import make_reporter

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


@app.command()
def train(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to save the model (.keras).")
    ] = Path("model.keras"),
    data: DataOption = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 28,
    batch_size: Annotated[int, typer.Option(min=1, help="Training batch size.")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed (data split, order, weights).")] = 1,
    limit: Annotated[
        int | None,
        typer.Option(min=12, help="Train on the first N training images only (quick trials)."),
    ] = None,
    augment: Annotated[
        bool,
        typer.Option(
            "--augment/--no-augment",
            help="Vary the training digits each epoch: rotation, scale, shear, pen, blur, noise.",
        ),
    ] = True,
    non_digit_share: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Generated non-digits to add per training digit, with a uniform target "
            "(outlier exposure; 0: none).",
        ),
    ] = 0.0,
    skip_checksum: SkipChecksumOption = False,
) -> None:
    """Train a new model on MNIST and save it with its model card (NAME.card.json)."""
    from .train import TrainConfig
    from .train import train as train_model

    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        limit=limit,
        augment=augment,
        non_digit_share=non_digit_share,
    )
    card = _run(
        lambda: train_model(output, data, config, verify=not skip_checksum, reporter=_reporter())
    )
    err.print(
        f"saved {output}: test accuracy {card['test_accuracy']:.4f} on "
        f"{card['test_images']} MNIST test images, validation accuracy "
        f"{card['validation_accuracy']:.4f}, {card['train_seconds']:.0f} s"
    )


class Engine(str, enum.Enum):
    local = "local"
    beam = "beam"


INPUT, MODEL, OUTPUT, SCHEDULING, BEAM = (
    "Input",
    "Model",
    "Output and review",
    "Scheduling (cron, systemd)",
    "Beam (--engine beam)",
)


InputDirArgument = Annotated[
    str,
    typer.Argument(
        help="Folder of digit images (with --engine beam also a Beam path, e.g. gs://b/dir).",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Path, typer.Option("--output", "-o", help="The CSV to write.", rich_help_panel=OUTPUT)
]
TrainIfMissingOption = Annotated[
    bool,
    typer.Option(
        "--train-if-missing",
        help="If --model does not exist, train one there first (train's defaults).",
        rich_help_panel=MODEL,
    ),
]
RecursiveOption = Annotated[
    bool,
    typer.Option("--recursive/--no-recursive", help="Look in sub-folders.", rich_help_panel=INPUT),
]
ProbabilitiesOption = Annotated[
    bool,
    typer.Option("--probabilities", help="Add the columns p0 ... p9.", rich_help_panel=OUTPUT),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace an existing output that is not a batchdigits CSV.",
        rich_help_panel=OUTPUT,
    ),
]
SummaryJsonOption = Annotated[
    Path | None,
    typer.Option(
        help="Write a JSON summary of the run here (atomically), for monitoring.",
        rich_help_panel=OUTPUT,
    ),
]
IncrementalOption = Annotated[
    bool,
    typer.Option(
        "--incremental",
        help="Reuse the rows of the existing output for files whose size and mtime are "
        "unchanged (same model and settings); predict only new and changed files.",
        rich_help_panel=SCHEDULING,
    ),
]
WaitLockOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        help="If another run is writing the same output, wait up to this many seconds "
        "(default: exit 75 at once).",
        rich_help_panel=SCHEDULING,
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="Print nothing when the run succeeds (exit 0): cron sends no mail.",
        rich_help_panel=SCHEDULING,
    ),
]
LogEveryOption = Annotated[
    float,
    typer.Option(
        min=1.0,
        help="Without a terminal: at most one progress line per this many seconds.",
        rich_help_panel=SCHEDULING,
    ),
]
EngineOption = Annotated[
    Engine,
    typer.Option(
        help="local: this machine's tf.data pipeline. beam: an Apache Beam pipeline "
        "(pip install 'batchdigits\\[beam]'), on Beam's in-process runner unless "
        "--beam-option runner=... says otherwise.",
        rich_help_panel=BEAM,
    ),
]
BeamOptionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--beam-option",
        help="A Beam pipeline option KEY=VALUE (repeatable), e.g. runner=DataflowRunner, "
        "project=..., region=..., temp_location=gs://...",
        rich_help_panel=BEAM,
    ),
]
BeamMinBatchOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Smallest batch RunInference forms \\[default: 32, or --beam-max-batch if smaller].",
        show_default=False,
        rich_help_panel=BEAM,
    ),
]
BeamMaxBatchOption = Annotated[
    int, typer.Option(min=1, help="Largest batch RunInference forms.", rich_help_panel=BEAM)
]
_in = dict(rich_help_panel=INPUT)
_model = dict(rich_help_panel=MODEL)


@app.command()
def predict(
    input_dir: InputDirArgument,
    recursive: RecursiveOption = True,
    max_pixels: Annotated[
        int, typer.Option(min=1, help=MAX_PIXELS_HELP, **_in)
    ] = DEFAULT_MAX_PIXELS,
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP, **_model)] = None,
    train_if_missing: TrainIfMissingOption = False,
    data: Annotated[Path | None, typer.Option(help=DATA_HELP, show_default=False, **_model)] = None,
    skip_checksum: Annotated[
        bool, typer.Option("--skip-checksum", help=SKIP_CHECKSUM_HELP, **_model)
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, help=BATCH_SIZE_HELP, **_model)
    ] = DEFAULT_BATCH_SIZE,
    output: OutputOption = Path("predictions.csv"),
    review_threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help=REVIEW_THRESHOLD_HELP, show_default=False, rich_help_panel=OUTPUT
        ),
    ] = None,
    probabilities: ProbabilitiesOption = False,
    force: ForceOption = False,
    summary_json: SummaryJsonOption = None,
    incremental: IncrementalOption = False,
    wait_lock: WaitLockOption = 0.0,
    quiet: QuietOption = False,
    log_every: LogEveryOption = 30.0,
    engine: EngineOption = Engine.local,
    beam_option: BeamOptionOption = None,
    beam_min_batch: BeamMinBatchOption = None,
    beam_max_batch: BeamMaxBatchOption = BeamSettings.max_batch,
) -> None:
    """Predict every image under INPUT_DIR and write one CSV row per image file."""
    from .predict import predict_folder

    options = _predict_options(locals())
    record = _summary_writer(summary_json, {"output": str(output), "input": str(input_dir)})
    summary = _run(
        lambda: predict_folder(input_dir, output, options, _reporter(quiet, log_every)),
        lambda code, message: record({"exit_code": code, "error": message}),
    )
    record({"exit_code": int(summary.exit_code), **summary.as_dict()})
    if not (quiet and summary.exit_code == ExitCode.OK):
        _print_summary(summary, incremental)
    raise typer.Exit(int(summary.exit_code))


def _predict_options(given: dict) -> PredictOptions:
    """``predict``'s parameters -> :class:`PredictOptions`: the settings of the same name,
    and the three that the command line spells differently."""
    same = {f.name: given[f.name] for f in dataclasses.fields(PredictOptions) if f.name in given}
    beam = (tuple(given["beam_option"] or ()), given["beam_min_batch"], given["beam_max_batch"])
    return PredictOptions(
        **{**same, "engine": given["engine"].value, "verify_data": not given["skip_checksum"]},
        beam=BeamSettings(*beam),
    )


def _summary_writer(path: Path | None, base: dict) -> Callable[[dict], None]:
    """``--summary-json``: a function that writes a summary there (nothing without it)."""

    def record(data: dict) -> None:
        if path is not None:
            _write_summary(path, {**data, **base} if "error" in data else data)

    return record


def _print_summary(summary, incremental: bool) -> None:
    if summary.escaped_names:
        more = ", ..." if summary.escaped_names > len(summary.escaped_examples) else ""
        err.print(
            f"warning: {summary.escaped_names} file names are not valid UTF-8 "
            f"({', '.join(summary.escaped_examples)}{more}); the CSV writes each invalid "
            "byte as \\xNN"
        )
    for folder in summary.unreadable_folders:
        err.print(f"warning: cannot list folder {folder!r} (skipped)")
    reuse = ""
    if incremental:
        reuse = (
            f" (incremental: {summary.reused} reused, {summary.new} new, {summary.changed} "
            f"changed, {summary.retried} retried, {summary.removed} removed)"
        )
    err.print(
        f"{summary.found} image files{reuse}: {summary.predicted} predicted, {summary.errors} "
        f"errors, {summary.needs_review} need review (confidence below "
        f"{summary.review_threshold:.4f} or no prediction); {summary.skipped} other files skipped; "
        f"{summary.images_per_second:.0f} images/s; wrote {summary.output}"
    )


@app.command()
def evaluate(
    input_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder of labelled images: sub-folders 0 ... 9, or any layout with --labels.",
            show_default=False,
        ),
    ],
    labels: Annotated[
        Path | None,
        typer.Option(help="CSV with columns path,label (paths relative to INPUT_DIR)."),
    ] = None,
    model: ModelOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Also write the per-file CSV, with a label column."),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Write metrics.json, confusion_matrix.png, reliability_diagram.png and "
            "misclassified.png into this folder."
        ),
    ] = None,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    max_pixels: MaxPixelsOption = DEFAULT_MAX_PIXELS,
    review_threshold: ReviewThresholdOption = None,
) -> None:
    """Measure a model on labelled images (accuracy, per-digit precision and recall, ECE,
    review coverage)."""
    from .evaluate import evaluate_folder, write_report

    options = PredictOptions(
        model=model, batch_size=batch_size, max_pixels=max_pixels, review_threshold=review_threshold
    )
    result = _run(lambda: evaluate_folder(input_dir, labels, options, output))
    _print_metrics(result.metrics)
    if report is not None:
        written = _run(lambda: write_report(result, report))
        err.print(f"report: {', '.join(str(p) for p in written)}")
    raise typer.Exit(int(ExitCode.PARTIAL if result.metrics["errors"] else ExitCode.OK))


def _print_metrics(metrics: dict) -> None:
    from rich.table import Table

    out = Console(soft_wrap=True)
    summary = Table(title="Evaluation")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    summary.add_row("images", str(metrics["images"]))
    summary.add_row("accuracy (unreadable = wrong)", f"{metrics['accuracy']:.4%}")
    summary.add_row("files without a prediction", str(metrics["errors"]))
    if metrics["ece"] is not None:
        summary.add_row(f"ECE ({metrics['ece_bins']} bins)", f"{metrics['ece']:.4%}")
    summary.add_row("review threshold", f"{metrics['review_threshold']:.4f}")
    summary.add_row("coverage (not flagged)", f"{metrics['review_coverage']:.2%}")
    summary.add_row("accuracy of rows not flagged", f"{metrics['review_accuracy']:.4%}")
    out.print(summary)
    trade = Table(title="Review threshold: coverage / accuracy trade-off")
    for name in ("threshold", "rows not flagged", "their accuracy"):
        trade.add_column(name, justify="right")
    for row in metrics["review_tradeoff"]:
        trade.add_row(f"{row['threshold']:.4f}", f"{row['coverage']:.2%}", f"{row['accuracy']:.4%}")
    out.print(trade)
    digits = Table(title="Per digit")
    for name in ("digit", "precision", "recall", "support"):
        digits.add_column(name, justify="right")
    for d, m in metrics["per_digit"].items():
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        digits.add_row(d, fmt(m["precision"]), fmt(m["recall"]), str(m["support"]))
    out.print(digits)


@app.command()
def tune(
    labelled: Annotated[
        Path,
        typer.Argument(
            help="Folder of your labelled images: sub-folders 0 ... 9, or any layout with "
            "--labels (x = not a digit).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to save the tuned model (.keras).")
    ] = Path("tuned.keras"),
    labels: Annotated[
        Path | None,
        typer.Option(help="CSV with columns path,label, e.g. the one review writes."),
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="The model to start from. Default: the shipped one.")
    ] = None,
    data: DataOption = None,
    epochs: Annotated[int, typer.Option(min=1, help="Fine-tuning epochs.")] = 12,
    seed: Annotated[int, typer.Option(help="Seeds the held-out split, order and changes.")] = 1,
    max_pixels: MaxPixelsOption = DEFAULT_MAX_PIXELS,
) -> None:
    """Fine-tune a model on your own labelled images and save it with its card."""
    from .tune import TuneOptions
    from .tune import tune as tune_model

    options = TuneOptions(
        predict=PredictOptions(model=model, max_pixels=max_pixels),
        labels=labels,
        data=data,
        epochs=epochs,
        seed=seed,
    )
    result = _run(lambda: tune_model(labelled, output, options, _reporter()))
    _print_tuned(output, result)
    raise typer.Exit(int(ExitCode.PARTIAL if result.unreadable else ExitCode.OK))


def _print_tuned(output: Path, result) -> None:
    for path, why in result.unreadable:
        err.print(f"skipped {path}: {why}")
    card = result.card
    mnist = card["mnist_test_accuracy"]
    err.print(
        f"saved {output}: held-out accuracy {card['held_out_accuracy_before']:.2%} before, "
        f"{card['held_out_accuracy_after']:.2%} after, on {card['held_out_images']} of your "
        f"{card['labelled_images']} labelled images"
        + (f"; MNIST test accuracy {mnist:.2%}" if mnist is not None else "")
        + f"; {card['tune_seconds']:.0f} s"
    )
    if card["held_out_accuracy_after"] <= card["held_out_accuracy_before"]:
        err.print(
            "warning: tuning did not improve the held-out accuracy: the base model may read "
            "these images as well; compare both with evaluate before switching"
        )


@app.command()
def info(
    model: ModelOption = None,
) -> None:
    """Print the model card (JSON) of a model."""
    from .model import read_card

    card = _run(lambda: read_card(model))
    sys.stdout.write(json.dumps(card, indent=2) + "\n")


class Server(str, enum.Enum):
    flask = "flask"
    waitress = "waitress"


HostOption = Annotated[
    str, typer.Option(help="Address to listen on (another than 127.0.0.1 exposes it).")
]
PortOption = Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")]
ServerOption = Annotated[
    Server, typer.Option(help="flask: Flask's development server. waitress: a production server.")
]


def _say_listening(listen: ServeOptions, what: str, exposes: str) -> None:
    """The start-up line, and a warning when the address is reachable from elsewhere."""
    err.print(what)
    if listen.exposed:
        err.print(
            f"warning: listening on {listen.host}: anyone who can reach this machine can "
            f"{exposes} (there is no login)"
        )


@app.command()
def serve(
    model: ModelOption = None,
    host: HostOption = ServeOptions.host,
    port: PortOption = ServeOptions.port,
    server: ServerOption = Server.flask,
    max_content_length: Annotated[
        int, typer.Option(min=1, help="Largest request body in bytes (larger: 413).")
    ] = ServeOptions.max_content_length,
    threads: Annotated[
        int, typer.Option(min=1, help="waitress: worker threads.")
    ] = ServeOptions.threads,
    max_pixels: MaxPixelsOption = DEFAULT_MAX_PIXELS,
    review_threshold: ReviewThresholdOption = None,
) -> None:
    """Serve a page to draw digits on and the JSON API (needs 'batchdigits\\[web]')."""
    from .web import serve as run_server

    options = PredictOptions(model=model, max_pixels=max_pixels, review_threshold=review_threshold)
    listen = ServeOptions(host, port, server.value, max_content_length, threads)

    def ready(url: str) -> None:
        what = f"serving on {url} ({listen.server}); Ctrl-C stops"
        _say_listening(listen, what, "use the page and the API")

    _run(lambda: run_server(options, listen, ready))


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
    host: HostOption = ServeOptions.host,
    port: PortOption = ServeOptions.port,
    server: ServerOption = Server.flask,
) -> None:
    """Review the rows the model doubts in the browser and label them (needs
    'batchdigits\\[web]'); the labels feed evaluate and tune."""
    from .review import ReviewSession
    from .web import review as run_review

    listen = ServeOptions(host, port, server.value)
    session = _run(lambda: ReviewSession.open(predictions, images, labels))

    def ready(url: str) -> None:
        what = (
            f"reviewing {len(session.rows)} rows of {predictions} on {url} ({listen.server}); "
            f"labels go to {session.labels_path} ({len(session.labels)} so far); Ctrl-C stops"
        )
        _say_listening(listen, what, "see the images and change the labels")

    _run(lambda: run_review(session, PredictOptions(model=model), listen, ready))


def _write_summary(path: Path, data: dict) -> None:
    from .output import write_json_atomic

    try:
        write_json_atomic(path, data)
    except BatchDigitsError as exc:
        _error(f"--summary-json: {exc}")


def main() -> None:
    """Console-script entry point (and ``python -m batchdigits``): the process is the
    command line's, so TensorFlow is imported lean and the process ends without its
    teardown (:func:`end_process`)."""
    from ._lazy import import_lean

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
