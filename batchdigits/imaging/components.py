"""Finding the handwriting in a loose crop, vectorised over a padded batch: the ink is cut
into connected pieces, and what is not writing goes: long straight lines (rulings, box
borders, underlines), solid regions along an edge (scanner margins, a cell's shadow), and
marks away from the digit (print, a neighbour's stroke cut by the crop's edge, specks).

The digit is the piece with the most ink, weighted towards the centre and against
touching the crop's edge; the pieces near it with a fair share of its ink are kept with it
(a 5's detached bar, a broken stroke). A piece that touches the crop's edge is kept only
when the digit itself does (a tight crop), so a loose crop's neighbours and cut print go.
When nothing but lines and margins is left, the image holds no digit, except for one
centred line alone, which is a 1.
"""

from __future__ import annotations

from batchdigits.imaging.resample import per_image
from batchdigits.runtime.lazy import tf

_INK = 0.25  # of full ink: the pixels that make up the pieces
_MAX_STEPS = 48  # label propagation rounds, at most (each also jumps along the labels)
_LINE_LENGTH = 0.6  # a line spans at least this share of the image along its axis ...
_LINE_ASPECT = 5.0  # ... and is at least this many times longer than wide
_MARGIN_EDGE = 0.5  # a margin lies along at least this share of an edge ...
_MARGIN_FILL = 0.6  # ... fills this share of its box ...
_MARGIN_DEPTH = 0.6  # ... and reaches less than this share across the image
_BORDER_WEIGHT = 0.35  # a piece touching the edge counts this much when choosing the digit
_NEAR = 0.3  # pieces within this share of the digit's size of its box are near it ...
_SHARE = 0.1  # ... and kept with it when they hold at least this share of its ink
_RULED = 0.7  # a ruling runs straight across at least this share of the image ...
_RUNS = (12, 18, 26, 36, 44)  # ... measured with the longest of these runs (pixels) within it


def _channels(v):
    """``(B, H, W)`` -> ``(1, H, W, B)``: the batch as channels, for pooling."""
    return tf().transpose(v, [1, 2, 0])[None]


def _batch(v):
    """``(1, H, W, B)`` -> ``(B, H, W)``."""
    return tf().transpose(v[0], [2, 0, 1])


def ruled(ink, h, w):
    """The pixels of rulings: ink in a straight run along a row (column), a pixel of
    drift allowed, at least :data:`_RULED` of the image long. ``ink (B, H, W)`` bool ->
    bool. (An opening with a run as long as the ruling asks for: the batch's images
    choose among a few lengths the longest within their own share.)"""
    t = tf()
    m = _channels(t.cast(ink, t.float32))
    out = t.zeros_like(m)
    for along, extent in ((2, w), (1, h)):
        drift = (3, 1) if along == 2 else (1, 3)
        d = t.nn.max_pool2d(m, drift, 1, "SAME")
        wanted = _RULED * t.cast(extent, t.float32)[None, None, None, :]
        chosen = t.zeros_like(m)
        for run in _RUNS:
            window = (1, run) if along == 2 else (run, 1)
            opened = t.nn.max_pool2d(-t.nn.max_pool2d(-d, window, 1, "SAME"), window, 1, "SAME")
            chosen = t.where(wanted >= run, opened, chosen)
        out = t.maximum(out, chosen)
    out = t.nn.max_pool2d(out, 3, 1, "SAME") * t.nn.max_pool2d(m, 3, 1, "SAME")
    return _batch(out) > 0.0  # with the line's soft edge


def label_pieces(mask):
    """8-connected pieces of ``mask (B, H, W)``: each pixel's label is one plus the flat
    index of the last pixel of its piece (0 off the mask), ``float32 (B, H, W)``.

    Labels grow by a 3x3 maximum within the mask (twice a round) and then jump: a pixel
    takes the label of the pixel its label points to (which is in the same piece and
    already as large), so long pieces converge in far fewer rounds than their length.
    The batch runs as the channels of one image (pooling one channel at a time is many
    times slower on a CPU)."""
    t = tf()
    shape = t.shape(mask)
    n = shape[1] * shape[2]
    m = t.transpose(t.cast(mask, t.float32), [1, 2, 0])[None]  # (1, H, W, B)
    index = t.reshape(t.range(1, n + 1, dtype=t.float32), [1, shape[1], shape[2], 1])
    image = t.cast(t.range(shape[0]), t.float32)
    batch = t.cast(shape[0], t.float32)

    def body(i, labels, changed):
        grown = t.nn.max_pool2d(t.nn.max_pool2d(labels, 3, 1, "SAME") * m, 3, 1, "SAME") * m
        # pixel v - 1 of image b sits at (v - 1) * B + b of the flat (H, W, B) layout
        at = t.maximum(grown - 1.0, 0.0) * batch + image
        jumped = t.gather(t.reshape(grown, [-1]), t.reshape(t.cast(at, t.int32), [-1]))
        jumped = t.reshape(jumped, t.shape(labels)) * m
        return i + 1, jumped, t.reduce_any(jumped != labels)

    _, labels, _ = t.while_loop(
        lambda i, labels, changed: changed & (i < _MAX_STEPS), body, [0, index * m, True]
    )
    return t.transpose(labels[0], [2, 0, 1])


