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
from batchdigits.training.data import Mnist, split_train_validation
from batchdigits.training.datasets import image_dataset, joined, validation_parts
from batchdigits.training.probes import hard_set, non_digit_set, probe_figures, scan_like_set

#: Images per probe set in a cascade's card (as in train's).
PROBE_IMAGES = 2000
#: Generated non-digits the first look's threshold is chosen on, and their seed (the
#: card's probes use seed 3).
NON_DIGITS, NON_DIGIT_SEED = 4000, 11
#: The first look answers a row only when its calibrated confidence says it is wrong at
#: most once in 2,000: the 0.05 points a cascade may move the strong network's figures.
#: (The rules above gave 0.9978 for the shipped pair; at that threshold the first look
#: read 1 in 1,000 real photographs wrong that the strong network read right.)
FIRST_LOOK_FLOOR = 0.9995


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
    other ones than the card's probes), and is not less accurate than it, in all rows and
    in the rows not flagged, on hard and scan-like digits made from the validation digits
    (:func:`_hard_floor`); and never under :data:`FIRST_LOOK_FLOOR`. The card is the
    strong network's, its test and probe figures measured again for the cascade (its own
    kept under ``second_opinion.card``, the first look's under ``first_network``)."""
    network, card = strong
    threshold = float(card["review_threshold"])
    inputs, labels = _validation_inputs(mnist, seed)
    mine, theirs = (Inference.of(n).infer(inputs).numpy() for n in (small, network))
    theirs_kept = theirs.max(1) >= threshold
    target = float((theirs.argmax(1) == labels)[theirs_kept].mean())
    accurate = choose_review_threshold(mine.max(1), mine.argmax(1) == labels, target)
    non_digits = _non_digit_floor(small, network, threshold)
    hard = _hard_floor(small, network, threshold, mnist, seed)
    below = max(threshold, accurate, non_digits, hard, FIRST_LOOK_FLOOR)
    pair = paired(small, network)
    measured, consulted = _cascade_figures(pair, below, threshold, mnist)
    return pair, {
        **card,
        **measured,
        "parameters": int(pair.count_params()),
        "first_network": small_card,
        "second_opinion": {
            "answers": "second",
            "consulted_below": round(below, 6),
            "review_threshold": threshold,
            "chosen_by": {
                "validation_accuracy": round(accurate, 6),
                "non_digits": round(non_digits, 6),
                "hard_and_scan_like": round(hard, 6),
                "floor": FIRST_LOOK_FLOOR,
            },
            "validation_target_accuracy": round(target, 6),
            "validation_consulted_share": round(float((mine.max(1) < below).mean()), 6),
            "test_consulted_share": round(consulted, 6),
            "card": {key: card[key] for key in measured if key in card},
        },
    }


def _non_digit_floor(small, strong, threshold: float) -> float:
    """The lowest first-look threshold at which the cascade leaves no more of
    :data:`NON_DIGITS` generated non-digits unflagged than ``strong`` alone does."""

    images = non_digit_set(NON_DIGITS, NON_DIGIT_SEED)
    mine, found = Inference.of(small).predict_images(images)
    theirs = Inference.of(strong).predict_images(images)[0].max(1)[found]
    mine = mine.max(1)[found]
    allowed = int((theirs >= threshold).sum())
    for below in np.unique(np.append(mine[mine >= threshold], threshold)):
        if ((mine >= below) | (theirs >= threshold)).sum() <= allowed:
            return float(below)
    return float(np.nextafter(mine.max(), np.inf))


def _hard_floor(small, strong, threshold: float, mnist: Mnist, seed: int) -> float:
    """The lowest first-look threshold at which the cascade reads the probes' kinds of
    digit (hard and scan-like, made from the validation digits, through the whole
    normalisation) at least as well as ``strong`` alone: as many right, and the rows
    not flagged at least as accurate."""

    _, val = split_train_validation(len(mnist.x_train), seed)
    x, y = mnist.x_train[val], mnist.y_train[val]
    images = hard_set(x, NON_DIGIT_SEED) + scan_like_set(x, NON_DIGIT_SEED)
    labels = np.concatenate([y, y])
    mine, found = Inference.of(small).predict_images(images)
    theirs = Inference.of(strong).predict_images(images)[0]
    mine_right, their_right = (p.argmax(1) == labels for p in (mine, theirs))
    their_kept = theirs.max(1) >= threshold
    right, kept_right = their_right.sum(), (their_right & their_kept).sum() / their_kept.sum()
    confidences = mine.max(1)
    for below in np.unique(np.append(confidences[confidences >= threshold], threshold)):
        accepted = found & (confidences >= below)
        cascade_right = np.where(accepted, mine_right, their_right)
        kept = accepted | their_kept
        if cascade_right.sum() >= right and (cascade_right & kept).sum() / kept.sum() >= kept_right:
            return float(below)
    return float(np.nextafter(confidences.max(), np.inf))


def _validation_inputs(mnist: Mnist, seed: int):
    """The training run's validation digits, clean and varied, as one array."""

    _, val = split_train_validation(len(mnist.x_train), seed)
    dataset, labels = joined(validation_parts(mnist.x_train[val], mnist.y_train[val], seed))
    return np.concatenate([x for x, _ in dataset]), labels


def _cascade_figures(pair, below: float, threshold: float, mnist: Mnist):
    """The cascade's test figures (as a single network's card has them) and the share of
    test rows it passes on."""

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
