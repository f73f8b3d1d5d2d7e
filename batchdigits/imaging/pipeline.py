"""The tf.data pipeline that streams a folder's files to the model.

paths -> parallel read + decode + normalise -> batch -> prefetch. Each element keeps
the index of its file in the (sorted) listing, so results join back to files. Elements
whose read or decode fails are dropped here (``ignore_errors``); the caller sees the gap
in the indices and handles that file alone (see :mod:`batchdigits.imaging.decode`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from batchdigits.imaging.decode import DEFAULT_MAX_PIXELS, decode_tf
from batchdigits.imaging.preprocess import prepare
from batchdigits.runtime.lazy import tf


def prepared_batches(ds, to_image, batch_size: int, skip_failures: bool = False):
    """Elements ``(source, key)`` -> padded batches ``(keys, gray (B, H, W), sizes (B, 2))``.

    Per element, in parallel: ``to_image(source)`` (decode, ...), then gray and shrink
    (``prepare``), zero-padded into batches with each image's ``(h, w)``. The rest of the
    normalisation runs per batch in :meth:`Inference.infer_batch
    <batchdigits.model.inference.Inference.infer_batch>`, outside tf.data, so that every
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
    for ``Inference.infer_batch``. Files that cannot be read or decoded are dropped (gaps
    in the indices). ``full_paths`` is read a chunk at a time, as the pipeline needs them (a
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
