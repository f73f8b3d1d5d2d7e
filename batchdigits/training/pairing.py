"""A second opinion joining a model: the pair of networks in one file, and its card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from batchdigits.errors import ModelLoadError
from batchdigits.model.calibrate import coverage_and_accuracy, expected_calibration_error, tradeoff
from batchdigits.model.inference import Inference
from batchdigits.model.network import networks, paired
from batchdigits.model.store import load_model, read_card
from batchdigits.training.data import Mnist
from batchdigits.training.datasets import image_dataset


def first_network(path: Path | None):
    """``(network, card)`` of the model a new second opinion joins, or ``None``."""
    if path is None:
        return None
    model = load_model(path)
    if networks(model)[1] is not None:
        raise ModelLoadError(f"model {path} already has a second opinion")
    return model, read_card(path)


def paired_with(first, second, second_card: dict[str, Any], mnist: Mnist):
    """The model file's pair (:func:`~batchdigits.model.network.paired`): ``first``'s
    network reads every row; ``second`` is asked below the first's review threshold. The
    card is the first's, its test figures measured again for the pair (the first's own
    kept under ``first_network``), with the second's card under ``second_opinion``."""
    network, card = first
    pair = paired(network, second)
    threshold = float(card["review_threshold"])
    inputs = np.concatenate([x for x, _ in image_dataset(mnist.x_test, mnist.y_test, 512)])
    alone = Inference.of(network).infer(inputs).numpy()
    opinion = Inference.of(pair, consult_below=threshold).second
    probs, consulted = opinion.consulted(inputs, alone, np.ones(len(inputs), bool))
    correct = probs.argmax(1) == mnist.y_test
    review_below = np.where(consulted, opinion.review_below, threshold)
    coverage, kept_accuracy = coverage_and_accuracy(probs.max(1), correct, review_below)
    measured = {
        "test_accuracy": round(float(correct.mean()), 6),
        "test_ece": round(expected_calibration_error(probs.max(1), correct), 6),
        "test_review_coverage": round(coverage, 6),
        "test_review_accuracy": round(kept_accuracy, 6),
        "test_review_tradeoff": tradeoff(probs.max(1), correct),
    }
    return pair, {
        **card,
        **measured,
        "first_network": {key: card[key] for key in measured if key in card},
        "second_opinion": {
            "consulted_below": threshold,
            "review_threshold": opinion.review_below,
            "test_consulted_share": round(float(consulted.mean()), 6),
            "card": second_card,
        },
    }
