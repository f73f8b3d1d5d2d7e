"""Model files: the shipped model, a ``.keras`` file resolved once (:class:`ModelRef`),
loading, saving with its model card, and the card itself."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from batchdigits.atomic import atomic_text
from batchdigits.errors import (
    BatchDigitsError,
    ModelLoadError,
    ModelNotFoundError,
    OutputError,
    write_error,
)
from batchdigits.imaging.preprocess import SIZE
from batchdigits.model.network import fold_batch_norm, networks
from batchdigits.options import CONSULTED_REVIEW_BELOW, FALLBACK_REVIEW_THRESHOLD
from batchdigits.runtime.lazy import keras

DEFAULT_MODEL_NAME = "default.keras"
NUMBERS_MODEL_NAME = "numbers.keras"  # the sequence reader of --numbers
SHIPPED_NAME = "(shipped model)"
SHIPPED_NUMBERS_NAME = "(shipped numbers model)"


def default_model_path(numbers: bool = False) -> Path:
    """The model that ships inside the package (``numbers``: the reader of numbers)."""
    name = NUMBERS_MODEL_NAME if numbers else DEFAULT_MODEL_NAME
    return Path(str(resources.files("batchdigits.model") / name))


def card_path(model_path: str | os.PathLike) -> Path:
    """Where a model's JSON card lives: ``NAME.keras`` -> ``NAME.card.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


class ModelRef:
    """A model file resolved once: ``path`` (``None`` given: the shipped model; with
    ``numbers``, the shipped reader of numbers), ``name`` as rows and summaries show it,
    its ``fingerprint`` (hashed once, when first asked for) and its card's ``threshold``.
    A missing file fails here, before anything is written
    (:class:`~batchdigits.errors.ModelNotFoundError`)."""

    def __init__(self, given: str | os.PathLike | None = None, numbers: bool = False) -> None:
        self.numbers = numbers
        self.path = model_file(given, numbers)
        shipped = SHIPPED_NUMBERS_NAME if numbers else SHIPPED_NAME
        self.name = os.fspath(given) if given is not None else shipped

    @functools.cached_property
    def fingerprint(self) -> str:
        """``sha256:...`` of the file's bytes."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return "sha256:" + digest.hexdigest()

    @functools.cached_property
    def card(self) -> dict[str, Any]:
        """The model's card, read once; empty when it has none (the model still predicts)."""
        try:
            return read_card(self.path)
        except BatchDigitsError:
            return {}

    def threshold(self, given: float | None = None) -> float:
        """``given``, else the card's review threshold, else the fallback (no card)."""
        if given is not None:
            return given
        return float(self.card.get("review_threshold", FALLBACK_REVIEW_THRESHOLD))

    def consult_below(self) -> float | None:
        """Under which first confidence a second opinion is asked (the card's
        ``second_opinion.consulted_below``; ``None``: the review threshold)."""
        below = self.card.get("second_opinion", {}).get("consulted_below")
        return None if below is None else float(below)

    def consulted_review_below(self, given: float | None = None) -> float:
        """Under which confidence a row the second opinion was asked about is flagged:
        ``given`` (the user's review threshold, for every row), else the card's
        ``second_opinion.review_threshold``, else always (:data:`CONSULTED_REVIEW_BELOW`)."""
        if given is not None:
            return given
        below = self.card.get("second_opinion", {}).get("review_threshold")
        return CONSULTED_REVIEW_BELOW if below is None else float(below)

    def second_answers_alone(self) -> bool:
        """A cascade (the card's ``second_opinion.answers`` is ``"second"``): a row the
        first network passes on takes the second's answer alone, not the mean."""
        return self.card.get("second_opinion", {}).get("answers") == "second"

    def load(self):
        """The Keras model (see :func:`load_model`, :func:`load_numbers_model`)."""
        return load_numbers_model(self.path) if self.numbers else load_model(self.path)

    @property
    def confidence_power(self) -> float:
        """A reader of numbers: the power its card calibrates the confidence with."""
        return float(self.card.get("confidence_power", 1.0))


def model_file(path: str | os.PathLike | None = None, numbers: bool = False) -> Path:
    """The model's file (default: the shipped one); :class:`ModelNotFoundError` if absent."""
    p = Path(path) if path is not None else default_model_path(numbers)
    if not p.is_file():
        raise ModelNotFoundError(
            f"model file {p} does not exist; pass --model with a .keras file, "
            "or add --train-if-missing to train one there"
        )
    return p


