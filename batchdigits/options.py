"""Every prediction setting once, with one name and one default: :class:`PredictOptions`.

The CLI builds one from its options; ``predict_folder``, ``evaluate_folder``, ``serve``
and both engines take it. ``dataclasses.replace(options, batch_size=64)`` makes a
variant. Nothing heavy is imported here: the CLI imports this module at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from batchdigits.errors import UsageError
from batchdigits.imaging.decode import DEFAULT_MAX_PIXELS

DEFAULT_BATCH_SIZE = 256
MAX_DIGITS = 32  # the longest number --numbers reads
#: Used when a model's card does not give a review threshold (models from older versions).
FALLBACK_REVIEW_THRESHOLD = 0.9
#: A row a model's second opinion was asked about is flagged under this confidence when
#: the card names no other (``second_opinion.review_threshold``): always. A row the first
#: network doubts stays flagged whatever the second says; the second opinion may change
#: its answer and confidence, not its flag.
CONSULTED_REVIEW_BELOW = 1.0
#: The engines, by name: the module of each (``open_engine`` there). The one list.
ENGINES = {"local": "batchdigits.run.local", "beam": "batchdigits.run.beam"}
DEFAULT_MAX_CONTENT_LENGTH = 5 * 1024 * 1024


@dataclass(frozen=True)
class BeamSettings:
    """``--engine beam`` only: pipeline options and how RunInference batches."""

    pipeline_options: tuple[str, ...] = ()  # KEY=VALUE, e.g. "runner=DataflowRunner"
    min_batch: int | None = None  # None: 32, or max_batch if that is smaller
    max_batch: int = 256

    @property
    def smallest_batch(self) -> int:
        return self.min_batch if self.min_batch is not None else min(32, self.max_batch)


@dataclass(frozen=True)
class PredictOptions:
    """How to predict: the model, how files are read, what a row holds, how a run
    claims its output. Inputs and outputs (folders, CSV paths) are arguments, not options."""

    model: str | os.PathLike | None = None  # None: the model shipped in the package
    batch_size: int = DEFAULT_BATCH_SIZE  # images per model call (every call has this shape)
    max_pixels: int = DEFAULT_MAX_PIXELS
    review_threshold: float | None = None  # None: the model card's
    recursive: bool = True
    probabilities: bool = False  # the columns p0 ... p9
    incremental: bool = False  # reuse the rows of unchanged files (local engine)
    force: bool = False  # replace an output that is not a batchdigits CSV
    wait_lock: float = 0.0  # seconds to wait for another run's lock on the output
    engine: str = "local"
    beam: BeamSettings = field(default_factory=BeamSettings)
    train_if_missing: bool = False  # train a model at ``model`` first if it does not exist
    data: str | os.PathLike | None = None  # MNIST for train_if_missing
    verify_data: bool = True  # check MNIST's published checksums
    numbers: bool = False  # each image holds a number of one or more digits (a string)
    digits: tuple[int, int] | None = None  # with numbers: its fewest and most digits

    @property
    def lengths(self) -> tuple[int, int]:
        """How many digits a number may have (``--digits``, else any)."""
        return self.digits or (1, MAX_DIGITS)

    def check(self) -> None:
        """Raise :class:`UsageError` (exit 2) for settings that do not go together."""
        for problem in _problems(self):
            raise UsageError(problem)

    @property
    def needs_training(self) -> bool:
        return self.train_if_missing and self.model is not None and not os.path.exists(self.model)


def _problems(o: PredictOptions):
    if o.engine not in ENGINES:
        yield f"unknown engine {o.engine!r}; choose one of {', '.join(ENGINES)}"
    if o.batch_size < 1 or o.max_pixels < 1 or o.beam.max_batch < 1:
        yield "--batch-size, --max-pixels and --beam-max-batch must be at least 1"
    if o.review_threshold is not None and not 0.0 <= o.review_threshold <= 1.0:
        yield "--review-threshold must be between 0 and 1"
    if o.engine == "beam" and o.incremental:
        yield "--incremental works with the local engine only"
    if o.beam.smallest_batch < 1 or o.beam.smallest_batch > o.beam.max_batch:
        yield "--beam-min-batch is larger than --beam-max-batch (or below 1)"
    if o.train_if_missing and o.model is None:
        yield "--train-if-missing needs --model PATH"
    if o.train_if_missing and o.numbers:
        yield "--train-if-missing trains a digit model; --numbers reads with a numbers model"
    if o.digits is not None and not o.numbers:
        yield "--digits reads numbers: add --numbers"
    if o.digits is not None and not 1 <= o.digits[0] <= o.digits[1] <= MAX_DIGITS:
        yield f"--digits must be between 1 and {MAX_DIGITS}, the smaller first"


def parse_digits(text: str) -> tuple[int, int]:
    """``--digits``: ``"5"`` -> ``(5, 5)``, ``"3-6"`` -> ``(3, 6)``; :class:`UsageError`
    for anything else."""
    low, _, high = text.strip().partition("-")
    try:
        pair = (int(low), int(high or low))
    except ValueError:
        raise UsageError(f"--digits {text!r}: give a count (5) or a range (3-6)") from None
    return pair


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Largest image (width x height) ``serve`` and ``review`` decode from a request: a phone
#: photo fits, and a burst of uploads stays far below the memory of ``--max-pixels``' files.
DEFAULT_UPLOAD_MAX_PIXELS = 16_000_000


@dataclass(frozen=True)
class ServeOptions:
    """How ``serve`` and ``review`` listen; what they predict with is a
    :class:`PredictOptions`."""

    host: str = "127.0.0.1"
    port: int = 8000
    server: str = "waitress"  # or "flask" (Flask's development server)
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    threads: int = 8  # waitress's worker threads
    allow_hosts: tuple[str, ...] = ()  # Host names allowed besides loopback ("*": any)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def exposed(self) -> bool:
        """Listening on an address other machines can reach."""
        return self.host not in LOOPBACK_NAMES

    @property
    def allowed_hosts(self) -> frozenset[str] | None:
        """The ``Host`` names a request may carry (``None``: any): loopback names, the
        listening address unless it is a wildcard, and :attr:`allow_hosts`."""
        if "*" in self.allow_hosts:
            return None
        names = {*LOOPBACK_NAMES, *(h.lower().strip("[]") for h in self.allow_hosts)}
        if self.host not in ("0.0.0.0", "::", ""):
            names.add(self.host.lower().strip("[]"))
        return frozenset(names)
