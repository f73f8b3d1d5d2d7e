"""The model's commands: ``train`` (a new model from MNIST), ``tune`` (fine-tune on your
labelled images) and ``info`` (the model card)."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from batchdigits.cli.app import app, err, reporter
from batchdigits.cli.exits import run
from batchdigits.cli.params import DataOption, MaxPixelsOption, ModelOption, SkipChecksumOption
from batchdigits.errors import ExitCode
from batchdigits.options import DEFAULT_MAX_PIXELS, PredictOptions

TuneModelOption = Annotated[
    Path | None,
    typer.Option(
        help="The model to start from. Default: the shipped one (with --numbers, the "
        "shipped reader of numbers)."
    ),
]
TuneNumbersOption = Annotated[
    bool,
    typer.Option(
        "--numbers",
        help="Tune the reader of numbers on fields labelled with whole numbers (needs "
        "--labels); predict --numbers --model OUTPUT then reads with it.",
    ),
]
AugmentOption = Annotated[
    bool,
    typer.Option(
        "--augment/--no-augment",
        help="Vary the training digits each epoch: rotation, scale, shear, pen, blur, noise.",
    ),
]
NonDigitShareOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Generated non-digits to add per training digit, with a uniform target "
        "(outlier exposure; 0: none).",
    ),
]
CleanShareOption = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Share of the training digits only reshaped (rotation, scale, shear, pen), "
        "not given the real-world changes.",
    ),
]
EmaOption = Annotated[
    bool,
    typer.Option(
        "--ema/--no-ema",
        help="Evaluate and keep a moving average of the weights (smoother, often better).",
    ),
]
MixedPrecisionOption = Annotated[
    bool,
    typer.Option(
        "--mixed-precision/--float32",
        help="Compute in bfloat16 while training (faster only where the CPU has bfloat16 "
        "instructions); the saved model computes in float32.",
    ),
]
VariantsOption = Annotated[
    int,
    typer.Option(
        min=0,
        help="Vary each training digit N times once, before the first epoch, and draw "
        "each epoch one of its N + 1 copies (the clean one among them): the epochs then "
        "cost the network alone. 0: vary the digits afresh every epoch.",
    ),
]
#: ``--architecture``'s choices (the names of ``ARCHITECTURES``, listed here so the CLI
#: needs no TensorFlow to show its help)
ArchitectureName = enum.Enum(
    "ArchitectureName", {n: n for n in ("default", "small", "wide")}, type=str
)
ArchitectureOption = Annotated[
    ArchitectureName,
    typer.Option(
        help="The network: 'default' (the shipped one), 'wide' (two convolutions per "
        "block, about 2.4x the compute; for a second opinion) or 'small' (computes about "
        "4x as fast; a first look for a cascade).",
    ),
]
SecondOpinionOption = Annotated[
    Path | None,
    typer.Option(
        help="Train a second opinion for this model: OUTPUT holds both networks, the new "
        "one asked only about the rows this one flags for review.",
    ),
]
FirstLookOption = Annotated[
    Path | None,
    typer.Option(
        help="Train a first look for this model (use --architecture small): OUTPUT holds "
        "both networks; the new one reads every row and passes the rows it is not sure of "
        "to this one, whose answer they take.",
    ),
]
ResumeOption = Annotated[
    bool,
    typer.Option(
        "--resume/--no-resume",
        help="Keep each epoch's state in OUTPUT.checkpoints/ and, when that folder "
        "is there from an interrupted run, carry on after its last finished epoch.",
    ),
]


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
    augment: AugmentOption = True,
    non_digit_share: NonDigitShareOption = 0.0,
    clean_share: CleanShareOption = 0.0,
    ema: EmaOption = False,
    mixed_precision: MixedPrecisionOption = False,
    resume: ResumeOption = False,
    variants: VariantsOption = 0,
    architecture: ArchitectureOption = ArchitectureName.default,
    second_opinion_of: SecondOpinionOption = None,
    first_look_for: FirstLookOption = None,
    skip_checksum: SkipChecksumOption = False,
) -> None:
    """Train a new model on MNIST and save it with its model card (NAME.card.json)."""
    from batchdigits.model.network import ARCHITECTURES
    from batchdigits.training.train import TrainConfig, checkpoint_folder
    from batchdigits.training.train import train as train_model

    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        limit=limit,
        augment=augment,
        non_digit_share=non_digit_share,
        clean_share=clean_share,
        ema=ema,
        mixed_precision=mixed_precision,
        checkpoints=checkpoint_folder(output) if resume else None,
        variants=variants,
        architecture=dict(ARCHITECTURES[architecture.value]),
        second_opinion_of=second_opinion_of,
        first_look_for=first_look_for,
    )
    card = run(
        lambda: train_model(output, data, config, verify=not skip_checksum, reporter=reporter())
    )
    _report_trained(output, card)


def _report_trained(output: Path, card: dict) -> None:
    opinion = card.get("second_opinion", {})
    # the network trained now: a second opinion's, a first look's (a cascade), or the one
    trained = card["first_network"] if opinion.get("answers") == "second" else opinion.get("card")
    trained = trained or card
    err.print(
        f"saved {output}: test accuracy {card['test_accuracy']:.4f} on "
        f"{card['test_images']} MNIST test images, validation accuracy "
        f"{trained['validation_accuracy']:.4f}, {trained['train_seconds']:.0f} s"
    )


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
    model: TuneModelOption = None,
    data: DataOption = None,
    epochs: Annotated[int, typer.Option(min=1, help="Fine-tuning epochs.")] = 12,
    seed: Annotated[int, typer.Option(help="Seeds the held-out split, order and changes.")] = 1,
    max_pixels: MaxPixelsOption = DEFAULT_MAX_PIXELS,
    numbers: TuneNumbersOption = False,
) -> None:
    """Fine-tune a model on your own labelled images and save it with its card."""
    from batchdigits.training.tune import TuneOptions
    from batchdigits.training.tune import tune as tune_model
    from batchdigits.training.tune_numbers import tune_numbers

    options = TuneOptions(
        predict=PredictOptions(model=model, max_pixels=max_pixels),
        labels=labels,
        data=data,
        epochs=epochs,
        seed=seed,
    )
    job = tune_numbers if numbers else tune_model
    result = run(lambda: job(labelled, output, options, reporter()))
    for path, why in result.unreadable:
        err.print(f"skipped {path}: {why}")
    (_print_tuned_numbers if numbers else _print_tuned)(output, result.card)
    raise typer.Exit(int(ExitCode.PARTIAL if result.unreadable else ExitCode.OK))


def _print_tuned_numbers(output: Path, card: dict) -> None:
    err.print(
        f"saved {output}: held-out exact {card['held_out_exact_before']:.2%} before, "
        f"{card['held_out_exact_after']:.2%} after, on {card['held_out_numbers']} of your "
        f"{card['labelled_numbers']} labelled numbers; review threshold "
        f"{card['review_threshold']:.4f}; {card['tune_seconds']:.0f} s"
    )
    if card["held_out_exact_after"] <= card["held_out_exact_before"]:
        err.print(
            "warning: tuning did not improve the held-out numbers: the saved reader keeps "
            "the base reader's weights; compare both with evaluate --numbers"
        )


def _print_tuned(output: Path, card: dict) -> None:
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
    numbers: Annotated[
        bool, typer.Option("--numbers", help="The shipped reader of numbers' card.")
    ] = False,
) -> None:
    """Print the model card (JSON) of a model."""
    from batchdigits.model.store import read_card

    card = run(lambda: read_card(model, numbers))
    sys.stdout.write(json.dumps(card, indent=2) + "\n")
