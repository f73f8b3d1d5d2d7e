"""The CNN: its layers, and the transformations of a trained network (batch norm folded
into the convolutions, calibration by temperature)."""

from __future__ import annotations

from typing import Any

from batchdigits.imaging.preprocess import SIZE
from batchdigits.runtime.lazy import keras

#: Convolution widths per block (each block ends in 2x2 max pooling), dense width, dropout.
DEFAULT_ARCHITECTURE: dict[str, Any] = {
    "blocks": [[32], [48, 64], [128]],
    "dense": 256,
    "dropout": 0.4,
    "block_dropout": 0.2,  # after the pooling of every block but the first
}
#: Networks ``train --architecture`` builds: the shipped network, a wider one (two
#: convolutions per block; about 2.4x the compute) for a second opinion, and a small one
#: (its compute about 4x as fast) for a first look that passes its doubts to a stronger.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "default": DEFAULT_ARCHITECTURE,
    "small": {
        "blocks": [[16], [32], [64]],
        "dense": 128,
        "dropout": 0.25,
        "block_dropout": 0.1,
    },
    "wide": {
        "blocks": [[32, 32], [64, 64], [128, 128]],
        "dense": 256,
        "dropout": 0.4,
        "block_dropout": 0.2,
    },
}


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
    # float32 from the logits on, also when training computes in bfloat16
    scaled = layers.Rescaling(1.0, name="temperature", dtype="float32")(logits)
    outputs = layers.Activation("softmax", name="probabilities", dtype="float32")(scaled)
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

    if not _has_batch_norm(model):
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


def as_float32(model):
    """The same network computing in float32 (a model trained in bfloat16 keeps its
    variables in float32: they are copied as they are)."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    copy = build_model(**architecture_of(model), batch_norm=_has_batch_norm(model))
    copy.set_weights(model.get_weights())
    return copy


def _has_batch_norm(model) -> bool:
    return any(layer.name.startswith("bn") for layer in model.layers)


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


# --------------------------------------------------------------------------- second opinion
# A model file may hold two networks: the one that reads every row, and a stronger one
# consulted only for the rows the first is not sure of. Both live in one ``.keras`` file
# (one fingerprint, one card, one file to copy to a worker), as a model with two outputs.

FIRST, SECOND = "first", "second"


def paired(first, second):
    """One Keras model holding ``first`` and ``second`` (each 28x28 -> 10), named so
    :func:`networks` finds them: ``images -> [first's, second's probabilities]``."""
    k = keras()
    inputs = k.Input(shape=(SIZE, SIZE, 1), name="image")
    parts = [_renamed(first, FIRST), _renamed(second, SECOND)]
    return k.Model(inputs, [part(inputs) for part in parts], name="batchdigits_pair")


def networks(model):
    """``(first, second)`` of a model file's network: ``second`` is ``None`` for a
    single network."""
    if len(model.outputs) == 1:
        return model, None
    return model.get_layer(FIRST), model.get_layer(SECOND)


def _renamed(model, name: str):
    config = model.get_config()
    config["name"] = name
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy
