"""The evaluation report's pictures (matplotlib, drawn off-screen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from batchdigits.errors import write_error
from batchdigits.model.calibrate import ECE_BINS
from batchdigits.rows import Row

MAX_MISCLASSIFIED = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    """Write a figure as PNG; a failed write (disk full, ...) is an OutputError."""
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise write_error(path, exc) from exc
    finally:
        plt.close(fig)


def confusion_matrix(matrix: list[list[int]], folder: Path) -> Path:
    plt = _pyplot()
    m = np.array(matrix)
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(np.log1p(m), cmap="Blues")
    for i in range(10):
        for j in range(10):
            if m[i, j]:
                color = "white" if m[i, j] > m.max() / 2 else "black"
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    path = folder / "confusion_matrix.png"
    _save(plt, fig, path)
    return path


def reliability_diagram(rows: list[Row], labels: list[int], folder: Path) -> Path:
    plt = _pyplot()
    pairs = [(r.confidence, r.prediction == y) for r, y in zip(rows, labels, strict=True)]
    pairs = [(c, ok) for c, ok in pairs if c is not None]
    conf = np.array([c for c, _ in pairs])
    ok = np.array([k for _, k in pairs], dtype=float)
    edges = np.linspace(0, 1, ECE_BINS + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, ECE_BINS - 1)
    centres = (edges[:-1] + edges[1:]) / 2
    acc = [ok[which == b].mean() if (which == b).any() else np.nan for b in range(ECE_BINS)]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.bar(centres, acc, width=1 / ECE_BINS, edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram ({ECE_BINS} bins)")
    ax.legend(loc="upper left")
    path = folder / "reliability_diagram.png"
    _save(plt, fig, path)
    return path


def misclassified_grid(rows: list[Row], labels: list[int], folder: Path) -> Path:
    """Up to 100 misclassified images, as the model saw them (each row's ``model_input``,
    normalised 28x28: nothing is read or normalised a second time)."""
    plt = _pyplot()
    wrong = [
        (r, y)
        for r, y in zip(rows, labels, strict=True)
        if r.prediction is not None and r.prediction != y
    ][:MAX_MISCLASSIFIED]
    cols = 10
    n_rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(cols * 1.1, n_rows * 1.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (row, truth) in zip(axes.flat, wrong, strict=False):
        if row.model_input is not None:
            ax.imshow(row.model_input[..., 0], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"true {truth} / {row.prediction}", fontsize=7)
    if not wrong:
        axes.flat[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    path = folder / "misclassified.png"
    _save(plt, fig, path)
    return path
