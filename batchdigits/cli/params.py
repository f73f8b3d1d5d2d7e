"""Help texts and option types that several commands share (one name, one default,
one help text each)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DATA_HELP = (
    "MNIST: a folder with the four IDX files (.gz or raw) or an mnist.npz. "
    "Default: $BATCHDIGITS_MNIST, else the Keras download."
)
MODEL_HELP = (
    "A .keras model. Default: the model shipped in the package (with --numbers, a reader "
    "of numbers: default, the one shipped in the package)."
)
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

NUMBERS_HELP = (
    "Each image holds a whole number of one or more digits (an amount, a ZIP code): "
    "prediction is the digit string, confidence that the whole string is right. "
    "Separators (. , -) are left out."
)
DIGITS_HELP = "With --numbers: how many digits each number has (5), or a range (3-6)."
NumbersOption = Annotated[bool, typer.Option("--numbers", help=NUMBERS_HELP)]
DigitsOption = Annotated[
    str | None, typer.Option("--digits", metavar="N|MIN-MAX", help=DIGITS_HELP, show_default=False)
]
