"""batchdigits: predict handwritten digits for a folder of images, into a CSV.

The library API (the command line is a thin layer over it)::

    from batchdigits import PredictOptions, predict_folder, evaluate_folder, train

The package, by concern:

- ``imaging``: finding image files, decoding them, the MNIST-style normalisation,
  the tf.data pipeline
- ``model``: the network, model files and cards, calibration, the one inference path
- ``run``: a prediction run (the driver, its engines, the lock, incremental state, the
  CSV writers)
- ``training``: MNIST, augmentation, training and fine-tuning
- ``evaluation``: metrics, reports, labels files
- ``web``: the drawing page, the review page and their server
- ``cli``: the command line
- ``runtime``: the lazy, quiet TensorFlow import
- top level: ``errors``, ``options``, ``rows`` (the CSV's format), ``writers`` (the
  CSV writers), ``atomic`` (files that appear whole), ``stops`` (signals), ``progress``

TensorFlow is imported only when a function that needs it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "PredictOptions": "batchdigits.options",
    "ServeOptions": "batchdigits.options",
    "predict_folder": "batchdigits.run.driver",
    "PredictSummary": "batchdigits.run.driver",
    "evaluate_folder": "batchdigits.evaluation.evaluate",
    "train": "batchdigits.training.train",
    "tune": "batchdigits.training.tune",
    "load_mnist": "batchdigits.training.data",
    "load_model": "batchdigits.model.store",
    "read_card": "batchdigits.model.store",
    "ModelRef": "batchdigits.model.store",
    "Inference": "batchdigits.model.inference",
}
__all__ = [
    "Inference",
    "ModelRef",
    "PredictOptions",
    "PredictSummary",
    "ServeOptions",
    "evaluate_folder",
    "load_mnist",
    "load_model",
    "predict_folder",
    "read_card",
    "train",
    "tune",
]

if TYPE_CHECKING:  # pragma: no cover
    from batchdigits.evaluation.evaluate import evaluate_folder
    from batchdigits.model.inference import Inference
    from batchdigits.model.store import ModelRef, load_model, read_card
    from batchdigits.options import PredictOptions, ServeOptions
    from batchdigits.run.driver import PredictSummary, predict_folder
    from batchdigits.training.data import load_mnist
    from batchdigits.training.train import train
    from batchdigits.training.tune import tune


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
