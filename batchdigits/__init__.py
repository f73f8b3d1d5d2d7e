"""batchdigits: predict handwritten digits for a folder of images, into a CSV.

The library API (the CLI is a thin layer over it)::

    from batchdigits import PredictOptions, predict_folder, train, load_model, load_mnist

TensorFlow is imported only when a function that needs it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "PredictOptions",
    "evaluate_folder",
    "load_mnist",
    "load_model",
    "predict_folder",
    "read_card",
    "train",
]

_EXPORTS = {
    "load_mnist": "data",
    "load_model": "model",
    "read_card": "model",
    "predict_folder": "predict",
    "PredictOptions": "options",
    "evaluate_folder": "evaluate",
    "train": "train",
}

if TYPE_CHECKING:  # pragma: no cover
    from batchdigits.evaluation.evaluate import evaluate_folder
    from batchdigits.model.store import load_model, read_card
    from batchdigits.options import PredictOptions
    from batchdigits.run.driver import predict_folder
    from batchdigits.training.data import load_mnist
    from batchdigits.training.train import train


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
