"""Honest confidences: temperature scaling, expected calibration error, review threshold."""

from __future__ import annotations

import numpy as np

ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(p, 1e-12))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood (golden-section search
    on log T in [log 0.05, log 20]; NLL is unimodal in T)."""
    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(logits, labels, np.exp(a)), nll(logits, labels, np.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(logits, labels, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(logits, labels, np.exp(b))
    return float(np.exp((lo + hi) / 2))


def expected_calibration_error(
    confidences: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE with ``bins`` equal-width confidence bins: sum over bins of
    (share of samples) x |accuracy - mean confidence|."""
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidences[in_bin].mean())
    return float(ece)


def choose_review_threshold(
    confidences: np.ndarray, correct: np.ndarray, target_accuracy: float = 0.9995
) -> float:
    """The lowest confidence threshold at which the rows kept (confidence >= threshold)
    are still at least ``target_accuracy`` correct: the most coverage for that accuracy."""
    order = np.argsort(-np.asarray(confidences, dtype=np.float64), kind="stable")
    conf = np.asarray(confidences, dtype=np.float64)[order]
    ok = np.asarray(correct, dtype=np.float64)[order]
    accuracy = np.cumsum(ok) / np.arange(1, len(ok) + 1)
    # Only cut between different confidences: equal confidences are kept or flagged together.
    last_of_run = np.append(conf[1:] < conf[:-1], True)
    good = np.nonzero((accuracy >= target_accuracy) & last_of_run)[0]
    if len(good) == 0:
        return float(np.nextafter(conf[0], np.inf)) if len(conf) else 1.0
    return float(conf[good[-1]])


def coverage_and_accuracy(
    confidences: np.ndarray, correct: np.ndarray, threshold: float
) -> tuple[float, float]:
    """Share of rows not flagged (confidence >= threshold, one for all rows or one per
    row), and their accuracy."""
    kept = np.asarray(confidences) >= threshold
    coverage = float(kept.mean()) if kept.size else 0.0
    accuracy = float(np.asarray(correct)[kept].mean()) if kept.any() else 1.0
    return coverage, accuracy


#: Thresholds at which the model card reports the coverage/accuracy trade-off.
TRADEOFF_THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)


def tradeoff(
    confidences: np.ndarray, correct: np.ndarray, thresholds=TRADEOFF_THRESHOLDS
) -> list[dict[str, float]]:
    """Coverage and accuracy of the rows kept, at each threshold: what moving
    ``--review-threshold`` buys and costs."""
    rows = []
    for threshold in thresholds:
        coverage, accuracy = coverage_and_accuracy(confidences, correct, threshold)
        rows.append(
            {
                "threshold": float(threshold),
                "coverage": round(coverage, 6),
                "accuracy": round(accuracy, 6),
            }
        )
    return rows
