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

import functools

from batchdigits.imaging.ink import dilated, first_last, runs_from_edges
from batchdigits.imaging.resample import on_some, per_image
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
_BAND_FILL = 0.9  # a margin's rows (columns) are at least this much ink ...
_BAND_DEPTH = 0.45  # ... and reach at most this share into the image
_BLOCK_FILL = 0.8  # a piece filling this share of its box ...
_BLOCK_SIDE = 0.2  # ... at least this share of the image thick is a patch, not writing
_RESIDUE = 0.6  # a piece with this share of its pixels beside a removed line is its rest
_HAIR_LENGTH = 0.3  # a piece this share of the image long ...
_HAIR_ASPECT = 10.0  # ... and this many times longer than wide is a hairline
_SMALLEST = 0.1  # the digit's piece spans at least this share of the image's longer side
_TIGHT = 0.5  # a digit touching the edge and spanning this share of the image: a tight crop
_CLUTTER = 0.3  # a crop is localised when at least this share of its ink is not writing
_SMALL_CROP = 40  # crops at most this long (pixels) are never searched
_ONE_WIDTH = 0.07  # a lone line is read as a 1 when at least this share of its length wide
_RULED = 0.9  # a ruling runs straight across at least this share of the image ...
_RUNS = (15, 23, 31, 39, 47, 55, 63)  # ... measured with the longest of these runs within it
_SLIVER = 0.25  # a piece from edge to edge at most this share of the image across ...
_OFF_CENTRE = 0.2  # ... whose centre is this far off the middle is a margin's rest
_CUT_FAR = 0.3  # a piece on the edge, its centre this far off the middle: a cut mark
_SIDED = 0.25  # ... or a margin's rest, when it lies along this share of that edge


def _channels(v):
    """``(B, H, W)`` -> ``(1, H, W, B)``: the batch as channels, for pooling."""
    return tf().transpose(v, [1, 2, 0])[None]


def _batch(v):
    """``(1, H, W, B)`` -> ``(B, H, W)``."""
    return tf().transpose(v[0], [2, 0, 1])


def run_lengths(d):
    """``d (B, H, W)`` bool -> ``float32 (B, H, W)``: the length of the run of True
    along its row that each True pixel belongs to (0 elsewhere). A run is what lies
    between two False pixels: counting the False ones along the row numbers the runs,
    and one segment sum over (image, row, run) gives each run's length."""
    t = tf()
    shape = t.shape(d)
    f = t.cast(d, t.float32)
    run = t.cast(t.math.cumsum(1.0 - f, axis=2), t.int32)  # 0..W: False pixels so far
    row = t.reshape(t.range(shape[0] * shape[1]), [shape[0], shape[1], 1])
    segments = row * (shape[2] + 1) + run
    total = shape[0] * shape[1] * (shape[2] + 1)
    lengths = t.math.unsorted_segment_sum(f, segments, total)
    return t.gather(lengths, segments) * f


def ruled(ink, h, w):
    """The pixels of rulings: ink in a straight run along a row (column), a pixel of
    drift allowed, at least :data:`_RULED` of the image long. ``ink (B, H, W)`` bool ->
    bool. (An opening with a run as long as the ruling asks for keeps exactly the runs at
    least that long: each image asks for the shortest of a few lengths that is as long
    as its own share, so the answer does not shift with every pixel of its size.)"""
    t = tf()
    out = t.zeros_like(ink)
    for along, extent in ((2, w), (1, h)):
        drift = (3, 1) if along == 2 else (1, 3)
        d = dilated(ink, *drift)
        wanted = _RULED * t.cast(extent, t.float32)
        runs = t.constant(_RUNS, t.float32)
        longest = float(_RUNS[-1])
        # the shortest run at least as long as wanted (none: longer than any, never met)
        asked = t.reduce_min(t.where(runs[None, :] >= wanted[:, None], runs[None, :], 1e9), 1)
        if along == 1:
            lengths = t.transpose(run_lengths(t.transpose(d, [0, 2, 1])), [0, 2, 1])
        else:
            lengths = run_lengths(d)
        out = out | ((lengths >= per_image(asked)) & (asked <= longest)[:, None, None])
    return out & ink