def _piece_stats(labels, x, h, w):
    """Per piece (one segment per possible label of each image, ``(B, n + 1)``): pixel
    count, ink, box, centroid, and its pixels on each of the four edges."""
    t = tf()
    shape = t.shape(labels)
    n = shape[1] * shape[2]
    segments = t.reshape(t.cast(labels, t.int32) + t.range(shape[0])[:, None, None] * (n + 1), [-1])
    total = shape[0] * (n + 1)
    rows = t.cast(t.broadcast_to(t.range(shape[1])[None, :, None], shape), t.float32)
    cols = t.cast(t.broadcast_to(t.range(shape[2])[None, None, :], shape), t.float32)
    on = t.cast(labels > 0, t.float32)
    hf, wf = (t.cast(v, t.float32) for v in (h, w))

    def summed(v):
        return t.reshape(
            t.math.unsorted_segment_sum(t.reshape(v, [-1]), segments, total), [shape[0], -1]
        )

    def extreme(v, op):
        return t.reshape(op(t.reshape(v, [-1]), segments, total), [shape[0], -1])

    big = 1e6
    stats = {
        "count": summed(on),
        "ink": summed(x * on),
        "r0": extreme(rows + big * (1.0 - on), t.math.unsorted_segment_min),
        "r1": extreme(rows * on, t.math.unsorted_segment_max),
        "c0": extreme(cols + big * (1.0 - on), t.math.unsorted_segment_min),
        "c1": extreme(cols * on, t.math.unsorted_segment_max),
        "rsum": summed(rows * on),
        "csum": summed(cols * on),
        "top": summed(on * t.cast(rows == 0.0, t.float32)),
        "bottom": summed(on * t.cast(rows == per_image(hf - 1.0), t.float32)),
        "left": summed(on * t.cast(cols == 0.0, t.float32)),
        "right": summed(on * t.cast(cols == per_image(wf - 1.0), t.float32)),
    }
    return stats


def _structure(s, hf, wf):
    """Which pieces are lines or margins (not writing), and whether each is a centred
    line (a 1, when nothing else is there): three ``(B, n + 1)`` masks."""
    t = tf()
    hh, ww = s["r1"] - s["r0"] + 1.0, s["c1"] - s["c0"] + 1.0
    hi, wi = hf[:, None], wf[:, None]
    upright = (hh >= _LINE_LENGTH * hi) & (hh >= _LINE_ASPECT * ww)
    lying = (ww >= _LINE_LENGTH * wi) & (ww >= _LINE_ASPECT * hh)
    fill = s["count"] / t.maximum(hh * ww, 1.0)
    solid = fill >= _MARGIN_FILL
    along_side = ((s["left"] >= _MARGIN_EDGE * hi) | (s["right"] >= _MARGIN_EDGE * hi)) & (
        ww < _MARGIN_DEPTH * wi
    )
    along_end = ((s["top"] >= _MARGIN_EDGE * wi) | (s["bottom"] >= _MARGIN_EDGE * wi)) & (
        hh < _MARGIN_DEPTH * hi
    )
    margin = solid & (along_side | along_end)
    cy, cx = s["rsum"] / t.maximum(s["count"], 1.0), s["csum"] / t.maximum(s["count"], 1.0)
    centred = (
        t.where(
            upright,
            t.abs(cx / t.maximum(wi - 1.0, 1.0) - 0.5),
            t.abs(cy / t.maximum(hi - 1.0, 1.0) - 0.5),
        )
        < 0.2
    )
    line = upright | lying
    return line, margin, line & centred & ~margin


