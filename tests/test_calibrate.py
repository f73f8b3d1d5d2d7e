"""Honest confidences: ECE, temperature scaling, the review threshold."""

from __future__ import annotations

import numpy as np
import pytest

from batchdigits.model.calibrate import (
    choose_review_threshold,
    coverage_and_accuracy,
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
    tradeoff,
)


def test_ece_by_hand():
    # Two bins used: 0.9 (4 rows, 3 right) and 0.6 (1 row, right).
    conf = np.array([0.9, 0.9, 0.9, 0.9, 0.6])
    correct = np.array([1, 1, 1, 0, 1])
    expected = 4 / 5 * abs(0.75 - 0.9) + 1 / 5 * abs(1.0 - 0.6)
    assert expected_calibration_error(conf, correct) == pytest.approx(expected)
    assert expected_calibration_error(np.full(10, 1.0), np.ones(10)) == 0.0


def overconfident_logits(n=4000, seed=0):
    """Logits of a 90%-accurate classifier that is far too sure of itself."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    predicted = np.where(rng.random(n) < 0.9, labels, (labels + rng.integers(1, 10, n)) % 10)
    logits = rng.normal(0, 1, (n, 10))
    logits[np.arange(n), predicted] += 12.0  # ~100% confidence on every row
    return logits, labels


def test_temperature_scaling_lowers_ece_of_an_overconfident_model():
    logits, labels = overconfident_logits()
    fit_logits, fit_labels = logits[:2000], labels[:2000]
    test_logits, test_labels = logits[2000:], labels[2000:]
    temperature = fit_temperature(fit_logits, fit_labels)
    assert temperature > 2.0  # it must soften the over-confident probabilities
    assert nll(fit_logits, fit_labels, temperature) < nll(fit_logits, fit_labels, 1.0)
    before, after = softmax(test_logits), softmax(test_logits, temperature)
    correct = before.argmax(1) == test_labels
    assert (after.argmax(1) == before.argmax(1)).all()  # the ranking never changes
    ece_before = expected_calibration_error(before.max(1), correct)
    ece_after = expected_calibration_error(after.max(1), correct)
    assert ece_before > 0.08 and ece_after < ece_before / 4


def test_review_threshold_keeps_the_most_rows_at_the_target_accuracy():
    conf = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.90, 0.80])
    correct = np.array([1, 1, 1, 0, 1, 1, 0])
    # Keeping the top 3 is 100% right; any more includes the wrong 0.96.
    assert choose_review_threshold(conf, correct, 1.0) == 0.97
    assert choose_review_threshold(conf, correct, 0.8) == 0.90  # 5 of 6 = 83%
    coverage, accuracy = coverage_and_accuracy(conf, correct, 0.97)
    assert coverage == pytest.approx(3 / 7) and accuracy == 1.0
    # Ties are kept or flagged together.
    tied = np.array([0.9, 0.9, 0.9])
    assert choose_review_threshold(tied, np.array([1, 0, 1]), 1.0) > 0.9


def test_tradeoff_coverage_falls_and_accuracy_rises_with_the_threshold():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, 5000)
    correct = rng.random(5000) < confidence  # calibrated by construction
    rows = tradeoff(confidence, correct, (0.5, 0.9, 0.99))
    assert [r["threshold"] for r in rows] == [0.5, 0.9, 0.99]
    coverage = [r["coverage"] for r in rows]
    accuracy = [r["accuracy"] for r in rows]
    assert coverage[0] > coverage[1] > coverage[2] > 0
    assert accuracy[0] < accuracy[1] < accuracy[2]
    assert abs(coverage[1] - (confidence >= 0.9).mean()) < 1e-6