def _load_keras(p: Path, made_by: str):
    try:
        return keras().models.load_model(p, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        raise ModelLoadError(
            f"cannot load model {p}: {type(exc).__name__}: {exc}. "
            f"Is it a .keras file saved by '{made_by}'?"
        ) from exc


def load_numbers_model(path: str | os.PathLike | None = None):
    """Load a reader of numbers (default: the shipped one) and check its shapes."""
    from batchdigits.numbers.sequence import HEIGHT, STEPS, WIDTH

    p = model_file(path, numbers=True)
    model = _load_keras(p, "batchdigits tune --numbers")
    in_shape, out_shape = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    if len(model.outputs) != 1 or in_shape != (HEIGHT, WIDTH, 1) or out_shape != (STEPS, 11):
        raise ModelLoadError(
            f"model {p} takes {in_shape} and gives {out_shape}; --numbers needs a reader of "
            f"numbers from ({HEIGHT}, {WIDTH}, 1) fields to ({STEPS}, 11) (a digit model "
            "reads one digit: leave out --numbers, or --model)"
        )
    return model


def load_model(path: str | os.PathLike | None = None):
    """Load a ``.keras`` model (default: the shipped one) and check it fits this tool."""
    p = model_file(path)
    model = _load_keras(p, "batchdigits train")
    for network in networks_or_none(model, p):
        in_shape = tuple(network.input_shape[1:])
        out_shape = tuple(network.output_shape[1:])
        if in_shape != (SIZE, SIZE, 1) or out_shape != (10,):
            raise ModelLoadError(
                f"model {p} takes {in_shape} and gives {out_shape}; batchdigits needs a "
                "model from (28, 28, 1) images to 10 probabilities"
            )
    return model


def networks_or_none(model, path) -> list:
    """The networks in a loaded file (one, or the pair of :func:`~batchdigits.model.
    network.paired`), or :class:`ModelLoadError` for a file with other outputs."""
    if len(model.outputs) == 1:
        return [model]
    try:
        return list(networks(model))
    except ValueError as exc:  # two outputs, but not our pair
        raise ModelLoadError(
            f"model {path} has {len(model.outputs)} outputs and is not a batchdigits model "
            "with a second opinion"
        ) from exc


def check_model_output(path: str | os.PathLike) -> Path:
    """Fail early (before any training) if ``path`` cannot take a saved model."""
    p = Path(path)
    if p.suffix != ".keras":
        raise OutputError(f"model output {p} must end in .keras")
    if p.is_dir():
        raise OutputError(f"model output {p} is a folder; give a file name ending in .keras")
    folder = p.parent
    while not folder.exists():
        folder = folder.parent
    if not os.access(folder, os.W_OK):
        raise OutputError(f"cannot save model to {p}: folder {folder} is not writable")
    return p


def save_model(model, path: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Save the model for inference as ``.keras`` (batch norm folded, no optimizer state)
    and its card beside it; return the card's path."""
    p = check_model_output(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        # Saved first into a private folder beside it (no name another user can plant a
        # link at), then renamed: a model file is whole or absent, never half written.
        with tempfile.TemporaryDirectory(prefix=f".{p.stem}.", dir=p.parent) as private:
            partial = Path(private) / "model.keras"  # Keras wants .keras
            fold_batch_norm(_without_optimizer(model)).save(partial)
            with atomic_text(card_path(p)) as f:
                f.write(json.dumps(card, indent=2, sort_keys=False) + "\n")
            os.replace(partial, p)
    except OSError as exc:
        raise write_error(p, exc) from exc
    return card_path(p)


def _without_optimizer(model):
    """A copy with the same weights and no training state: a third of the file size,
    and faster to load."""
    if getattr(model, "optimizer", None) is None:
        return model
    clone = model.__class__.from_config(model.get_config())  # not compiled
    clone.set_weights(model.get_weights())
    return clone


def read_card(model_path: str | os.PathLike | None = None, numbers: bool = False) -> dict[str, Any]:
    """The model card of a model (default: the shipped one; ``numbers``: the shipped
    reader of numbers)."""
    mp = Path(model_path) if model_path is not None else default_model_path(numbers)
    cp = card_path(mp)
    if not cp.is_file():
        if not mp.is_file():
            raise ModelNotFoundError(f"model file {mp} does not exist")
        raise ModelNotFoundError(f"model {mp} has no card ({cp.name} is missing beside it)")
    try:
        return json.loads(cp.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read model card {cp}: {exc}") from exc
