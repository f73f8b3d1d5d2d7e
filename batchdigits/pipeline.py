"""The tf.data pipeline that streams a folder's files to the model.

paths -> parallel read + decode + normalise -> batch -> prefetch. Each element keeps
the index of its file in the (sorted) listing, so results join back to files. Elements
whose read or decode fails are dropped here (``ignore_errors``); the caller sees the gap
in the indices and handles that file alone (see :mod:`batchdigits.decode`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

from ._lazy import tf
from .decode import DEFAULT_MAX_PIXELS, decode_tf
from .preprocess import SIZE, normalize_batch, pad_batch, prepare


def prepared_batches(ds, to_image, batch_size: int, skip_failures: bool = False):
    """Elements ``(source, key)`` -> padded batches ``(keys, gray (B, H, W), sizes (B, 2))``.

    Per element, in parallel: ``to_image(source)`` (decode, ...), then gray and shrink
    (``prepare``), zero-padded into batches with each image's ``(h, w)``. The rest of the
    normalisation runs per batch in :func:`infer_prepared`, outside tf.data, so that every
    front end (this pipeline, Beam, the web page) runs it in the same compiled function and
    gets the same bits. With ``skip_failures``, an element whose ``to_image`` fails is
    dropped: the caller sees the gap in its keys."""
    t = tf()

    def load(source, key):
        gray = prepare(to_image(source))
        return key, gray, t.shape(gray)

    load = t.autograph.experimental.do_not_convert(load)
    ds = ds.map(load, num_parallel_calls=t.data.AUTOTUNE, deterministic=True)
    if skip_failures:
        ds = ds.ignore_errors()
    ds = ds.padded_batch(batch_size)
    options = t.data.Options()
    # Autotuning made the iterator idle 0.5-2 s before its end in about half the runs.
    options.autotune.enabled = False
    options.experimental_optimization.apply_default_optimizations = False
    return ds.prefetch(t.data.AUTOTUNE).with_options(options)


#: Paths enter the pipeline this many at a time: the queue holds a few chunks, never the
#: whole listing, so memory does not grow with the folder.
PATH_CHUNK = 2048


def image_batches(full_paths: Sequence[str], batch_size: int, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Dataset of ``(indices int64 (B,), gray (B, H, W), sizes (B, 2))`` in file order,
    for :func:`infer_prepared`. Files that cannot be read or decoded are dropped (gaps in
    the indices). ``full_paths`` is read a chunk at a time, as the pipeline needs them (a
    lazy sequence works)."""
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
    return prepared_batches(
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


# --------------------------------------------------------------------------- one file at a time
# The same decode and normalisation as the tf.data pipeline, for front ends that get files
# one by one (the Beam engine, the web page): a file's bytes -> its gray working image
# (per file), then a list of those -> model inputs and probabilities (batched).


@functools.lru_cache(maxsize=4)
def _decode_prepare(max_pixels: int):
    t = tf()

    @t.function(input_signature=[t.TensorSpec([], t.string)], autograph=False)
    def run(contents):
        return prepare(decode_tf(contents, max_pixels))

    return run


@functools.lru_cache(maxsize=1)
def _prepare_pixels():
    t = tf()

    @t.function(input_signature=[t.TensorSpec([None, None, None], t.uint8)], autograph=False)
    def run(pixels):
        return prepare(pixels)

    return run


@functools.lru_cache(maxsize=1)
def _normalize():
    t = tf()
    specs = [t.TensorSpec([None, None, None], t.float32), t.TensorSpec([None, 2], t.int32)]
    return t.function(normalize_batch, input_signature=specs, autograph=False)


def prepare_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS):
    """One file's contents -> its gray working image ``float32 (h, w)`` (``prepare``),
    decoded by the pipeline's TensorFlow decoder or, where that refuses, by Pillow, as in
    the local engine. Raises :class:`~batchdigits.decode.UnreadableImage` with the CSV's
    error text."""
    from .decode import read_bytes_with_pillow

    t = tf()
    try:
        return _decode_prepare(max_pixels)(t.constant(data)).numpy()
    # Refused or failed by the fast path: Pillow decides. (Some TensorFlow errors quote the
    # file's bytes, and then building the error message fails to decode them as UTF-8.)
    except (t.errors.OpError, UnicodeDecodeError):
        return prepare_pixels(read_bytes_with_pillow(data, max_pixels))


def prepare_pixels(pixels):
    """Decoded pixels ``uint8 (H, W, C)`` -> the gray working image ``float32 (h, w)``."""
    t = tf()
    return _prepare_pixels()(t.constant(pixels)).numpy()


def infer_prepared(gray, sizes, infer, batch_size: int):
    """A padded batch of gray working images ``(B, H, W)`` with their ``sizes (B, 2)`` ->
    ``(inputs (B, 28, 28, 1), probabilities (B, 10), found (B,))`` as numpy arrays. The
    model always gets the full ``batch_size`` shape (zero rows added): its kernels, and so
    the last bits of the probabilities, can differ with the batch shape, and a file's row
    must not depend on how many files share its batch."""
    t = tf()
    inputs, found = _normalize()(t.convert_to_tensor(gray), t.convert_to_tensor(sizes))
    n = int(inputs.shape[0])
    padded = t.pad(inputs, [[0, max(batch_size - n, 0)], [0, 0], [0, 0], [0, 0]])
    return inputs.numpy(), infer(padded).numpy()[:n], found.numpy()


def normalize_and_infer(grays, infer, batch_size: int):
    """Gray working images (``prepare_bytes``) -> ``(inputs (N, 28, 28, 1), probabilities
    (N, 10), found (N,))`` as numpy arrays, ``batch_size`` images per padded batch
    (:func:`infer_prepared`)."""
    import numpy as np

    results = [
        infer_prepared(*pad_batch(grays[start : start + batch_size]), infer, batch_size)
        for start in range(0, len(grays), batch_size)
    ]
    if not results:
        return np.zeros((0, SIZE, SIZE, 1), np.float32), np.zeros((0, 10), np.float32), []
    return tuple(np.concatenate(parts) for parts in zip(*results, strict=True))
