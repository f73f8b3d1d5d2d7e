"""``batchdigits evaluate``: measure a model on labelled images, print the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from batchdigits.cli.app import app, err
from batchdigits.cli.exits import run
from batchdigits.cli.params import (
    BatchSizeOption,
    DigitsOption,
    MaxPixelsOption,
    ModelOption,
    NumbersOption,
    ReviewThresholdOption,
)
from batchdigits.errors import ExitCode
from batchdigits.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PIXELS,
    PredictOptions,
    parse_digits,
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
    numbers: NumbersOption = False,
    digits: DigitsOption = None,
) -> None:
    """Measure a model on labelled images (accuracy, per-digit precision and recall, ECE,
    review coverage; with --numbers: exact matches, character error rate, per length)."""
    from batchdigits.evaluation.evaluate import evaluate_folder, write_report

    given = dict(
        model=model, batch_size=batch_size, max_pixels=max_pixels, review_threshold=review_threshold
    )
    result = run(
        lambda: evaluate_folder(input_dir, labels, _options(given, numbers, digits), output)
    )
    (_print_number_metrics if numbers else _print_metrics)(result.metrics)
    if report is not None:
        written = run(lambda: write_report(result, report))
        err.print(f"report: {', '.join(str(p) for p in written)}")
    raise typer.Exit(int(ExitCode.PARTIAL if result.metrics["errors"] else ExitCode.OK))


def _options(given: dict, numbers: bool, digits: str | None) -> PredictOptions:
    lengths = None if digits is None else parse_digits(digits)
    options = PredictOptions(**given, numbers=numbers, digits=lengths)
    options.check()
    return options


def _summary(metrics: dict, title: str, right: str, extra: tuple = ()):
    """The table both modes print: images, how many right (``right`` names it), ``extra``
    rows ``(name, value)``, files without a prediction, ECE, the review flag."""
    from rich.table import Table

    summary = Table(title=title)
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    summary.add_row("images", str(metrics["images"]))
    summary.add_row(f"{right} (unreadable = wrong)", f"{metrics['accuracy']:.4%}")
    for name, value in extra:
        summary.add_row(name, value)
    summary.add_row("files without a prediction", str(metrics["errors"]))
    if metrics["ece"] is not None:
        summary.add_row(f"ECE ({metrics['ece_bins']} bins)", f"{metrics['ece']:.4%}")
    summary.add_row("review threshold", f"{metrics['review_threshold']:.4f}")
    summary.add_row("coverage (not flagged)", f"{metrics['review_coverage']:.2%}")
    summary.add_row(f"{right} of rows not flagged", f"{metrics['review_accuracy']:.4%}")
    return summary


def _print_number_metrics(metrics: dict) -> None:
    from rich.table import Table

    out = Console(soft_wrap=True)
    cer = ("character error rate", f"{metrics['character_error_rate']:.4%}")
    out.print(_summary(metrics, "Evaluation (numbers)", "exact matches", (cer,)))
    lengths = Table(title="Per length")
    for name in ("digits", "images", "exact matches"):
        lengths.add_column(name, justify="right")
    for n, m in metrics["per_length"].items():
        lengths.add_row(n, str(m["images"]), f"{m['accuracy']:.2%}")
    out.print(lengths)


def _print_metrics(metrics: dict) -> None:
    from rich.table import Table

    out = Console(soft_wrap=True)
    out.print(_summary(metrics, "Evaluation", "accuracy"))
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
