"""The most probable reading of the sequence model's steps, over all its paths."""

from __future__ import annotations

import itertools

import numpy as np

from batchdigits.numbers import labelling
from batchdigits.numbers.labelling import SURE_PATH, aligned, most_probable
from batchdigits.numbers.reader import _path
from batchdigits.numbers.sequence import collapsed, digit_runs, path_of_length

ANY = (1, 32)


def steps(*rows: dict[int, float]) -> np.ndarray:
    """Probabilities ``(len(rows), 11)`` from ``{symbol: probability}`` per step."""
    p = np.zeros((len(rows), 11))
    for t, row in enumerate(rows):
        for c, q in row.items():
            p[t, c] = q
    return p


def reading_of(path) -> tuple[int, ...]:
    return tuple(c for c, _ in digit_runs(path))


# A sure 0 (symbol 1), then two steps that each hold a 2 (symbol 3) at 0.4. The best path
# reads "0" (1 x 0.6 x 0.6 = 0.36); "02" holds 0.4 x 0.6 + 0.6 x 0.4 + 0.4 x 0.4 = 0.64.
UNSURE = steps({1: 1.0}, {0: 0.6, 3: 0.4}, {0: 0.6, 3: 0.4})


def test_an_unsure_best_path_gives_way_to_the_most_probable_reading():
    assert collapsed(UNSURE.argmax(1).tolist(), UNSURE, 1.0)[0] == "0"
    assert most_probable(UNSURE, ANY) == (1, 3)
    path, allowed = _path(UNSURE, ANY)
    assert allowed and reading_of(path) == (1, 3)
    assert path in ([1, 3, 0], [1, 0, 3], [1, 3, 3])
    # of the paths that read "02", it is one of the two most probable (0.24 each)
    assert np.prod(UNSURE[np.arange(3), path]) == np.float64(0.4 * 0.6)


def test_the_reading_keeps_to_the_lengths_allowed():
    assert most_probable(UNSURE, (1, 1)) == (1,)
    assert most_probable(UNSURE, (3, 3)) is None  # no path reads three digits
    path, allowed = _path(UNSURE, (1, 1))
    assert allowed and reading_of(path) == (1,)
    # a best path of a length not allowed: the best path of an allowed length, as before
    path, allowed = _path(UNSURE, (2, 2))
    assert allowed and path == path_of_length(UNSURE, (2, 2)) and reading_of(path) == (1, 3)


def test_a_sure_best_path_is_read_as_it_is():
    sure = steps({1: 1.0}, {0: 0.8, 3: 0.2}, {0: 0.8, 3: 0.2})  # best path 0.64
    best = sure.argmax(1).tolist()
    assert np.prod(sure.max(1)) > SURE_PATH
    assert _path(sure, ANY) == (best, True)
    # and the search agrees: "0" holds 0.64, "02" 0.36
    assert most_probable(sure, ANY) == (1,)


def test_the_same_digit_twice_needs_a_blank_between():
    p = steps({4: 0.9, 0: 0.1}, {4: 0.5, 0: 0.5}, {4: 0.9, 0: 0.1})
    assert aligned(p, (4, 4)) == [4, 0, 4]
    assert aligned(p[:2], (4, 4)) is None  # two steps cannot hold "33"
    assert aligned(p, (4,)) == [4, 4, 4]


def test_the_aligned_path_is_the_most_probable_that_reads_it():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = np.zeros((6, 11))
        p[:, [0, 2, 5]] = rng.dirichlet(np.ones(3), size=6)  # blank, 1 and 4 only
        paths = np.array(list(itertools.product((0, 2, 5), repeat=6)))
        weights = np.prod(p[np.arange(6), paths], axis=1)
        best: dict[tuple[int, ...], tuple[float, list[int]]] = {}
        for path, q in zip(paths.tolist(), weights.tolist(), strict=True):
            key = reading_of(path)
            if q > best.get(key, (-1.0, None))[0]:
                best[key] = (q, path)
        for reading, (q, _) in best.items():
            if not reading:
                continue
            found = aligned(p, reading)
            assert reading_of(found) == reading
            assert np.isclose(np.prod(p[np.arange(6), found]), q)


def totals(p: np.ndarray, symbols=(0, 2, 5)) -> dict[tuple[int, ...], float]:
    """Every reading of ``p``'s steps with its probability over all paths (by brute force)."""
    paths = np.array(list(itertools.product(symbols, repeat=len(p))))
    weights = np.prod(p[np.arange(len(p)), paths], axis=1)
    total: dict[tuple[int, ...], float] = {}
    for path, q in zip(paths.tolist(), weights.tolist(), strict=True):
        key = reading_of(path)
        total[key] = total.get(key, 0.0) + q
    total.pop((), None)
    return total


def test_the_search_finds_the_reading_that_holds_most(monkeypatch):
    rng = np.random.default_rng(5)
    rows = []
    for _ in range(200):
        p = np.zeros((5, 11))
        p[:, [0, 2, 5]] = rng.dirichlet(np.ones(3) * 0.7, size=5)
        total = totals(p)
        rows.append((p, max(total, key=total.get)))
    # the beam as shipped: it may lose the best reading where many are close
    assert sum(most_probable(p, ANY) == best for p, best in rows) >= 195
    # with nothing pruned the search is exact
    monkeypatch.setattr(labelling, "_BEAM", 10**6)
    monkeypatch.setattr(labelling, "_KEPT", 0.0)
    monkeypatch.setattr(labelling, "_FLOOR", 1e-12)  # the digits of the steps
    assert all(most_probable(p, ANY) == best for p, best in rows)
