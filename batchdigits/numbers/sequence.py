"""The sequence reader of numbers: a convolutional trunk of the digit model's family read
left to right by a CTC head (blank and the ten digits), from the field's clean ink
(:func:`~batchdigits.numbers.field.field_ink`) scaled to :data:`HEIGHT` rows."""

from __future__ import annotations

import numpy as np

from batchdigits.imaging.ink import first_last
from batchdigits.numbers.field import field_ink
from batchdigits.runtime.lazy import keras, tf

HEIGHT = 32  # rows the model sees
WIDTH = 192  # columns: a number up to 6x as long as it is high keeps its aspect
STEPS = WIDTH // 4  # the sequence the head reads
_PAD = 0.15  # of the ink's height, kept around the ink box
_INK = 0.25


def sequence_inputs(x, h, w):
    """Clean ink ``x (B, H, W)`` 0..1 -> ``(B, HEIGHT, WIDTH, 1)``: each image's ink box
    (with a margin) scaled to :data:`HEIGHT` rows, aspect kept, left-aligned; a number
    longer than :data:`WIDTH` columns would need is squeezed to fit. Sampled in each
    image's own pixels (bilinear, nothing outside the image), so a field reads the same
    bits however far its batch is padded."""
    t = tf()
    ink = x >= _INK
    y0, y1 = first_last(t.reduce_any(ink, 2))
    x0, x1 = first_last(t.reduce_any(ink, 1))
    y0, y1, x0, x1 = (t.cast(v, t.float32) for v in (y0, y1, x0, x1))
    pad = _PAD * t.maximum(y1 - y0, 1.0)
    top, bottom = y0 - pad, y1 + pad
    left = x0 - pad
    span = t.maximum((bottom - top) * WIDTH / HEIGHT, x1 + pad - left)
    rows = top[:, None] + t.range(HEIGHT, dtype=t.float32)[None, :] * (
        (bottom - top)[:, None] / (HEIGHT - 1)
    )
    cols = left[:, None] + t.range(WIDTH, dtype=t.float32)[None, :] * (span[:, None] / (WIDTH - 1))
    out = _sampled(_sampled(x, rows, h, 1), cols, w, 2)
    return t.clip_by_value(out, 0.0, 1.0)[..., None]


def _sampled(x, pos, extent, axis: int):
    """``x`` sampled at ``pos (B, S)`` pixels along ``axis`` (1 or 2), bilinear between
    the two neighbours; a sample outside ``[0, extent - 1]`` reads 0. Gathered, not a
    product with :mod:`~batchdigits.imaging.resample`'s weight matrices: a product sums
    over the padded length, and its kernels' order of summing shifts with that length."""
    t = tf()
    n = t.shape(x)[axis]
    low = t.floor(pos)
    frac = pos - low
    low = t.cast(low, t.int32)
    a = t.gather(x, t.clip_by_value(low, 0, n - 1), axis=axis, batch_dims=1)
    b = t.gather(x, t.clip_by_value(low + 1, 0, n - 1), axis=axis, batch_dims=1)
    inside = t.cast((pos >= 0.0) & (pos <= t.cast(extent - 1, t.float32)[:, None]), t.float32)
    if axis == 1:
        return (a * (1.0 - frac)[..., None] + b * frac[..., None]) * inside[..., None]
    return (a * (1.0 - frac)[:, None, :] + b * frac[:, None, :]) * inside[:, None, :]


def field_inputs(gray, sizes):
    """A padded batch of gray working images with their ``sizes (B, 2)`` -> ``(the
    sequence model's inputs (B, HEIGHT, WIDTH, 1), has_ink (B,))``: the field cleaned
    (:func:`~batchdigits.numbers.field.field_ink`), then scaled. Training and prediction
    both make their inputs here."""
    ink, has_ink = field_ink(gray, sizes)
    return sequence_inputs(ink, sizes[:, 0], sizes[:, 1]), has_ink


