"""Evaluating a model on a labelled folder: the same pipeline as ``predict``, then metrics.

Labels come from sub-folders named ``0`` ... ``9`` (the layout Keras'
``image_dataset_from_directory`` uses) or from a CSV with columns ``path,label``.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from batchdigits.atomic import write_json_atomic
from batchdigits.errors import InputNotFoundError, write_error
from batchdigits.evaluation.labels import digit_labels, folder_labels, number_labels, read_labels
from batchdigits.evaluation.numbers import number_metrics
from batchdigits.imaging.files import find_images
from batchdigits.model.calibrate import (
    ECE_BINS,
    TRADEOFF_THRESHOLDS,
    expected_calibration_error,
    tradeoff,
)
from batchdigits.model.inference import Inference
from batchdigits.options import PredictOptions
from batchdigits.rows import Row
from batchdigits.writers import AtomicCsvWriter


@dataclass
class Evaluation:
    """Per-file results and the metrics computed from them."""

    rows: list[Row]
    labels: list[int] | list[str]
    threshold: float
    metrics: dict[str, Any] = field(default_factory=dict)


def evaluate_folder(
    input_dir: str | os.PathLike,
    labels_csv: str | os.PathLike | None = None,
    options: PredictOptions | None = None,
    output: str | os.PathLike | None = None,
) -> Evaluation:
    """Predict every labelled image under ``input_dir`` (as ``predict`` would, with
    ``options``) and measure the model; ``output`` also gets the rows with a label column.
    Misclassified rows keep the image the model saw (``model_input``), for the report."""
    options = options or PredictOptions()
    listing = find_images(input_dir)
    if labels_csv is not None:
        given = read_labels(labels_csv, options.numbers)
    else:
        given = folder_labels(listing)
    # review's "x" (not a digit) rows have no digit to score
    labels = number_labels(given) if options.numbers else digit_labels(given)
    listing.paths = [p for p in listing.paths if p in labels]
    if not listing.paths:
        how = f"in {labels_csv}" if labels_csv else "(no sub-folders named 0-9 with images)"
        raise InputNotFoundError(f"no labelled images under {input_dir} {how}")
    inference = Inference.open(options)
    rows: list[Row] = []
    writing = (
        AtomicCsvWriter(output, extra=("label",), numbers=options.numbers)
        if output is not None
        else nullcontext()
    )
    with writing as writer:  # published only when complete, as for predict
        for batch in inference.rows(listing, keep_inputs=True):
            rows.extend(_without_input_if_right(row, labels[row.path]) for row in batch)
            if writer is not None:
                writer.write(batch, extra=[[str(labels[r.path])] for r in batch])
    truth = [labels[r.path] for r in rows]
    result = Evaluation(rows=rows, labels=truth, threshold=inference.threshold)
    measure = number_metrics if options.numbers else compute_metrics
    result.metrics = measure(rows, truth, inference.threshold)
    return result


def _without_input_if_right(row: Row, label: int) -> Row:
    if row.prediction is None or row.prediction == label:
        return replace(row, model_input=None)
    return row


def compute_metrics(rows: list[Row], truth: list[int], threshold: float) -> dict[str, Any]:
    """Accuracy (a file without a prediction counts as wrong), per-digit precision and
    recall, ECE, coverage and accuracy at the review threshold, the confusion matrix."""
    predicted = np.array([-1 if r.prediction is None else r.prediction for r in rows])
    y = np.array(truth)
    has = predicted >= 0
    confidence = np.array([r.confidence if r.prediction is not None else 0.0 for r in rows])
    correct = predicted == y
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (y[has], predicted[has]), 1)
    per_digit = {}
    for d in range(10):
        tp = int(confusion[d, d])
        n_pred, n_true = int(confusion[:, d].sum()), int((y == d).sum())
        per_digit[str(d)] = {
            "precision": tp / n_pred if n_pred else None,
            "recall": tp / n_true if n_true else None,
            "support": n_true,
        }
    # the rows' own flags: a row a second opinion was asked about has its own rule
    kept = np.array([r.prediction is not None and not r.needs_review for r in rows], bool)
    coverage = float(kept.mean()) if kept.size else 0.0
    return {
        "images": int(len(rows)),
        "accuracy": float(correct.mean()),
        "accuracy_of_predicted": float(correct[has].mean()) if has.any() else None,
        "errors": int((~has).sum()),
        "ece": expected_calibration_error(confidence[has], correct[has]) if has.any() else None,
        "ece_bins": ECE_BINS,
        "review_threshold": threshold,
        "review_coverage": coverage,
        "review_accuracy": float(correct[kept].mean()) if kept.any() else 1.0,
        "review_tradeoff": tradeoff(confidence, correct, sorted({*TRADEOFF_THRESHOLDS, threshold})),
        "per_digit": per_digit,
        "confusion_matrix": confusion.tolist(),
    }


def write_report(result: Evaluation, folder: str | os.PathLike) -> list[Path]:
    """metrics.json and three PNGs: confusion matrix, reliability diagram, and a grid of
    the misclassified images (as the model saw them) with true and predicted labels."""
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(out, exc) from exc
    from batchdigits.evaluation import plots

    written = [out / "metrics.json"]
    write_json_atomic(written[0], result.metrics)
    if "confusion_matrix" not in result.metrics:  # numbers: the figures alone
        return written
    written.append(plots.confusion_matrix(result.metrics["confusion_matrix"], out))
    written.append(plots.reliability_diagram(result.rows, result.labels, out))
    written.append(plots.misclassified_grid(result.rows, result.labels, out))
    return written