def margins(ink, h, w):
    """The bands along the edges that are mostly ink (a scanner margin, a cell's shadow,
    skewed or ragged along its inner side): from each edge, the rows (columns) that are
    at least :data:`_BAND_FILL` ink, one after another, up to :data:`_BAND_DEPTH` of the
    image. ``ink (B, H, W)`` bool -> bool."""
    t = tf()
    f = t.cast(ink, t.float32)
    out = t.zeros_like(ink)
    for axis, extent, across in ((2, w, h), (1, h, w)):
        # share of ink in each column (axis 1 summed) or row (axis 2 summed)
        share = t.reduce_sum(f, 3 - axis) / t.cast(across, t.float32)[:, None]
        from_start, from_end = runs_from_edges((share >= _BAND_FILL)[:, None, :], 2, extent)
        i = t.range(t.shape(share)[1])[None, :]
        depth = t.cast(_BAND_DEPTH * t.cast(extent, t.float32), t.int32)[:, None]
        band = (from_start[:, 0] & (i < depth)) | (from_end[:, 0] & (i >= extent[:, None] - depth))
        band = band[:, None, :] if axis == 2 else band[:, :, None]
        out = out | band
    return out


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
    m = _channels(t.cast(mask, t.float32))
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
    return _batch(labels)


def _piece_stats(labels, x, h, w, by_lines):
    """Per piece (one segment per possible label of each image, ``(B, n + 1)``): pixel
    count, ink, box, centroid, its pixels on each of the four edges, and those next to a
    removed line or margin (``by_lines (B, H, W)``)."""
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
        "by_lines": summed(on * t.cast(by_lines, t.float32)),
    }
    return stats


def _structure(s, hf, wf):
    """Which pieces are lines or margins (not writing), whether each is a centred line
    (a 1, when nothing else is there), and which are slivers along an edge (not writing
    either, but no sign of a form's field: a photo's texture has them too): four
    ``(B, n + 1)`` masks."""
    t = tf()
    hh, ww = s["r1"] - s["r0"] + 1.0, s["c1"] - s["c0"] + 1.0
    hi, wi = hf[:, None], wf[:, None]
    upright = (hh >= _LINE_LENGTH * hi) & (hh >= _LINE_ASPECT * ww)
    lying = (ww >= _LINE_LENGTH * wi) & (ww >= _LINE_ASPECT * hh)
    # a hairline from the edge a third of the image long is a ruling's part, not a stroke
    edge = s["top"] + s["bottom"] + s["left"] + s["right"] > 0.0
    upright = upright | ((hh >= _HAIR_LENGTH * hi) & (hh >= _HAIR_ASPECT * ww) & edge)
    lying = lying | ((ww >= _HAIR_LENGTH * wi) & (ww >= _HAIR_ASPECT * hh) & edge)
    fill = s["count"] / t.maximum(hh * ww, 1.0)
    solid = fill >= _MARGIN_FILL
    along_side = ((s["left"] >= _MARGIN_EDGE * hi) | (s["right"] >= _MARGIN_EDGE * hi)) & (
        ww < _MARGIN_DEPTH * wi
    )
    along_end = ((s["top"] >= _MARGIN_EDGE * wi) | (s["bottom"] >= _MARGIN_EDGE * wi)) & (
        hh < _MARGIN_DEPTH * hi
    )
    thick = t.minimum(hh, ww) >= _BLOCK_SIDE * t.minimum(hi, wi)
    block = (fill >= _BLOCK_FILL) & thick  # a dark patch, no stroke
    residue = s["by_lines"] >= _RESIDUE * s["count"]  # what is left of a ruling or margin
    hugging = (t.maximum(s["left"], s["right"]) >= 0.5 * hh) | (
        t.maximum(s["top"], s["bottom"]) >= 0.5 * ww
    )
    patch = (fill >= _MARGIN_FILL) & hugging  # a solid piece along the edge: a margin's rest
    dy, dx = _offsets(s, hf, wf)
    # a thin piece from one edge to the opposite one, off the middle: the ragged rest of
    # a skewed margin or a cell's border (a tight crop's digit is central)
    spans_rows = (s["top"] > 0.0) & (s["bottom"] > 0.0) & (ww <= _SLIVER * wi)
    spans_cols = (s["left"] > 0.0) & (s["right"] > 0.0) & (hh <= _SLIVER * hi)
    sliver = (spans_rows & (t.abs(dx) >= _OFF_CENTRE)) | (spans_cols & (t.abs(dy) >= _OFF_CENTRE))
    # a piece along a good stretch of a side, all of it near that side: a margin's rest
    # faded at one end (a digit's stroke touches its crop's edge at a few pixels)
    sided = (t.maximum(s["left"], s["right"]) >= _SIDED * hi) & (t.abs(dx) >= _CUT_FAR)
    ended = (t.maximum(s["top"], s["bottom"]) >= _SIDED * wi) & (t.abs(dy) >= _CUT_FAR)
    sliver = sliver | sided | ended
    margin = (solid & (along_side | along_end)) | block | residue | patch
    centred = t.where(upright, t.abs(dx), t.abs(dy)) < _OFF_CENTRE
    line = upright | lying
    # a handwritten 1 is a stroke, not a hairline: a ruling's rest is far thinner
    stroke = s["count"] >= _ONE_WIDTH * t.maximum(hh, ww) ** 2
    return line, margin, line & centred & ~margin & stroke, sliver & ~margin


