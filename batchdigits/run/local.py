"""``--engine local`` (the default): list the folder, stream its files through tf.data on
this machine (:meth:`batchdigits.model.inference.Inference.rows`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from batchdigits.imaging.files import Listing, find_images
from batchdigits.model.store import ModelRef
from batchdigits.options import PredictOptions
from batchdigits.rows import Row, csv_path


class LocalEngine:
    """The model is loaded (and TensorFlow imported) only when there is something to
    predict: an ``--incremental`` run that finds nothing new never pays for it."""

    label = "predicting"

    def __init__(self, listing: Listing, options: PredictOptions):
        self._ref = ModelRef(
            options.model, numbers=options.numbers
        )  # a missing model fails before anything is written
        self.listing = listing
        self.model_name = self._ref.name
        self.fingerprint = self._ref.fingerprint
        self.threshold = self._ref.threshold(options.review_threshold)
        self._options = options  # the user's threshold, or None: the card decides per row
        self._inference = None

    def rows(self, paths: Sequence[str] | None = None) -> Iterator[list[Row]]:
        listing = self.listing if paths is None else Listing(self.listing.root, list(paths))
        if not listing.paths:
            return iter(())
        if self._inference is None:
            from batchdigits.model.inference import (
                Inference,  # numpy, TensorFlow: only when predicting
            )

            self._inference = Inference.open(self._options, self._ref)
        return self._inference.rows(listing)

    def describe(self, summary) -> None:
        summary.skipped = self.listing.skipped
        escaped = [c for p in self.listing.paths if (c := csv_path(p)) != p]
        summary.escaped_names = len(escaped)
        summary.escaped_examples = escaped[:5]
        summary.unreadable_folders = self.listing.unreadable_folders


def open_engine(
    input_dir: str | os.PathLike, output: str | os.PathLike, options: PredictOptions
) -> LocalEngine:
    """List ``input_dir`` (never the output itself); the model is loaded when needed."""
    exclude = frozenset({os.fspath(output)})
    listing = find_images(input_dir, options.recursive, exclude=exclude)
    return LocalEngine(listing, options)
