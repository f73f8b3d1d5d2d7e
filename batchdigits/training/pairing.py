"""A second opinion joining a model: the pair of networks in one file, and its card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from batchdigits.errors import ModelLoadError
from batchdigits.model.calibrate import (
    choose_review_threshold,
    coverage_and_accuracy,
    expected_calibration_error,
    tradeoff,
)
from batchdigits.model.inference import Inference
from batchdigits.model.network import networks, paired
from batchdigits.model.store import load_model, read_card
from batchdigits.options import PredictOptions
from batchdigits.training.data import Mnist
from batchdigits.training.datasets import image_dataset

#: Images per probe set in a cascade's card (as in train's).
PROBE_IMAGES = 2000
#: Generated non-digits the first look's threshold is chosen on, and their seed (the
#: card's probes use seed 3).
NON_DIGITS, NON_DIGIT_SEED = 4000, 11


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


def strong_network(path: Path | None):
    """``(network, card)`` of the model a new first look passes its doubts to, or ``None``."""
    return first_network(path)


def cascade_with(strong, small, small_card: dict[str, Any], mnist: Mnist, seed: int):
    """The model file's cascade: ``small`` (just trained) reads every row; the rows it is
    not sure of go to ``strong`` (the model it was trained for), whose answer they take.

    The first look's threshold is the lowest confidence at which its rows are at least as
    accurate as the strong network's own unflagged rows, both on the validation digits
    (clean and varied) that neither trained on, and at which the cascade leaves no more
    generated non-digits unflagged than the strong network alone (:func:`_non_digit_floor`;
    other ones than the card's probes). The card is the strong network's, its test
    and probe figures measured again for the cascade (its own kept under
    ``second_opinion.card``, the first look's under ``first_network``)."""
    network, card = strong
    threshold = float(card["review_threshold"])
    inputs, labels = _validation_inputs(mnist, seed)
    mine, theirs = (Inference.of(n).infer(inputs).numpy() for n in (small, network))
    theirs_kept = theirs.max(1) >= threshold
    target = float((theirs.argmax(1) == labels)[theirs_kept].mean())
    accurate = choose_review_threshold(mine.max(1), mine.argmax(1) == labels, target)
    below = max(threshold, accurate, _non_digit_floor(small, network, threshold))
    pair = paired(small, network)
    measured, consulted = _cascade_figures(pair, below, threshold, mnist)
    return pair, {
        **card,
        **measured,
        "first_network": small_card,
        "second_opinion": {
            "answers": "second",
            "consulted_below": round(below, 6),
            "review_threshold": threshold,
            "validation_target_accuracy": round(target, 6),
            "validation_consulted_share": round(float((mine.max(1) < below).mean()), 6),
            "test_consulted_share": round(consulted, 6),
            "card": {key: card[key] for key in measured if key in card},
        },
    }


def _non_digit_floor(small, strong, threshold: float) -> float:
    """The lowest first-look threshold at which the cascade leaves no more of
    :data:`NON_DIGITS` generated non-digits unflagged than ``strong`` alone does."""
    from batchdigits.training.probes import non_digit_set

    images = non_digit_set(NON_DIGITS, NON_DIGIT_SEED)
    mine, found = Inference.of(small).predict_images(images)
    theirs = Inference.of(strong).predict_images(images)[0].max(1)[found]
    mine = mine.max(1)[found]
    allowed = int((theirs >= threshold).sum())
    for below in np.unique(np.append(mine[mine >= threshold], threshold)):
        if ((mine >= below) | (theirs >= threshold)).sum() <= allowed:
            return float(below)
    return float(np.nextafter(mine.max(), np.inf))


def _validation_inputs(mnist: Mnist, seed: int):
    """The training run's validation digits, clean and varied, as one array."""
    from batchdigits.training.datasets import joined, validation_parts
    from batchdigits.training.train import split_train_validation

    _, val = split_train_validation(len(mnist.x_train), seed)
    dataset, labels = joined(validation_parts(mnist.x_train[val], mnist.y_train[val], seed))
    return np.concatenate([x for x, _ in dataset]), labels


def _cascade_figures(pair, below: float, threshold: float, mnist: Mnist):
    """The cascade's test figures (as a single network's card has them) and the share of
    test rows it passes on."""
    from batchdigits.training.train import probe_figures

    inputs = np.concatenate([x for x, _ in image_dataset(mnist.x_test, mnist.y_test, 512)])
    inference = Inference.of(
        pair,
        PredictOptions(review_threshold=threshold),
        consult_below=below,
        consulted_review_below=threshold,
        second_alone=True,
    )
    first = inference.infer(inputs).numpy()
    probs, consulted = inference.second.consulted(inputs, first, np.ones(len(inputs), bool))
    correct = probs.argmax(1) == mnist.y_test
    coverage, kept_accuracy = coverage_and_accuracy(probs.max(1), correct, threshold)
    figures = {
        "test_accuracy": round(float(correct.mean()), 6),
        "test_ece": round(expected_calibration_error(probs.max(1), correct), 6),
        "test_review_coverage": round(coverage, 6),
        "test_review_accuracy": round(kept_accuracy, 6),
        "test_review_tradeoff": tradeoff(probs.max(1), correct),
        **probe_figures(pair, mnist, PROBE_IMAGES, threshold, inference),
    }
    return figures, float(consulted.mean())