def _offsets(s, hf, wf):
    """Each piece's centroid from the image's centre, as shares of its height and
    width (-0.5..0.5): ``(dy, dx)``, each ``(B, n + 1)``."""
    t = tf()
    count = t.maximum(s["count"], 1.0)
    dy = s["rsum"] / count / t.maximum(hf[:, None] - 1.0, 1.0) - 0.5
    dx = s["csum"] / count / t.maximum(wf[:, None] - 1.0, 1.0) - 0.5
    return dy, dx


def _choose(s, keep_mask, hf, wf):
    """The digit's piece among ``keep_mask`` (index per image) and whether there is one."""
    t = tf()
    dy, dx = _offsets(s, hf, wf)
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
    lines = ruled(ink, h, w) | margins(ink, h, w)
    # the lines' soft edges (fainter than the pieces) go with them
    lines = lines | (dilated(lines, 3, 3) & ~ink)
    unruled = x * t.cast(~lines, t.float32)
    labels = label_pieces(ink & ~lines)
    s = _piece_stats(labels, unruled, h, w, dilated(lines, 3, 3))
    hf, wf = t.cast(h, t.float32), t.cast(w, t.float32)
    present = s["count"] > 0.0
    present = t.concat([t.zeros_like(present[:, :1]), present[:, 1:]], 1)  # 0: no piece
    line, margin, lone_one, sliver = _structure(s, hf, wf)
    writing = present & ~line & ~margin & ~sliver
    span_r, span_c = s["r1"] - s["r0"] + 1.0, s["c1"] - s["c0"] + 1.0
    longer = t.maximum(hf, wf)[:, None]
    big = t.maximum(span_r, span_c) >= _SMALLEST * longer
    spans = (span_r >= _TIGHT * hf[:, None]) | (span_c >= _TIGHT * wf[:, None])
    # a mark cut by the edge far from the centre (print, a neighbour's stroke) is not
    # the digit, unless it spans the crop (a tight crop's digit)
    dy, dx = _offsets(s, hf, wf)
    edge = s["top"] + s["bottom"] + s["left"] + s["right"] > 0.0
    cut = edge & (t.maximum(t.abs(dy), t.abs(dx)) >= _CUT_FAR) & ~spans
    main, found, border = _choose(s, writing & big & ~cut, hf, wf)
    tight = t.gather(border & spans, main[:, None], batch_dims=1)[:, 0] & found
    main_one, found_one, _ = _choose(s, present & lone_one, hf, wf)
    main = t.where(found, main, main_one)
    kept = writing & _near(s, main) & ~border & found[:, None]
    pieces = t.range(t.shape(present)[1])[None, :]
    kept = (kept | (pieces == main[:, None])) & (found | found_one)[:, None]
    keep_pixel = t.gather(kept, t.cast(labels, t.int32), batch_dims=1)
    # the faint ink around the kept strokes (below the pieces' level) stays with them
    faint = (x < _INK) & dilated(keep_pixel, 3, 3) & ~lines
    loose = x * t.cast(keep_pixel | faint, t.float32)
    one = ~found & ~found_one & _centred_stroke(ink & lines, hf, wf)
    # a crop whose clutter is a small share of its ink is left as it is (a tight crop:
    # what looked like a ruling or a margin is a stroke of its digit)
    total = t.reduce_sum(t.cast(ink, t.float32), [1, 2])
    gone = total - t.reduce_sum(t.cast(loose >= _INK, t.float32), [1, 2])
    cluttered = gone >= _CLUTTER * total
    # only a crop with a ruling or a margin in it is a form's field (noise or grain,
    # however clumpy, is not searched for a digit)
    structural = present & (line | margin) & big  # a margin's rest, a broken ruling
    ruled_crop = t.reduce_any(lines & ink, [1, 2]) | t.reduce_any(structural, 1)
    return t.where(per_image(tight | one | ~cluttered | ~ruled_crop), x, loose)


