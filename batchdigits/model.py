"""The CNN: building it, saving it with its model card, and loading it back."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from ._lazy import keras
from .errors import (
    BatchDigitsError,
    ModelLoadError,
    ModelNotFoundError,
    OutputError,
    write_error,
)
from .options import FALLBACK_REVIEW_THRESHOLD
from .output import atomic_text
from .preprocess import SIZE

DEFAULT_MODEL_NAME = "default.keras"
#: Convolution widths per block (each block ends in 2x2 max pooling), dense width, dropout.
DEFAULT_ARCHITECTURE: dict[str, Any] = {
    "blocks": [[32], [48, 64], [128]],
    "dense": 256,
    "dropout": 0.4,
    "block_dropout": 0.2,  # after the pooling of every block but the first
}


def default_model_path() -> Path:
    """The model that ships inside the package."""
    return Path(str(resources.files("batchdigits") / "models" / DEFAULT_MODEL_NAME))


def card_path(model_path: str | os.PathLike) -> Path:
    """Where a model's JSON card lives: ``NAME.keras`` -> ``NAME.card.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


def build_model(
    blocks: list[list[int]] = DEFAULT_ARCHITECTURE["blocks"],
    dense: int = DEFAULT_ARCHITECTURE["dense"],
    dropout: float = DEFAULT_ARCHITECTURE["dropout"],
    block_dropout: float = DEFAULT_ARCHITECTURE["block_dropout"],
    batch_norm: bool = True,
):
    """The classic MNIST CNN: [Conv-BN-ReLU]xN + max pool (+ dropout after the first)
    per block, dense, dropout, softmax.

    Input is ``(28, 28, 1)`` in 0..255 (``Rescaling`` inside the model), output ten
    probabilities. The ``temperature`` layer divides the logits by a temperature (1 until
    calibrated), so the saved file carries its own calibration. ``batch_norm=False`` gives
    the same network with biased convolutions instead: what :func:`fold_batch_norm` fills.
    """
    k = keras()
    layers = k.layers
    inputs = k.Input(shape=(SIZE, SIZE, 1), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    for b, widths in enumerate(blocks):
        for c, filters in enumerate(widths):
            name = f"conv{b}_{c}"
            x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm, name=name)(x)
            if batch_norm:
                x = layers.BatchNormalization(momentum=0.9, name=f"bn{b}_{c}")(x)
            x = layers.Activation("relu", name=f"relu{b}_{c}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{b}")(x)
        if block_dropout and b > 0:
            x = layers.Dropout(block_dropout, name=f"drop{b}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense, activation="relu", name="dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    logits = layers.Dense(10, name="logits")(x)
    scaled = layers.Rescaling(1.0, name="temperature")(logits)
    outputs = layers.Activation("softmax", name="probabilities")(scaled)
    return k.Model(inputs, outputs, name="batchdigits_cnn")


def architecture_of(model) -> dict[str, Any]:
    """The ``build_model`` arguments that rebuild ``model``'s structure."""
    blocks: dict[int, list[int]] = {}
    for layer in model.layers:
        if layer.name.startswith("conv"):
            b = int(layer.name[4:].split("_")[0])
            blocks.setdefault(b, []).append(int(layer.filters))
    return {
        "blocks": [blocks[b] for b in sorted(blocks)],
        "dense": int(model.get_layer("dense").units),
        "dropout": float(model.get_layer("dropout").rate),
        "block_dropout": max(
            (float(x.rate) for x in model.layers if x.name[:4] == "drop" and x.name[4:].isdigit()),
            default=0.0,
        ),
    }


def fold_batch_norm(model):
    """The same function without batch normalisation: each BN's scale and shift folded
    into the convolution before it (kernel x gamma/sqrt(var+eps), bias = beta - mean x
    that). Identical outputs up to float rounding, and fewer ops at inference."""
    import numpy as np

    if not any(layer.name.startswith("bn") for layer in model.layers):
        return model
    folded = build_model(**architecture_of(model), batch_norm=False)
    for layer in folded.layers:
        source = model.get_layer(layer.name)
        if layer.name.startswith("conv"):
            bn = model.get_layer("bn" + layer.name[4:])
            gamma, beta, mean, var = (v.numpy() for v in bn.weights)
            scale = gamma / np.sqrt(var + bn.epsilon)
            kernel = source.weights[0].numpy() * scale
            layer.set_weights([kernel, beta - mean * scale])
        elif layer.weights:
            layer.set_weights(source.get_weights())
    return with_temperature(folded, temperature_of(model))


def logits_model(model):
    """The same network up to its logits (before temperature and softmax)."""
    k = keras()
    return k.Model(model.input, model.get_layer("logits").output)


def with_temperature(model, temperature: float):
    """A copy of ``model`` whose probabilities are ``softmax(logits / temperature)``.

    The temperature lives in the model (its ``temperature`` layer), so every front end
    that loads the ``.keras`` file gets calibrated probabilities."""
    config = model.get_config()
    for layer in config["layers"]:
        if layer["config"].get("name") == "temperature":
            layer["config"]["scale"] = 1.0 / float(temperature)
    calibrated = model.__class__.from_config(config)
    calibrated.set_weights(model.get_weights())
    return calibrated


def temperature_of(model) -> float:
    """The temperature stored in a model (1.0 for an uncalibrated one)."""
    return 1.0 / float(model.get_layer("temperature").scale)


def model_file(path: str | os.PathLike | None = None) -> Path:
    """The model's file (default: the shipped one); :class:`ModelNotFoundError` if absent."""
    p = Path(path) if path is not None else default_model_path()
    if not p.is_file():
        raise ModelNotFoundError(
            f"model file {p} does not exist; pass --model with a .keras file, "
            "or add --train-if-missing to train one there"
        )
    return p


def load_model(path: str | os.PathLike | None = None):
    """Load a ``.keras`` model (default: the shipped one) and check it fits this tool."""
    p = model_file(path)
    try:
        model = keras().models.load_model(p, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        raise ModelLoadError(
            f"cannot load model {p}: {type(exc).__name__}: {exc}. "
            "Is it a .keras file saved by 'batchdigits train'?"
        ) from exc
    in_shape = tuple(model.input_shape[1:])
    out_shape = tuple(model.output_shape[1:])
    if in_shape != (SIZE, SIZE, 1) or out_shape != (10,):
        raise ModelLoadError(
            f"model {p} takes {in_shape} and gives {out_shape}; batchdigits needs a model "
            "from (28, 28, 1) images to 10 probabilities"
        )
    return model


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


def read_card(model_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The model card of a model (default: the shipped one)."""
    mp = Path(model_path) if model_path is not None else default_model_path()
    cp = card_path(mp)
    if not cp.is_file():
        if not mp.is_file():
            raise ModelNotFoundError(f"model file {mp} does not exist")
        raise ModelNotFoundError(f"model {mp} has no card ({cp.name} is missing beside it)")
    try:
        return json.loads(cp.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read model card {cp}: {exc}") from exc


def model_fingerprint(model: str | os.PathLike | None) -> str:
    """``sha256:...`` of the model file's bytes (the shipped model when ``None``)."""
    digest = hashlib.sha256()
    with open(model if model is not None else default_model_path(), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def review_threshold(model: str | os.PathLike | None, given: float | None) -> float:
    """``given``, else the model card's review threshold, else the fallback."""
    if given is not None:
        return given
    try:
        return float(read_card(model).get("review_threshold", FALLBACK_REVIEW_THRESHOLD))
    except BatchDigitsError:  # no card beside the model: it still predicts
        return FALLBACK_REVIEW_THRESHOLD


def model_name(model: str | os.PathLike | None) -> str:
    return os.fspath(model) if model is not None else "(shipped model)"
