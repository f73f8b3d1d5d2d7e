"""Reading whole numbers: every candidate digit of a batch of fields through the digit
model at once, then, per field, the path through the candidates with the highest product
of the digits' probabilities (of the lengths allowed)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from batchdigits.imaging.components import label_pieces
from batchdigits.imaging.preprocess import compiled_model_inputs, pad_batch
from batchdigits.numbers.field import INK, field_ink
from batchdigits.numbers.labelling import SURE_PATH, aligned, most_probable
from batchdigits.numbers.second import DigitCheck, second_opinion
from batchdigits.numbers.segment import candidates, crop, height_of, odds, pieces, primitives
from batchdigits.numbers.sequence import collapsed, digit_runs, field_inputs, path_of_length
from batchdigits.runtime.lazy import tf

#: Lengths read when the user does not give one.
ANY_LENGTH = (1, 32)
#: Log-odds for each digit read: without it, the product of probabilities favours fewer
#: digits (two digits joined into one candidate).
DIGIT_BONUS = 0.3
#: A candidate is scaled as if it were at least this share of the number's height: a
#: narrow part of a digit stays narrow (it is not blown up into a digit of its own).
HEIGHT_SHARE = 1.0


@dataclass(frozen=True)
class NumberReading:
    """One field's reading: its digits (``""``: no digit found), the probability that
    the whole string is right, and each digit's own."""

    digits: str
    confidence: float
    digit_confidences: tuple[float, ...]

    @property
    def found(self) -> bool:
        return bool(self.digits)


NOTHING = NumberReading("", 0.0, ())


def read_fields(inference, grays: Sequence[np.ndarray], lengths=ANY_LENGTH) -> list[NumberReading]:
    """Gray working images (one number each) -> their readings, with ``inference``'s
    network; ``lengths`` ``(fewest, most)`` digits."""
    if not grays:
        return []
    return read_batch(inference, *pad_batch(grays), lengths)


def read_cleaned(
    reader, inputs, has_ink, lengths=ANY_LENGTH, logits=None, check: DigitCheck | None = None
) -> tuple[list[NumberReading], np.ndarray]:
    """The shipped reader of numbers, after the fields' cleaning (:func:`sequence_inputs_fn`):
    the sequence model's inputs ``(B, HEIGHT, WIDTH, 1)`` (ink 0..1) and which fields hold
    ink -> readings by the sequence model (``reader``: the model and its confidence power)
    and the inputs (numpy). Where the best reading's length is not one ``lengths`` allows,
    the most probable reading of an allowed length takes its place (:func:`_path`); with
    ``check``, the digit model gives its second opinion on the digits that stand alone
    (:mod:`~batchdigits.numbers.second`). ``logits``: the model compiled
    (``model.inference.make_infer``), else it is called layer by layer."""
    model, power = reader
    t = tf()
    logits = logits or functools.partial(model, training=False)
    probabilities = t.nn.softmax(logits(inputs)).numpy()
    inputs = np.asarray(inputs)
    found = [
        _path(row, lengths) if ink else (None, True)
        for row, ink in zip(probabilities, np.asarray(has_ink), strict=True)
    ]
    paths = [path for path, _ in found]
    first = [
        None if p is None else collapsed(p, row, power)
        for p, row in zip(paths, probabilities, strict=True)
    ]
    checked = (paths, probabilities, np.full(len(paths), np.inf), np.ones(len(paths)))
    if check is not None:
        confidences = [None if f is None else f[1] for f in first]
        checked = second_opinion(probabilities, paths, confidences, inputs[..., 0], check, power)
    out = []
    for (_, allowed), before, *after in zip(found, first, *checked, strict=True):
        out.append(_reading(allowed, before, *after, power))
    return out, inputs


def _reading(allowed: bool, first, path, probabilities, ceiling, factor, power: float):
    """One field's reading: its ``path`` over ``probabilities`` (the digit model's second
    opinion's), its confidence at most ``ceiling``, times ``factor``; 0 where no path has
    an allowed length. ``first``: the path's reading before the second opinion, which
    stands where no digit was read again (``ceiling`` infinite)."""
    if path is None:
        return NOTHING
    digits, confidence, each = first if np.isinf(ceiling) else collapsed(path, probabilities, power)
    confidence = min(confidence, ceiling) * factor
    return NumberReading(digits, float(confidence) if allowed else 0.0, each)


def _path(probabilities, lengths) -> tuple[list[int] | None, bool]:
    """The path read (a symbol per step; ``None`` when the best path reads no digit) and
    whether its length is allowed. Where the best path's length is allowed, it is the
    best path if that is sure (over :data:`~batchdigits.numbers.labelling.SURE_PATH`),
    else the most probable path of the most probable reading of an allowed length
    (:mod:`~batchdigits.numbers.labelling`). Else it is the best path of an allowed
    length (:func:`~batchdigits.numbers.sequence.path_of_length`), and where there is
    none, the best path, read with confidence 0."""
    path = probabilities.argmax(1).tolist()
    if not any(path):
        return None, True
    runs = digit_runs(path)
    if lengths[0] <= len(runs) <= lengths[1]:
        if np.prod(probabilities.max(1), dtype=np.float64) <= SURE_PATH:
            reading = most_probable(probabilities, lengths)
            if reading is not None and reading != tuple(c for c, _ in runs):
                path = aligned(probabilities, reading) or path
        return path, True
    of_length = path_of_length(probabilities, lengths)
    return (path, False) if of_length is None else (of_length, True)


