"""Measuring ``--numbers`` rows against labels that are strings of digits: exact-match
accuracy, character error rate, calibration of the whole string's confidence, the review
flag's coverage and accuracy, and a table per length."""

from __future__ import annotations

from typing import Any

import numpy as np

from batchdigits.model.calibrate import (
    ECE_BINS,
    TRADEOFF_THRESHOLDS,
    expected_calibration_error,
    tradeoff,
)
from batchdigits.rows import Row


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def number_metrics(rows: list[Row], truth: list[str], threshold: float) -> dict[str, Any]:
    """The figures of ``--numbers`` rows (a row without a prediction reads as ``""``)."""
    read = [str(r.prediction) if r.prediction is not None else "" for r in rows]
    exact = np.array([a == b for a, b in zip(read, truth, strict=True)], bool)
    has = np.array([r.prediction is not None for r in rows], bool)
    confidence = np.array([r.confidence if r.prediction is not None else 0.0 for r in rows])
    kept = np.array([r.prediction is not None and not r.needs_review for r in rows], bool)
    errors = sum(edit_distance(a, b) for a, b in zip(read, truth, strict=True))
    lengths = np.array([len(t) for t in truth])
    return {
        "images": int(len(rows)),
        "accuracy": float(exact.mean()) if len(rows) else 0.0,
        "character_error_rate": errors / max(int(lengths.sum()), 1),
        "errors": int((~has).sum()),
        "ece": expected_calibration_error(confidence[has], exact[has]) if has.any() else None,
        "ece_bins": ECE_BINS,
        "review_threshold": threshold,
        "review_coverage": float(kept.mean()) if len(rows) else 0.0,
        "review_accuracy": float(exact[kept].mean()) if kept.any() else 1.0,
        "review_tradeoff": tradeoff(confidence, exact, sorted({*TRADEOFF_THRESHOLDS, threshold})),
        "per_length": {
            str(n): {
                "images": int((lengths == n).sum()),
                "accuracy": float(exact[lengths == n].mean()),
            }
            for n in sorted(set(lengths.tolist()))
        },
    }