def _centred_stroke(removed, hf, wf):
    """Per image: do the removed lines form one centred stroke as wide as a pen (a 1 as
    long as the crop, not a ruling)?"""
    t = tf()
    y0, y1 = first_last(t.reduce_any(removed, 2))
    x0, x1 = first_last(t.reduce_any(removed, 1))
    hh, ww = (t.cast(v, t.float32) for v in (y1 - y0, x1 - x0))
    count = t.reduce_sum(t.cast(removed, t.float32), [1, 2])
    upright = hh >= ww
    mid = t.where(
        upright, t.cast(x0 + x1, t.float32) / 2.0 / wf, t.cast(y0 + y1, t.float32) / 2.0 / hf
    )
    length, across = t.maximum(hh, ww), t.minimum(hh, ww)
    narrow = across <= 0.35 * t.where(upright, wf, hf)  # one stroke, not lines at both sides
    pen = count >= _ONE_WIDTH * length**2
    return (t.abs(mid - 0.5) < 0.2) & pen & narrow & (length > 0.0)


def touches_edge(x, h, w):
    """Per image: is there ink (at the pieces' level) on its valid border, in a crop
    larger than :data:`_SMALL_CROP` pixels? A crop whose ink keeps clear of its edges
    (MNIST, a clean digit on paper) skips the search; so does a small one, which has no
    room for margins and rulings beside a digit (a tight crop, a scaled-up tiny digit:
    there a stroke would look like a ruling)."""
    t = tf()
    ink = x >= _INK
    rows = t.range(t.shape(x)[1])[None, :, None]
    cols = t.range(t.shape(x)[2])[None, None, :]
    edge = (rows == 0) | (cols == 0) | (rows == per_image(h - 1)) | (cols == per_image(w - 1))
    return t.reduce_any(ink & edge, [1, 2]) & (t.maximum(h, w) > _SMALL_CROP)


def only_handwriting(x, h, w, which=None):
    """:func:`handwriting` for the images whose ink touches their edge (``which (K, 1)``,
    else found here: :func:`edge_touching`), as a smaller batch of those alone; a batch
    where none does (MNIST, clean digits on paper) skips it altogether."""
    t = tf()
    which = edge_touching(x, h, w) if which is None else which
    localise = functools.partial(search_handwriting, x, h, w, which)
    return t.cond(t.shape(which)[0] > 0, localise, lambda: x)


def edge_touching(x, h, w):
    """The indices ``(K, 1)`` of the images that :func:`touches_edge`."""
    return tf().where(touches_edge(x, h, w))


def search_handwriting(x, h, w, which):
    """:func:`handwriting` for the images ``which (K, 1)`` of the batch ``x``, the others
    as they are."""
    return on_some(which, handwriting, x, x, h, w)
