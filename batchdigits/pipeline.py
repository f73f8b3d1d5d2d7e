"""The tf.data pipeline that streams a folder's files to the model.

paths -> parallel read + decode + normalise -> batch -> prefetch. Each element keeps
the index of its file in the (sorted) listing, so results join back to files. Elements
whose read or decode fails are dropped here (``ignore_errors``); the caller sees the gap
in the indices and handles that file alone (see :mod:`batchdigits.decode`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ._lazy import tf
from .decode import DEFAULT_MAX_PIXELS, decode_tf
from .preprocess import SIZE, normalize_batch, prepare


def normalized_batches(ds, to_image, batch_size: int, skip_failures: bool = False):
    """Elements ``(source, key)`` -> batches ``(keys, inputs (B, 28, 28, 1), found (B,))``.

    Per element, in parallel: ``to_image(source)`` (decode, augment, ...), then gray and
    shrink (``prepare``); per padded batch: the rest of the normalisation, vectorised
    (``normalize_batch``, which training calls directly on its equal-size batches). With
    ``skip_failures``, an element whose ``to_image`` fails is dropped: the caller sees the
    gap in its keys."""
    t = tf()

    def load(source, key):
        gray = prepare(to_image(source))
        return key, gray, t.shape(gray)

    def finish(keys, gray, sizes):
        inputs, found = normalize_batch(gray, sizes)
        return keys, inputs, found

    load = t.autograph.experimental.do_not_convert(load)
    finish = t.autograph.experimental.do_not_convert(finish)
    ds = ds.map(load, num_parallel_calls=t.data.AUTOTUNE, deterministic=True)
    if skip_failures:
        ds = ds.ignore_errors()
    ds = ds.padded_batch(batch_size)
    ds = ds.map(finish, num_parallel_calls=t.data.AUTOTUNE, deterministic=True)
    options = t.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False
    return ds.prefetch(t.data.AUTOTUNE).with_options(options)


#: Paths enter the pipeline this many at a time: the queue holds a few chunks, never the
#: whole listing, so memory does not grow with the folder.
PATH_CHUNK = 2048


def image_batches(full_paths: Sequence[str], batch_size: int, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Dataset of ``(indices int64 (B,), images float32 (B, 28, 28, 1), found bool (B,))``
    in file order; ``found`` is False for an image with no ink. Files that cannot be read
    or decoded are dropped (gaps in the indices). ``full_paths`` is read a chunk at a
    time, as the pipeline needs them (a lazy sequence works)."""
    t = tf()

    def chunk(number):
        start = int(number) * PATH_CHUNK
        stop = min(start + PATH_CHUNK, len(full_paths))
        # bytes: any file name, even one that is not valid UTF-8
        paths = [os.fsencode(full_paths[i]) for i in range(start, stop)]
        return t.constant(paths, t.string, [stop - start]), t.range(start, stop, dtype=t.int64)

    def paths_of(number):
        paths, indices = t.py_function(chunk, [number], [t.string, t.int64])
        return t.ensure_shape(paths, [None]), t.ensure_shape(indices, [None])

    chunks = -(-len(full_paths) // PATH_CHUNK)
    ds = t.data.Dataset.range(chunks).map(paths_of).unbatch()
    return normalized_batches(
        ds,
        lambda path: decode_tf(t.io.read_file(path), max_pixels),
        batch_size,
        skip_failures=True,
    )


def make_infer(model):
    """A compiled ``images -> probabilities`` function for batches of any size."""
    t = tf()
    spec = t.TensorSpec([None, SIZE, SIZE, 1], t.float32)

    @t.function(input_signature=[spec], reduce_retracing=True)
    def infer(images):
        return model(images, training=False)

    return infer


def compute_images_per_second(model, batch_size: int = 4096, repeats: int = 7) -> float:
    """The model's compute alone: a batch of random 28x28 inputs, in memory, through
    :func:`make_infer`; images/s of the median of ``repeats`` timed runs."""
    import statistics
    import time

    import numpy as np

    infer = make_infer(model)
    batch = (np.random.default_rng(0).random((batch_size, SIZE, SIZE, 1)) * 255).astype("float32")
    infer(batch)  # trace and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        infer(batch).numpy()
        times.append(time.perf_counter() - t0)
    return batch_size / statistics.median(times)
