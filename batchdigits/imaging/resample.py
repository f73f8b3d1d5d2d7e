"""Resampling helpers of the normalisation, vectorised over a padded batch: bilinear and
area weights as matrices (one product each way), box-filter shrinking, the linear
extension of a coarse grid, and a separable Gaussian blur."""

from __future__ import annotations

import functools

from batchdigits.runtime.lazy import tf

#: After the polarity decision (made on the image at up to WORK_SIZE, where a thin stroke
#: still stands out), larger images are box-filtered to this longer side for the other
#: steps: every later analysis copy samples at most 64 points a side and the digit ends
#: up 20 px long, so they read the same at a sixth of the work of 160 px.
CLEAN_SIZE = 64


def per_image(v):
    return v[:, None, None]


def on_some(which, fn, into, *args):
    """``fn(*args)`` on the images ``which (K, 1)`` of a batch only, gathered into a
    smaller batch, and written into ``into`` at their places (``fn`` may return a tuple,
    with a tuple of ``into``); the other images keep ``into``'s. Each image's result is
    its own, so the bits are those of ``fn`` on the whole batch."""
    t = tf()
    part = fn(*(t.gather_nd(a, which) for a in args))
    return t.nest.map_structure(lambda a, b: t.tensor_scatter_nd_update(a, which, b), into, part)


def bilinear_weights(pos, n):
    """Sample positions ``pos (B, S)`` in pixels -> ``(B, S, n)`` weights over ``n``
    pixels (bilinear: two neighbours). A sample outside ``[0, n - 1]`` gets no weight, so
    it reads 0."""
    t = tf()
    pos = pos[..., None]
    inside = t.cast((pos >= 0.0) & (pos <= t.cast(n - 1, t.float32)), t.float32)
    # the tent 1 - |pos - j| over the pixels j: 1 - lerp and lerp on the two neighbours
    return t.nn.relu(1.0 - t.abs(pos - t.range(n, dtype=t.float32))) * inside


def pooled(weights, pool: int):
    """Average each run of ``pool`` consecutive samples: ``(B, S*pool, n) -> (B, S, n)``."""
    if pool == 1:
        return weights
    t = tf()
    shape = t.shape(weights)
    return t.reduce_mean(t.reshape(weights, [shape[0], -1, pool, shape[2]]), axis=2)


def _by_extent(weights, extent):
    """``weights(extents) -> (K, S, n)`` computed once per distinct extent in ``extent
    (B,)`` and gathered back to ``(B, S, n)``: a batch of same-sized images (the usual
    case) builds one matrix instead of one per image, with the same values."""
    t = tf()
    distinct, index = t.unique(extent)
    return t.gather(weights(distinct), index)


def apply_weights(rows, x, cols):
    """Separable resampling as two batched matrix products: ``rows (B, S, H) @ x (B, H, W)
    @ cols (B, T, W)^T -> (B, S, T)``. The same result as sampling each output pixel
    (bilinear is separable), but a few large products instead of a gather per sample."""
    t = tf()
    return t.linalg.matmul(t.linalg.matmul(rows, x), cols, transpose_b=True)


def resample_grid(x, h, w, size: int, pool: int = 1):
    """Each image's valid region resampled (bilinear) to ``size * pool`` samples a side,
    corner to corner, then averaged over ``pool x pool`` blocks: ``(B, size, size)``."""
    t = tf()
    steps = t.range(size * pool, dtype=t.float32)[None, :] / float(max(size * pool - 1, 1))

    def weights(extent, n):
        return _by_extent(
            lambda e: pooled(bilinear_weights(steps * t.cast(e - 1, t.float32)[:, None], n), pool),
            extent,
        )

    return apply_weights(weights(h, t.shape(x)[1]), x, weights(w, t.shape(x)[2]))


