"""The digit model's second opinion on the digits of a reading that stand alone.

A digit stands alone when one run of inked columns of the reader's input holds its peak
step and no other digit's: a number written apart, each digit whole, as in MNIST. The
digit model reads such a digit again, its columns' ink normalised as a single digit is
(:func:`~batchdigits.imaging.preprocess.model_inputs`):

- where the reader doubts the digit (its probability at its peak step is under
  :data:`DOUBTED_BELOW`), it becomes the digit most probable under both models (the
  product of their probabilities, the reader's to the power :data:`READER_WEIGHT`), and
  its confidence the product's. The reading's confidence is the new path's under those
  probabilities, but never more than the reader's own for its first reading;
- where the reading would pass review, its confidence is multiplied by the digit model's
  probability of each of its other digits the reader gives less than
  :data:`CHECKED_BELOW`, to the card's power: a digit the two models disagree on sends
  the row to review.

A reading's confidence is never raised. Digits that touch or overlap a neighbour share a run of
columns and are the reader's alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from batchdigits.imaging.preprocess import compiled_model_inputs, model_inputs
from batchdigits.numbers.sequence import STEPS, WIDTH, digit_runs
from batchdigits.runtime.lazy import tf

#: A digit the reader gives less than this probability is read again and may change.
DOUBTED_BELOW = 0.99
#: In a reading that would pass review, a digit under this is checked by the digit model.
CHECKED_BELOW = 0.999
#: The reader's probabilities count to this power in the product with the digit model's:
#: on the digits that stand alone, the digit model is the surer of the two.
READER_WEIGHT = 0.5
_INK = 0.1  # a column of the reader's input with a pixel this dark holds ink
_SLACK = 2  # a digit's peak step may fall this many columns outside its run of ink
_COLUMNS = WIDTH // STEPS  # columns of the input per step of the sequence
#: Crops per call of the digit model: every call has this shape, so a digit's
#: probabilities do not depend on how many others its batch asked about.
CROPS_PER_CALL = 64


@dataclass(frozen=True)
class DigitCheck:
    """The digit model as a second opinion: ``read`` turns ink crops ``(N, HEIGHT,
    WIDTH)`` into its probabilities ``(N, 10)``; ``review_below`` is the reader's review
    threshold."""

    read: Callable[[np.ndarray], np.ndarray]
    review_below: float


def column_runs(ink: np.ndarray) -> list[list[tuple[int, int]]]:
    """Per field of ``ink (B, HEIGHT, WIDTH)``: the runs ``(start, stop)`` of columns with
    ink, left to right."""
    cols = np.pad((ink >= _INK).any(1), ((0, 0), (1, 1))).astype(np.int8)
    change = np.diff(cols, axis=1)
    return [
        list(zip(np.flatnonzero(c == 1).tolist(), np.flatnonzero(c == -1).tolist(), strict=True))
        for c in change
    ]


def _holders(peaks: list[int], columns: list[tuple[int, int]]) -> list[int]:
    """For each digit's peak step: the index of the run of columns that holds it and no
    other digit, or -1."""
    held = []
    for t in peaks:
        centre = t * _COLUMNS + (_COLUMNS - 1) / 2.0
        inside = [j for j, (a, b) in enumerate(columns) if a - _SLACK <= centre < b + _SLACK]
        held.append(inside[0] if len(inside) == 1 else -1)
    return [j if j >= 0 and held.count(j) == 1 else -1 for j in held]


def second_opinion(probabilities, paths, first, ink, check: DigitCheck, power: float):
    """The reader's ``paths`` (``None``: nothing read) over its ``probabilities (B,
    STEPS, 11)``, with their confidences ``first``
    (:func:`~batchdigits.numbers.sequence.collapsed`'s) and the reader's input ``ink (B,
    HEIGHT, WIDTH)`` -> ``(paths, probabilities, ceilings, factors)``: the paths with
    their doubted digits read again, the probabilities with both models' at those
    digits' steps, and per reading ``(B,)`` the most its confidence may be (the reader's
    own, where a digit was read again; else infinite) and the factor it is then
    multiplied by (see the module). New lists and arrays: the inputs stay."""
    asked = _asked(probabilities, paths, column_runs(ink), first, check.review_below)
    paths = [None if p is None else list(p) for p in paths]
    probabilities = np.array(probabilities, np.float64)
    ceilings, factors = np.full(len(paths), np.inf), np.ones(len(paths))
    if not asked:
        return paths, probabilities, ceilings, factors
    crops = np.zeros((len(asked), *ink.shape[1:]), np.float32)
    for i, (r, *_, (a, b)) in enumerate(asked):
        crops[i, :, a:b] = ink[r, :, a:b]
    for (r, steps, c, peak, doubted, _), p in zip(asked, check.read(crops), strict=True):
        if not doubted:
            factors[r] *= float(p[c - 1]) ** power
        elif _retake(paths[r], probabilities[r], steps, peak, np.asarray(p, np.float64)):
            ceilings[r] = first[r]
    return paths, probabilities, ceilings, factors


def _asked(probabilities, paths, columns, confidences, review_below: float) -> list:
    """The digits the digit model is asked about (``confidences``: the readings' own):
    ``(row, the digit's steps, its symbol, its peak step, doubted, its run of
    columns)``."""
    asked = []
    for r, path in enumerate(paths):
        if path is None:
            continue
        runs = digit_runs(path)
        peaks = [max(steps, key=lambda t, c=c: probabilities[r, t, c]) for c, steps in runs]
        confident = confidences[r] >= review_below
        for (c, steps), peak, j in zip(runs, peaks, _holders(peaks, columns[r]), strict=True):
            p = probabilities[r, peak, c]
            doubted = bool(p < DOUBTED_BELOW)
            if j >= 0 and (doubted or (confident and p < CHECKED_BELOW)):
                asked.append((r, steps, c, peak, doubted, columns[r][j]))
    return asked


def _retake(path: list[int], probabilities, steps: list[int], peak: int, digit) -> bool:
    """The digit at ``steps`` of ``path`` becomes the one most probable under both
    models at its ``peak`` step (the product of the reader's ten digit probabilities
    there, made to sum to 1, to the power :data:`READER_WEIGHT`, and the digit model's),
    and at each of its steps the reader's digit probabilities (``probabilities (STEPS,
    11)``, changed in place) become that product, made to sum to what the reader gave
    the digits. Unless a neighbouring step already holds the new digit (the two would
    merge into one): then nothing changes. Returns whether it changed them."""

    def both(t):
        reader = probabilities[t, 1:] / max(probabilities[t, 1:].sum(), 1e-300)
        q = reader**READER_WEIGHT * digit
        return q / max(q.sum(), 1e-300)

    best = int(np.argmax(both(peak))) + 1
    before = path[steps[0] - 1] if steps[0] else 0
    after = path[steps[-1] + 1] if steps[-1] + 1 < len(path) else 0
    if best in (before, after) and best != path[steps[0]]:
        return False
    for t in steps:
        probabilities[t, 1:] = (1.0 - probabilities[t, 0]) * both(t)
        path[t] = best
    return True


def digit_probabilities(model, compiled: bool, crops: np.ndarray) -> np.ndarray:
    """The digit ``model``'s probabilities ``(N, 10)`` for ink crops ``(N, HEIGHT,
    WIDTH)``, each normalised as a single digit is (steps 5-6: its ink's box to 20 px,
    centred by its mass), :data:`CROPS_PER_CALL` at a time. ``compiled``: the inputs
    are made by a compiled function (the same bits as op by op)."""
    t = tf()
    out = []
    for start in range(0, len(crops), CROPS_PER_CALL):
        part = crops[start : start + CROPS_PER_CALL]
        batch = np.zeros((CROPS_PER_CALL, *crops.shape[1:]), np.float32)
        batch[: len(part)] = part
        batch = t.constant(batch)
        if compiled:  # no least side: a side of at least 0 px
            inputs = compiled_model_inputs()(batch, t.zeros(CROPS_PER_CALL))
        else:
            inputs = model_inputs(batch)
        out.append(np.asarray(model(inputs))[: len(part)])
    return np.concatenate(out)
