"""Cutting a number's clean ink into candidate digits (numpy, one field at a time).

The ink's connected pieces are the primitives, in reading order (left to right). Short
pieces beside the writing (a decimal point, a comma, a dash) are separators and go; a
short piece above or below a tall one (a 5's bar) stays, to be joined with it. A piece
wider than a digit (touching or overlapping digits) is cut at the lowest points of its
column profile, into several primitives. A candidate digit is a run of one to
:data:`MAX_JOIN` consecutive primitives that is not too wide; the reader scores every
candidate with the digit model and keeps the best path through them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_JOIN = 5  # a digit is made of at most this many primitives
_SHORT = 0.45  # a piece lower than this share of the tallest is short ...
_OVERLAP = 0.5  # ... and a separator unless this share of its columns is over a tall one
_SPECK = 0.02  # pieces with less than this share of the ink are specks
_SPANS = 0.8  # writing lower than this share of the field: a piece through it is a line
_STACKED = 0.6  # pieces sharing this share of the narrower one's columns are one digit
_WIDE = 0.9  # a primitive wider than this share of the digits' height is cut
_CUT_EDGE = 0.2  # cuts keep this share of the height from a primitive's ends
_NARROWEST = 0.4  # a piece is cut into at most its width over this share of the height
_WIDEST = 1.4  # a candidate wider than this share of the height is not a digit
_WIDEST_ALONE = 0.8  # a digit wider than this share of the height costs WIDTH_COST a height
CUT_COST = 0.5  # log-odds against a digit per cut at its ends
WIDTH_COST = 2.0


@dataclass(frozen=True)
class Primitive:
    """Part of the ink: pixels ``(rows, cols)`` of the field, and its column range."""

    rows: np.ndarray
    cols: np.ndarray
    cut_left: bool = False  # its left edge is a cut through a piece, not the piece's end
    cut_right: bool = False

    @property
    def left(self) -> int:
        return int(self.cols.min())

    @property
    def right(self) -> int:
        return int(self.cols.max()) + 1

    @property
    def top(self) -> int:
        return int(self.rows.min())

    @property
    def bottom(self) -> int:
        return int(self.rows.max()) + 1


def pieces(labels: np.ndarray, ink: np.ndarray) -> list[Primitive]:
    """The connected pieces of one field (``labels (H, W)``, 0 off the ink), without
    specks, lines across the field, separators and the rest, those one above the other
    joined: in reading order."""
    found = labels > 0
    if not found.any():
        return []
    rows, cols = np.nonzero(found)
    ids = labels[rows, cols]
    order = np.argsort(ids, kind="stable")
    rows, cols, ids = rows[order], cols[order], ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    parts = [
        Primitive(r, c)
        for r, c in zip(np.split(rows, starts[1:]), np.split(cols, starts[1:]), strict=True)
    ]
    parts = _without_lines(parts, *labels.shape)
    if not parts:
        return []
    weights = np.array([ink[p.rows, p.cols].sum() for p in parts])
    parts = [p for p, m in zip(parts, weights, strict=True) if m >= _SPECK * weights.sum()]
    return _stacked(sorted(_without_separators(parts), key=lambda p: p.left))


def _without_lines(parts: list[Primitive], h: int, w: int) -> list[Primitive]:
    """Without the pieces that run through the field from edge to edge (what is left of
    a ruling or a margin), when there is writing beside them that does not."""

    def through(p: Primitive) -> bool:
        return (p.top == 0 and p.bottom == h) or (p.left == 0 and p.right == w)

    rest = [p for p in parts if not through(p)]
    return rest if rest and max(p.bottom - p.top for p in rest) < _SPANS * h else parts


def _stacked(parts: list[Primitive]) -> list[Primitive]:
    """Pieces one above the other (most of the narrower one's columns shared) joined:
    a digit's parts (a 5's bar, a broken stroke)."""
    out: list[Primitive] = []
    for p in parts:
        q = out[-1] if out else None
        if q is not None:
            shared = min(p.right, q.right) - max(p.left, q.left)
            if shared >= _STACKED * min(p.right - p.left, q.right - q.left):
                out[-1] = Primitive(np.r_[q.rows, p.rows], np.r_[q.cols, p.cols])
                continue
        out.append(p)
    return sorted(out, key=lambda p: (p.left + p.right) / 2)


def _without_separators(parts: list[Primitive]) -> list[Primitive]:
    tallest = max(p.bottom - p.top for p in parts)
    tall = [p for p in parts if p.bottom - p.top >= _SHORT * tallest]
    kept = list(tall)
    for p in parts:
        if p.bottom - p.top >= _SHORT * tallest:
            continue
        width = p.right - p.left
        over = max((min(p.right, q.right) - max(p.left, q.left) for q in tall), default=0)
        if over >= _OVERLAP * width:
            kept.append(p)
    return kept


def height_of(parts: list[Primitive]) -> int:
    """The digits' height: the tallest piece's."""
    return max(p.bottom - p.top for p in parts)


def primitives(parts: list[Primitive], ink: np.ndarray) -> list[Primitive]:
    """The pieces, each wide one cut at the lowest points of its column profile."""
    height = height_of(parts)
    out: list[Primitive] = []
    for p in parts:
        out.extend(_cut(p, ink, height) if p.right - p.left > _WIDE * height else [p])
    return sorted(out, key=lambda p: (p.left + p.right) / 2)


def _cut(p: Primitive, ink: np.ndarray, height: int) -> list[Primitive]:
    profile = np.bincount(p.cols - p.left, weights=ink[p.rows, p.cols], minlength=p.right - p.left)
    edge = max(1, int(_CUT_EDGE * height))
    inner = np.arange(edge, len(profile) - edge)
    if not len(inner):
        return [p]
    low = inner[
        (profile[inner] <= profile[np.maximum(inner - 1, 0)])
        & (profile[inner] <= profile[np.minimum(inner + 1, len(profile) - 1)])
    ]
    most = max(1, int(len(profile) / (_NARROWEST * height)))
    cuts: list[int] = []
    for c in low[np.argsort(profile[low], kind="stable")]:
        if all(abs(c - d) >= edge for d in cuts):
            cuts.append(int(c))
        if len(cuts) == most:
            break
    bounds = [0, *sorted(cuts), len(profile)]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        keep = (p.cols - p.left >= a) & (p.cols - p.left < b)
        if keep.any():
            out.append(Primitive(p.rows[keep], p.cols[keep], a > 0, b < len(profile)))
    return out


def odds(prims: list[Primitive], height: int) -> float:
    """The log-odds against a run of primitives being one digit, from its shape alone:
    a cut at either end, and a width past :data:`_WIDEST_ALONE` of the height."""
    cuts = int(prims[0].cut_left) + int(prims[-1].cut_right)
    width = max(p.right for p in prims) - min(p.left for p in prims)
    return CUT_COST * cuts + WIDTH_COST * max(0.0, width / height - _WIDEST_ALONE)


def candidates(prims: list[Primitive]) -> list[tuple[int, int]]:
    """Runs ``(first, stop)`` of consecutive primitives that may be one digit."""
    if not prims:
        return []
    height = height_of(prims)
    out = []
    for i in range(len(prims)):
        for j in range(i + 1, min(i + MAX_JOIN, len(prims)) + 1):
            left = min(p.left for p in prims[i:j])
            right = max(p.right for p in prims[i:j])
            whole = not prims[i].cut_left and not prims[j - 1].cut_right
            if j > i + 1 and right - left > _WIDEST * height and not whole:
                continue
            out.append((i, j))
    return out


def crop(prims: list[Primitive], ink: np.ndarray) -> np.ndarray:
    """The ink of some primitives alone, cropped to their box ``float32 (h, w)``."""
    rows = np.concatenate([p.rows for p in prims])
    cols = np.concatenate([p.cols for p in prims])
    top, left = rows.min(), cols.min()
    out = np.zeros((rows.max() - top + 1, cols.max() - left + 1), np.float32)
    out[rows - top, cols - left] = ink[rows, cols]
    return out
