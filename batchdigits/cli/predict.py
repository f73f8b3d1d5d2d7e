"""``batchdigits predict``: its options, the run, the summary line and
``--summary-json``."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from batchdigits.cli.app import app, err, reporter, say_error
from batchdigits.cli.exits import run
from batchdigits.cli.params import (
    BATCH_SIZE_HELP,
    DATA_HELP,
    DIGITS_HELP,
    MAX_PIXELS_HELP,
    MODEL_HELP,
    NUMBERS_HELP,
    REVIEW_THRESHOLD_HELP,
    SKIP_CHECKSUM_HELP,
)
from batchdigits.errors import BatchDigitsError, ExitCode
from batchdigits.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PIXELS,
    ENGINES,
    BeamSettings,
    PredictOptions,
    parse_digits,
)

#: The engines' names as a choice (the engines themselves: ``options.ENGINES``).
EngineName = enum.Enum("EngineName", {name: name for name in ENGINES}, type=str)


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
    EngineName,
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
        help="A Beam pipeline option KEY=VALUE, e.g. runner=DataflowRunner, "
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
    numbers: Annotated[bool, typer.Option("--numbers", help=NUMBERS_HELP, **_in)] = False,
    digits: Annotated[
        str | None,
        typer.Option(metavar="N|MIN-MAX", help=DIGITS_HELP, show_default=False, **_in),
    ] = None,
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
    engine: EngineOption = EngineName.local,
    beam_option: BeamOptionOption = None,
    beam_min_batch: BeamMinBatchOption = None,
    beam_max_batch: BeamMaxBatchOption = BeamSettings.max_batch,
) -> None:
    """Predict every image under INPUT_DIR and write one CSV row per image file."""
    given = locals()
    record = _summary_writer(summary_json, {"output": str(output), "input": str(input_dir)})
    summary = run(
        lambda: _predict(given, reporter(quiet, log_every)),
        lambda code, message: record({"exit_code": code, "error": message}),
    )
    record({"exit_code": int(summary.exit_code), **summary.as_dict()})
    if not (quiet and summary.exit_code == ExitCode.OK):
        _print_summary(summary, incremental)
    raise typer.Exit(int(summary.exit_code))


def _predict(given: dict, report):
    """The run itself (its options read inside, so a bad one exits with its code)."""
    from batchdigits.run.driver import predict_folder

    options = _predict_options(given)
    return predict_folder(given["input_dir"], given["output"], options, report)


def _predict_options(given: dict) -> PredictOptions:
    """``predict``'s parameters -> :class:`PredictOptions`: the settings of the same name,
    and the three that the command line spells differently."""
    same = {f.name: given[f.name] for f in dataclasses.fields(PredictOptions) if f.name in given}
    beam = (tuple(given["beam_option"] or ()), given["beam_min_batch"], given["beam_max_batch"])
    digits = given["digits"]
    return PredictOptions(
        **{
            **same,
            "engine": given["engine"].value,
            "verify_data": not given["skip_checksum"],
            "digits": None if digits is None else parse_digits(digits),
        },
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


def _write_summary(path: Path, data: dict) -> None:
    from batchdigits.atomic import write_json_atomic

    try:
        write_json_atomic(path, data)
    except BatchDigitsError as exc:
        say_error(f"--summary-json: {exc}")
