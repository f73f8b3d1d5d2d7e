"""Finding the handwriting in a loose crop: the pieces, the rulings and margins that go,
and what is left alone (MNIST, tight and small crops)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from fields import empty_field, loose_field

from batchdigits.imaging.components import (
    handwriting,
    label_pieces,
    margins,
    only_handwriting,
    ruled,
    run_lengths,
)
from batchdigits.imaging.preprocess import normalize


def _flood_pieces(mask: np.ndarray) -> np.ndarray:
    """Reference 8-connected labelling (one id per piece, 0 off the mask), plain Python."""
    out = np.zeros(mask.shape, int)
    n = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if out[start]:
            continue
        n += 1
        stack = [start]
        out[start] = n
        while stack:
            r, c = stack.pop()
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    inside = 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1]
                    if inside and mask[rr, cc] and not out[rr, cc]:
                        out[rr, cc] = n
                        stack.append((rr, cc))
    return out


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = {(int(x), int(y)) for x, y in zip(a.ravel(), b.ravel(), strict=True)}
    return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})


def test_pieces_match_a_flood_fill_on_random_masks_and_a_long_spiral():
    rng = np.random.default_rng(0)
    masks = [rng.random((24, 30)) < p for p in (0.2, 0.45, 0.6)]
    spiral = np.zeros((24, 30), bool)  # one piece hundreds of pixels long
    top, left, bottom, right = 0, 0, 23, 29
    while top <= bottom and left <= right:
        spiral[top, left : right + 1] = spiral[top : bottom + 1, right] = True
        spiral[bottom, left : right + 1] = True
        spiral[top + 2 : bottom + 1, left] = True
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
    masks.append(spiral)
    labels = label_pieces(tf.constant(np.stack(masks))).numpy()
    for mask, got in zip(masks, labels, strict=True):
        assert ((got > 0) == mask).all()
        assert _same_partition(got, _flood_pieces(mask))


def _ink(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w), np.float32)


def _run(x: np.ndarray):
    h, w = x.shape
    batch = tf.constant(x[None])
    return handwriting(batch, tf.constant([h]), tf.constant([w]))[0].numpy()


def _digit_like(x: np.ndarray, top: int, left: int, size: int = 14) -> None:
    """A ring (a 0), ``size`` px, drawn with a 2 px pen."""
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5)
    x[top : top + size, left : left + size] = np.maximum(
        x[top : top + size, left : left + size], ((r > size / 2 - 3) & (r < size / 2)) * 1.0
    )


def _runs_reference(mask: np.ndarray, drift: bool, wanted: float) -> np.ndarray:
    """Rulings the slow way: pixels of ``mask (H, W)`` whose row (after the one-pixel
    drift, a vertical 3-maximum) holds a run through them of at least the shortest of
    the allowed lengths that is as long as ``wanted``; rows only."""
    from batchdigits.imaging.components import _RUNS

    allowed = [r for r in _RUNS if r >= wanted]
    out = np.zeros_like(mask)
    if not allowed:
        return out
    d = mask.copy()
    if drift:
        d[1:] |= mask[:-1]
        d[:-1] |= mask[1:]
    for r in range(mask.shape[0]):
        c = 0
        while c < mask.shape[1]:
            if not d[r, c]:
                c += 1
                continue
            end = c
            while end < mask.shape[1] and d[r, end]:
                end += 1
            if end - c >= allowed[0]:
                out[r, c:end] = True
            c = end
    return out & mask


def test_run_lengths_count_each_run_along_its_row():
    mask = np.array([[1, 1, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]], bool)
    got = run_lengths(tf.constant(mask[None])).numpy()[0]
    want = [[2, 2, 0, 3, 3, 3, 0], [0] * 7, [7] * 7]
    np.testing.assert_array_equal(got, want)


def test_rulings_are_the_long_runs_of_each_row_and_column():
    rng = np.random.default_rng(3)
    for size, p in ((48, 0.5), (64, 0.8), (70, 0.95)):
        masks = rng.random((3, size, size)) < p
        masks[0, 10, :] = True  # a full ruling
        masks[1, :, 20] = True  # a full upright ruling
        h = w = tf.fill([3], size)
        got = ruled(tf.constant(masks), h, w).numpy()
        for mask, g in zip(masks, got, strict=True):
            rows = _runs_reference(mask, True, 0.9 * size)
            cols = _runs_reference(mask.T, True, 0.9 * size).T
            np.testing.assert_array_equal(g, rows | cols)
        assert got[0, 10].all() and got[1, :, 20].all()


def test_rulings_margins_and_a_cut_mark_go_the_digit_stays():
    x = _ink(64, 48)
    x[:, :12] = 1.0  # a scanner margin along the left
    x[:, 40] = 1.0  # a ruling
    x[5, :] = 1.0  # a horizontal ruling
    x[30:40, 46:48] = 1.0  # a neighbour's stroke cut by the right edge
    _digit_like(x, 24, 20)
    out = _run(x)
    kept = out >= 0.25
    assert kept[24:38, 20:34].sum() >= 0.9 * (x[24:38, 20:34] >= 0.25).sum()
    assert not kept[:, :12].any() and not kept[:, 40].any() and not kept[5].any()
    assert not kept[30:40, 46:48].any()


def test_a_cell_of_rulings_and_a_margin_alone_has_no_handwriting():
    x = _ink(64, 48)
    x[:, 36:48] = 1.0
    x[:, 3] = x[:, 30] = x[60, :] = 1.0
    assert not (_run(x) >= 0.25).any()


def test_a_margins_faded_wedge_and_print_cut_by_the_edge_are_not_a_digit():
    wedge = _ink(64, 40)
    for r in range(8, 60):  # the ragged rest of a skewed margin, fading out at the top
        wedge[r, : 2 + (r - 8) // 5] = 1.0
    wedge[63, :] = 1.0  # the cell's bottom ruling
    assert not (_run(wedge) >= 0.25).any()
    printed = _ink(68, 48)
    printed[:, 44] = 1.0  # a ruling
    _digit_like(printed, 0, 2, 12)
    printed = printed[4:]  # a letter of print cut by the top edge, in a corner
    assert not (_run(printed) >= 0.25).any()
    # the same mark in the middle of the cell is the handwriting and stays
    central = _ink(64, 48)
    central[:, 44] = 1.0
    _digit_like(central, 26, 16, 12)
    assert (_run(central)[26:38, 16:28] >= 0.25).sum() >= 20


def test_rulings_and_margins_found_with_some_drift():
    x = np.zeros((1, 64, 64), bool)
    rows = np.arange(64)
    x[0, rows, 50 + rows // 40] = True  # a ruling drifting by a pixel
    x[0, :, :8] = True  # a margin
    x[0, 20:30, 20:30] = True  # not a line: a blob in the middle
    h = w = tf.constant([64])
    lines = ruled(tf.constant(x), h, w)[0].numpy()
    band = margins(tf.constant(x), h, w)[0].numpy()
    assert lines[rows, 50 + rows // 40].all() and not lines[20:30, 20:30].any()
    assert band[:, :8].all() and not band[:, 20:].any()


def test_small_crops_and_clear_ink_are_left_exactly_as_they_are(mnist):
    # MNIST (28 px) and a 36 px tight crop whose strokes touch every edge: no search
    digits = mnist.x_test[:64].astype(np.float32) / 255.0
    h = w = tf.fill([64], 28)
    out = only_handwriting(tf.constant(digits), h, w).numpy()
    assert np.array_equal(out, digits)
    tight = np.zeros((1, 36, 36), np.float32)
    tight[0, :, 0] = tight[0, 0, :] = tight[0, :, 17] = 1.0
    out = only_handwriting(tf.constant(tight), tf.constant([36]), tf.constant([36])).numpy()
    assert np.array_equal(out, tight)


@pytest.mark.parametrize("dark", [True, False])
def test_loose_fields_normalise_to_the_digit_alone(mnist, dark):
    rng = np.random.default_rng(7)
    digit = mnist.x_test[3]  # a 0
    image = loose_field(digit, rng, dark)
    model_input, found = normalize(image)
    assert found
    # the digit fills the 20 px box as MNIST's do: its ink is not squeezed into a thin
    # strip by a ruling or a margin at the other end of the crop
    ink = model_input[..., 0] > 60
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    assert rows[-1] - rows[0] >= 15 and cols[-1] - cols[0] >= 8
    empty, found = normalize(empty_field(None, np.random.default_rng(1), dark))
    assert not found and not empty.any()


def test_runs_from_the_edges_stop_at_the_first_gap_and_at_each_images_own_end():
    from batchdigits.imaging.ink import runs_from_edges

    rows = np.array(
        [
            [1, 1, 0, 1, 1, 1, 0, 0],  # extent 6: runs 0-1 from the start, 3-5 to its end
            [1, 1, 1, 1, 1, 1, 1, 1],  # all ink: both runs cover the whole extent
            [0, 1, 1, 0, 1, 0, 1, 1],  # extent 5: its end (index 4) is ink, 5-7 are padding
        ],
        bool,
    )[:, None, :]
    start, end = runs_from_edges(tf.constant(rows), 2, tf.constant([6, 8, 5]))
    assert start.numpy()[:, 0].astype(int).tolist() == [
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ]
    assert end.numpy()[:, 0].astype(int).tolist() == [
        [0, 0, 0, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 1, 0, 0, 0],
    ]