def read_batch(inference, gray, sizes, lengths=ANY_LENGTH) -> list[NumberReading]:
    """The segmentation reader (measured against the sequence reader, not shipped): a
    padded batch of gray working images ``(B, H, W)`` with their ``sizes (B, 2)`` ->
    their readings (see :func:`read_fields`)."""
    ink, has_ink = _clean()(gray, sizes)
    labels = label_pieces(ink >= INK).numpy().astype(np.int64)
    ink, has_ink = ink.numpy(), has_ink.numpy()
    fields = []
    for k in range(int(ink.shape[0])):
        prims = primitives(pieces(labels[k], ink[k]), ink[k]) if has_ink[k] else []
        fields.append((prims, candidates(prims)))
    crops = [crop(prims[i:j], ink[k]) for k, (prims, cands) in enumerate(fields) for i, j in cands]
    heights = [height_of(prims) for prims, cands in fields for _ in cands]
    probabilities = _probabilities(inference, crops, heights)
    out, at = [], 0
    for prims, cands in fields:
        scores = probabilities[at : at + len(cands)]
        at += len(cands)
        if not cands:
            out.append(NOTHING)
            continue
        height = height_of(prims)
        against = np.array([odds(prims[i:j], height) for i, j in cands])
        out.append(best_path(len(prims), cands, scores, lengths, against))
    return out


def _probabilities(inference, crops: list[np.ndarray], heights: list[int]) -> np.ndarray:
    """The digit model's probabilities for each candidate's ink ``(N, 10)``: the crops
    normalised as single digits are (steps 5-6), ``batch_size`` at a time, each call
    with the full batch shape."""
    size = inference.options.batch_size
    out = []
    for start in range(0, len(crops), size):
        part = crops[start : start + size]
        h = max(c.shape[0] for c in part)
        w = max(c.shape[1] for c in part)
        batch = np.zeros((size, h, w), np.float32)
        for n, c in enumerate(part):
            batch[n, : c.shape[0], : c.shape[1]] = c
        least = np.zeros(size, np.float32)
        least[: len(part)] = np.asarray(heights[start : start + size], np.float32) * HEIGHT_SHARE
        inputs = compiled_model_inputs()(tf().constant(batch), tf().constant(least))
        out.append(inference.infer(inputs).numpy()[: len(part)])
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def best_path(count: int, cands, probabilities, lengths, against=None) -> NumberReading:
    """The most probable reading of ``count`` primitives through the candidate digits
    ``cands`` (``(first, stop)``, with their ``probabilities (N, 10)``), with between
    ``lengths[0]`` and ``lengths[1]`` digits; none possible: no digit found."""
    fewest, most = lengths
    most = min(most, count)
    log_p = np.log(np.maximum(probabilities.max(1), 1e-12)) + DIGIT_BONUS
    if against is not None:
        log_p = log_p - against
    # best[j][n]: the best (score, path) covering primitives [0, j) with n digits
    best: list[dict[int, tuple[float, tuple[int, ...]]]] = [{} for _ in range(count + 1)]
    best[0][0] = (0.0, ())
    by_start: dict[int, list[int]] = {}
    for c, (i, _) in enumerate(cands):
        by_start.setdefault(i, []).append(c)
    for i in range(count):
        for n, (score, path) in best[i].items():
            if n >= most:
                continue
            for c in by_start.get(i, []):
                j = cands[c][1]
                new = (score + float(log_p[c]), (*path, c))
                if new[0] > best[j].get(n + 1, (-math.inf,))[0]:
                    best[j][n + 1] = new
    allowed = [v for n, v in best[count].items() if fewest <= n <= most]
    if not allowed:
        return NOTHING
    _, path = max(allowed)
    chosen = probabilities[list(path)]
    digits = "".join(str(int(d)) for d in chosen.argmax(1))
    each = chosen.max(1).astype(np.float64)
    return NumberReading(digits, float(np.prod(each)), tuple(float(p) for p in each))


@functools.lru_cache(maxsize=1)
def sequence_inputs_fn():
    """:func:`~batchdigits.numbers.sequence.field_inputs` compiled once per process, for
    padded batches of any size: prediction and training make their inputs with it."""
    t = tf()
    specs = [t.TensorSpec([None, None, None], t.float32), t.TensorSpec([None, 2], t.int32)]
    return t.function(field_inputs, input_signature=specs, autograph=False)


@functools.lru_cache(maxsize=1)
def _clean():
    t = tf()
    specs = [t.TensorSpec([None, None, None], t.float32), t.TensorSpec([None, 2], t.int32)]
    return t.function(field_ink, input_signature=specs, autograph=False)