def spread_back(grid, h, w, shape, interpolation: str, border: int = 0):
    """A ``(B, g, g)`` grid stretched back over each image's valid region (pixel centres
    aligned on the inner grid's cells; beyond the grid's edge its edge value): ``(B, H,
    W)``, ``interpolation`` is ``"BILINEAR"`` or ``"NEAREST"``. A grid with a ``border``
    of extra cells on each side (:func:`pad_linear`) is read into that border instead."""
    t = tf()
    g = t.shape(grid)[1]

    def weights_of(extent, n):
        scale = t.cast(g - 2 * border, t.float32) / t.cast(extent, t.float32)
        pos = (t.range(n, dtype=t.float32)[None, :] + 0.5) * scale[:, None] - 0.5 + border
        pos = t.clip_by_value(pos, 0.0, t.cast(g - 1, t.float32))
        if interpolation == "NEAREST":
            return t.one_hot(t.cast(t.floor(pos + 0.5), t.int32), g)
        return bilinear_weights(pos, g)

    def weights(extent, n):
        return _by_extent(lambda e: weights_of(e, n), extent)

    return apply_weights(weights(h, shape[0]), grid, weights(w, shape[1]))


def shrunk(x, h, w):
    """Each image whose longer side exceeds :data:`CLEAN_SIZE` box-filtered to that side
    (aspect kept; each output pixel the mean of 4x4 bilinear samples over its area), the
    others as they are, in ``(B, CLEAN_SIZE, CLEAN_SIZE)``; with the new ``h, w``. A batch
    of small images (MNIST) skips it whole."""
    t = tf()
    size = CLEAN_SIZE
    longer = t.maximum(h, w)
    factor = t.minimum(size / t.cast(longer, t.float32), 1.0)
    new_h, new_w = (
        t.maximum(t.cast(t.round(t.cast(v, t.float32) * factor), t.int32), 1) for v in (h, w)
    )

    def weights(extent, new, n):
        def of(key):
            e, k = t.cast(key // 4096, t.float32), key % 4096
            step = (e / t.cast(k, t.float32))[:, None] / 4.0
            pos = (t.range(4 * size, dtype=t.float32)[None, :] + 0.5) * step - 0.5
            pos = t.clip_by_value(pos, 0.0, e[:, None] - 1.0)  # edge samples: edge pixels
            rows = t.cast(t.range(size)[None, :] < k[:, None], t.float32)[..., None]
            return pooled(bilinear_weights(pos, n), 4) * rows

        return _by_extent(of, extent * 4096 + new)

    def shrink():
        H, W = t.shape(x)[1], t.shape(x)[2]
        out = apply_weights(weights(h, new_h, H), x, weights(w, new_w, W))
        kept = x[:, :size, :size]
        kept = t.pad(kept, [[0, 0], [0, size - t.shape(kept)[1]], [0, size - t.shape(kept)[2]]])
        small = per_image(longer <= size)
        return t.where(small, kept, out), new_h, new_w

    return t.cond(t.reduce_max(longer) > size, shrink, lambda: (x, h, w))


def pad_linear(grid):
    """``(B, n, n) -> (B, n + 2, n + 2)``: one more cell on each side, extrapolated
    linearly from the two cells inside it (a slope goes on as a slope)."""
    return apply_weights(_extend(grid.shape[1])[None], grid, _extend(grid.shape[2])[None])


@functools.lru_cache(maxsize=8)
def _extension_matrix(n: int):
    """``(n + 2, n)``: the identity with one row more at each end, 2 x the edge cell minus
    the one inside it (numpy)."""
    import numpy as np

    m = np.zeros((n + 2, n), np.float32)
    m[1:-1] = np.eye(n)
    m[0, :2] = m[-1, -2:][::-1] = (2.0, -1.0)
    return m


def _extend(n: int):
    return tf().constant(_extension_matrix(n))


# --------------------------------------------------------------------------- steps 2-6


@functools.lru_cache(maxsize=4)
def _blur_matrix(n: int, sigma: float):
    """``(n, n)`` matrix of a 1-D Gaussian blur with mirrored edges (numpy)."""
    import numpy as np

    i = np.arange(n)
    out = np.zeros((n, n))
    for j in range(-3 * n, 4 * n):  # every mirrored copy of every source pixel
        k = j % (2 * n)
        source = k if k < n else 2 * n - 1 - k
        np.add.at(out, (i, np.full(n, source)), np.exp(-((i - j) ** 2) / (2 * sigma**2)))
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def gaussian_blur(x, n: int, sigma: float):
    """``(B, n, n)`` blurred by a wide Gaussian: two products with one constant matrix."""
    t = tf()
    g = t.constant(_blur_matrix(n, sigma))
    return t.linalg.matmul(t.linalg.matmul(g[None], x), g[None], transpose_b=True)