def _choose(s, keep_mask, hf, wf):
    """The digit's piece among ``keep_mask`` (index per image) and whether there is one."""
    t = tf()
    cy, cx = s["rsum"] / t.maximum(s["count"], 1.0), s["csum"] / t.maximum(s["count"], 1.0)
    dy = cy / t.maximum(hf[:, None] - 1.0, 1.0) - 0.5
    dx = cx / t.maximum(wf[:, None] - 1.0, 1.0) - 0.5
    centre = 1.0 - t.sqrt(dy**2 + dx**2)  # 1 at the centre, 0.3 in a corner
    border = s["top"] + s["bottom"] + s["left"] + s["right"] > 0.0
    weight = t.where(border, _BORDER_WEIGHT, 1.0) * centre
    score = t.where(keep_mask, s["ink"] * weight, -1.0)
    return t.argmax(score, 1, output_type=t.int32), t.reduce_max(score, 1) > 0.0, border


def _near(s, main):
    """Pieces whose box lies within :data:`_NEAR` of the digit's size of its box, and
    hold at least :data:`_SHARE` of its ink: ``(B, n + 1)``."""
    t = tf()

    def of(key):
        return t.gather(s[key], main[:, None], batch_dims=1)

    size = t.maximum(of("r1") - of("r0"), of("c1") - of("c0")) + 1.0
    reach = _NEAR * size
    gap_r = t.maximum(s["r0"] - of("r1"), of("r0") - s["r1"])
    gap_c = t.maximum(s["c0"] - of("c1"), of("c0") - s["c1"])
    return (t.maximum(gap_r, gap_c) <= reach) & (s["ink"] >= _SHARE * of("ink"))


def handwriting(x, h, w):
    """``x (B, H, W)`` ink 0..1 with only the handwriting left (see the module's doc):
    for a loose crop (the digit's piece clear of the edges once rulings are gone), the
    digit and the pieces near it; a crop whose digit touches its edges (a tight crop)
    as it is; an image with nothing but lines and margins, empty."""
    t = tf()
    ink = x >= _INK
    lines = ruled(ink, h, w)
    unruled = x * t.cast(~lines, t.float32)
    labels = label_pieces(ink & ~lines)
    s = _piece_stats(labels, unruled, h, w)
    hf, wf = t.cast(h, t.float32), t.cast(w, t.float32)
    present = s["count"] > 0.0
    present = t.concat([t.zeros_like(present[:, :1]), present[:, 1:]], 1)  # 0: no piece
    line, margin, lone_one = _structure(s, hf, wf)
    writing = present & ~line & ~margin
    main, found, border = _choose(s, writing, hf, wf)
    tight = t.gather(border, main[:, None], batch_dims=1)[:, 0] & found
    _, found_one, _ = _choose(s, present & lone_one, hf, wf)
    kept = writing & _near(s, main) & ~border
    pieces = t.range(t.shape(present)[1])[None, :]
    kept = (kept | (pieces == main[:, None])) & found[:, None]
    keep_pixel = t.gather(kept, t.cast(labels, t.int32), batch_dims=1)
    # the faint ink around the kept strokes (below the pieces' level) stays with them
    near_kept = _batch(t.nn.max_pool2d(_channels(t.cast(keep_pixel, t.float32)), 3, 1, "SAME"))
    faint = (x < _INK) & (near_kept > 0.0) & ~lines
    loose = x * t.cast(keep_pixel | faint, t.float32)
    as_is = per_image(tight | (found_one & ~found))
    return t.where(as_is, x, loose)


def touches_edge(x, h, w):
    """Per image: is there ink (at the pieces' level) on its valid border? A crop whose
    ink keeps clear of its edges (MNIST, a clean digit on paper) skips the search."""
    t = tf()
    ink = x >= _INK
    rows = t.range(t.shape(x)[1])[None, :, None]
    cols = t.range(t.shape(x)[2])[None, None, :]
    edge = (rows == 0) | (cols == 0) | (rows == per_image(h - 1)) | (cols == per_image(w - 1))
    return t.reduce_any(ink & edge, [1, 2])


def only_handwriting(x, h, w):
    """:func:`handwriting` for the images whose ink touches their edge, as a smaller
    batch of those alone; a batch where none does (MNIST, clean digits on paper) skips
    it altogether."""
    t = tf()
    which = t.where(touches_edge(x, h, w))  # (K, 1)

    def localise():
        some = handwriting(t.gather_nd(x, which), t.gather_nd(h, which), t.gather_nd(w, which))
        return t.tensor_scatter_nd_update(x, which, some)

    return t.cond(t.shape(which)[0] > 0, localise, lambda: x)
