"""The engines a run can use, behind one interface (:class:`Engine`): ``local`` (tf.data
on this machine, :mod:`batchdigits.run.local`) and ``beam`` (Apache Beam,
:mod:`batchdigits.run.beam`), named once in :data:`batchdigits.options.ENGINES`."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from batchdigits.imaging.files import Listing
from batchdigits.options import ENGINES, PredictOptions
from batchdigits.rows import Row

#: Rows are written and counted this many at a time.
CHUNK = 1024


class Engine(Protocol):
    """What the driver needs of an engine (``local_engine``, ``beam_engine``)."""

    label: str  # for the progress display
    listing: Listing | None  # the files, when the engine lists them up front
    model_name: str  # the model as rows and summaries name it
    fingerprint: str
    threshold: float

    def rows(self, paths: Sequence[str] | None = None) -> Iterator[list[Row]]:
        """The rows of all files (or of ``paths`` of the listing), in path order."""

    def describe(self, summary) -> None:
        """Fill in what the engine knows about the folder (input, skipped files, ...)."""


def open_engine(
    input_dir: str | os.PathLike, output: str | os.PathLike, options: PredictOptions
) -> Engine:
    """The engine ``options.engine`` names, opened on ``input_dir``: the input and the
    model are checked here, before anything is written."""
    return importlib.import_module(ENGINES[options.engine]).open_engine(input_dir, output, options)


def chunks(items: Iterable, size: int) -> Iterator[list]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