def build_sequence_model() -> keras.Model:
    """``(HEIGHT, WIDTH, 1)`` ink -> logits ``(STEPS, 11)`` (0: blank, 1 + d: digit d).
    The first convolution has a stride of 2: at full resolution a convolution costs the
    most and sees the least (about 1,000 images/s on 2 cores, measured)."""
    k = keras()
    inputs = k.Input((HEIGHT, WIDTH, 1), name="ink")
    x = k.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inputs)
    x = k.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = k.layers.MaxPooling2D(2)(x)
    x = k.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = k.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = k.layers.MaxPooling2D((2, 1))(x)
    x = k.layers.Conv2D(96, 3, padding="same", activation="relu")(x)
    x = k.layers.MaxPooling2D((HEIGHT // 8, 1))(x)
    # (1, STEPS, 96) -> (STEPS, 96): the columns become the sequence
    x = k.layers.Reshape((STEPS, 96))(x)
    x = k.layers.Conv1D(128, 3, padding="same", activation="relu")(x)
    x = k.layers.Dropout(0.2)(x)
    x = k.layers.Conv1D(128, 3, padding="same", activation="relu")(x)
    logits = k.layers.Dense(11, name="logits")(x)
    return k.Model(inputs, logits, name="batchdigits_numbers")


def greedy(probabilities: np.ndarray, power: float = 1.0) -> list[tuple[str, float, tuple]]:
    """``(B, STEPS, 11)`` probabilities -> per row the best path's digits (repeats merged,
    blanks dropped), its confidence (the product of its steps' maxima, to ``power``: the
    card's calibration), and each digit's (the largest of its steps)."""
    return [
        collapsed(path.tolist(), row, power)
        for path, row in zip(probabilities.argmax(2), probabilities, strict=True)
    ]


def path_of_length(probabilities: np.ndarray, lengths: tuple[int, int]) -> list[int] | None:
    """One row's ``(STEPS, 11)`` probabilities -> the most probable path (a symbol per
    step) whose digits (repeats merged, blanks dropped) number ``lengths`` ``(fewest,
    most)``; ``None`` when no path has such a length. Where the best path of all has an
    allowed length, it is that one.

    A Viterbi search over (digits so far, the symbol of the step before): a blank keeps
    the count, the previous digit again merges with it, any other digit adds one."""
    steps, symbols = probabilities.shape
    most = min(lengths[1], steps)
    logp = np.log(np.maximum(probabilities.astype(np.float64), 1e-300))
    score = np.full((most + 1, symbols), -np.inf)
    score[0, 0] = 0.0  # nothing read yet, as if after a blank
    back = np.zeros((steps, most + 1, symbols, 2), np.int64)
    for t in range(steps):
        score, back[t] = _step(score, logp[t])
    k, s = _best_end(score, lengths[0])
    if k is None:
        return None
    path = []
    for t in range(steps - 1, -1, -1):
        path.append(s)
        k, s = back[t, k, s]
    return path[::-1]


def _step(score: np.ndarray, logp: np.ndarray):
    """One step of :func:`path_of_length`: the new scores ``(counts, symbols)`` and, per
    new state, the state it came from ``(counts, symbols, 2)``."""
    counts, symbols = score.shape
    k = np.arange(counts)[:, None]
    order = np.argsort(-score, axis=1, kind="stable")
    first, second = order[:, 0], order[:, 1]  # the best previous symbol, and the next best
    # A blank keeps the count, after the best previous symbol.
    new = np.empty_like(score)
    came = np.empty((counts, symbols), np.int64)
    new[:, 0] = score[k[:, 0], first] + logp[0]
    came[:, 0] = first
    # The same digit again is merged: the count stays.
    new[:, 1:] = score[:, 1:] + logp[1:]
    came[:, 1:] = np.arange(1, symbols)
    counts_from = np.repeat(k, symbols, axis=1)
    # A new digit: one more, after the best previous symbol that is not this digit.
    digit = np.arange(1, symbols)[None, :]
    previous = np.where(first[:-1, None] == digit, second[:-1, None], first[:-1, None])
    added = np.take_along_axis(score[:-1], previous, axis=1) + logp[1:]
    better = added > new[1:, 1:]
    new[1:, 1:] = np.where(better, added, new[1:, 1:])
    came[1:, 1:] = np.where(better, previous, came[1:, 1:])
    counts_from[1:, 1:] = np.where(better, k[:-1], counts_from[1:, 1:])
    return new, np.stack([counts_from, came], axis=-1)


def _best_end(score: np.ndarray, fewest: int):
    """The best final state with at least ``fewest`` digits: ``(count, symbol)``, or
    ``(None, None)`` when none is reachable."""
    allowed = score.copy()
    allowed[:fewest] = -np.inf
    k, s = np.unravel_index(int(np.argmax(allowed)), allowed.shape)
    return (None, None) if not np.isfinite(allowed[k, s]) else (int(k), int(s))


def collapsed(path: list[int], probabilities: np.ndarray, power: float):
    """A path of symbols -> ``(digits, confidence, each digit's)`` as :func:`greedy`
    makes them from its own path."""
    chosen = probabilities[np.arange(len(path)), path]
    q = chosen.tolist()
    runs = digit_runs(path)
    digits = "".join(str(c - 1) for c, _ in runs)
    each = tuple(max(q[t] for t in steps) for _, steps in runs)
    return digits, float(np.prod(chosen, dtype=np.float64)) ** power, each


def digit_runs(path: list[int]) -> list[tuple[int, list[int]]]:
    """A path (a symbol per step, 0 the blank) -> its digits as ``(symbol, steps)``: a
    symbol repeated over consecutive steps is one digit."""
    runs: list[tuple[int, list[int]]] = []
    previous = 0
    for t, c in enumerate(path):
        if c and c == previous:
            runs[-1][1].append(t)
        elif c:
            runs.append((c, [t]))
        previous = c
    return runs
