"""The most probable reading of the sequence model's steps, summed over its paths.

The best path (the most probable symbol at each step) is one alignment of one reading.
A reading has many: over two steps, a 7 then a blank, a blank then a 7, and a 7 twice
all read ``7``. Where the best path is not sure (its probability at most
:data:`SURE_PATH`), another reading can be more probable over all its paths together;
:func:`most_probable` finds it with a beam search over readings (prefix search), and
:func:`aligned` gives its most probable path, which the rest of the reader works on (its
confidence, the second opinion). Where the best path's probability is over
:data:`SURE_PATH`, its reading is the most probable one: no other can hold more than the
rest.
"""

from __future__ import annotations

import numpy as np

#: A best path this probable reads the most probable digits: no search.
SURE_PATH = 0.5
#: A digit under this probability at a step does not start or extend a reading there.
_FLOOR = 1e-3
#: Readings less probable than this share of the best one so far are dropped...
_KEPT = 1e-3
#: ...and at most this many are followed.
_BEAM = 8


def most_probable(probabilities: np.ndarray, lengths: tuple[int, int]) -> tuple[int, ...] | None:
    """One row's ``(STEPS, 11)`` probabilities -> the most probable reading (its symbols,
    1-10) with ``lengths`` ``(fewest, most)`` digits, each reading's probability summed
    over the paths that read it; ``None`` when no reading the search followed has such a
    length."""
    fewest, most = lengths
    p = np.asarray(probabilities, np.float64)
    steps, digits = np.nonzero(p[:, 1:] >= _FLOOR)
    at = np.searchsorted(steps, np.arange(len(p) + 1)).tolist()
    digits = (digits + 1).tolist()
    beams: dict[tuple[int, ...], list[float]] = {(): [1.0, 0.0]}
    for t, row in enumerate(p.tolist()):
        if at[t] == at[t + 1]:  # only the blank: every reading ends in it, none changes rank
            beams = {k: [(v[0] + v[1]) * row[0], 0.0] for k, v in beams.items()}
        else:
            beams = _kept(_extended(beams, row, digits[at[t] : at[t + 1]], most))
    allowed = [(sum(v), k) for k, v in beams.items() if fewest <= len(k) <= most]
    if not allowed:
        return None
    return max(allowed, key=lambda item: item[0])[1]


def _extended(beams: dict, row: list[float], digits: list[int], most: int) -> dict:
    """Every reading of ``beams`` (``reading -> [ending in a blank, ending in its last
    digit]``, probabilities) one step on, with that step's probabilities ``row`` (11) of
    which ``digits`` are at least :data:`_FLOOR`."""
    out: dict[tuple[int, ...], list[float]] = {}
    for reading, (blank, digit) in beams.items():
        same = out.setdefault(reading, [0.0, 0.0])
        same[0] += (blank + digit) * row[0]
        last = reading[-1] if reading else 0
        for c in digits:
            if c == last:
                same[1] += digit * row[c]  # the digit goes on: the same reading
            if len(reading) < most and (c != last or blank):
                # a new digit (the same one again only after a blank)
                grown = out.setdefault((*reading, c), [0.0, 0.0])
                grown[1] += (blank if c == last else blank + digit) * row[c]
    return out


def _kept(beams: dict) -> dict:
    """The :data:`_BEAM` most probable readings of at least :data:`_KEPT` of the best's
    probability, scaled so the best's is 1 (a long field does not underflow)."""
    ranked = sorted(((v[0] + v[1], k, v) for k, v in beams.items()), key=lambda r: -r[0])
    top = ranked[0][0]
    if top <= 0.0:
        return {k: v for _, k, v in ranked[:_BEAM]}
    return {k: [v[0] / top, v[1] / top] for q, k, v in ranked[:_BEAM] if q >= _KEPT * top}


def aligned(probabilities: np.ndarray, reading: tuple[int, ...]) -> list[int] | None:
    """The most probable path (a symbol per step) that reads ``reading``: a Viterbi
    search over its symbols with a blank before, between and after them (a blank may be
    skipped between two different digits). ``None`` when the steps are too few."""
    states = [0]
    for c in reading:
        states += [c, 0]
    states = np.asarray(states)
    logp = np.log(np.maximum(np.asarray(probabilities, np.float64), 1e-300))[:, states]
    count = len(states)
    skip = np.zeros(count, bool)  # a state that may follow the one two before it
    skip[2:] = (states[2:] != 0) & (states[2:] != states[:-2])
    score = np.full(count, -np.inf)
    score[:2] = logp[0, :2]
    back = np.zeros((len(logp), count), np.int64)
    for t in range(1, len(logp)):
        options = np.stack([score, _shifted(score, 1), np.where(skip, _shifted(score, 2), -np.inf)])
        move = options.argmax(0)
        back[t] = np.arange(count) - move
        score = options[move, np.arange(count)] + logp[t]
    end = count - 1 if count == 1 or score[-1] >= score[-2] else count - 2
    if not np.isfinite(score[end]):
        return None
    path = []
    for t in range(len(logp) - 1, -1, -1):
        path.append(int(states[end]))
        end = back[t, end]
    return path[::-1]


def _shifted(score: np.ndarray, by: int) -> np.ndarray:
    """``score`` moved ``by`` states on (the first ``by`` impossible)."""
    return np.concatenate([np.full(by, -np.inf), score[:-by]])
