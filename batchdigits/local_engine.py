"""``--engine local`` (the default): list the folder, stream its files through tf.data on
this machine (:meth:`batchdigits.inference.Inference.rows`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from .files import Listing, find_images
from .inference import Inference
from .options import PredictOptions
from .output import Row, csv_path


class LocalEngine:
    label = "predicting"

    def __init__(self, listing: Listing, inference: Inference):
        self.listing = listing
        self.inference = inference
        self.model = inference.name
        self.fingerprint = inference.fingerprint
        self.threshold = inference.threshold

    def rows(self, paths: Sequence[str] | None = None) -> Iterator[list[Row]]:
        listing = self.listing if paths is None else Listing(self.listing.root, list(paths))
        return self.inference.rows(listing)

    def describe(self, summary) -> None:
        summary.skipped = self.listing.skipped
        escaped = [csv_path(p) for p in self.listing.paths if csv_path(p) != p]
        summary.escaped_names = len(escaped)
        summary.escaped_examples = escaped[:5]
        summary.unreadable_folders = self.listing.unreadable_folders


def open_engine(
    input_dir: str | os.PathLike, output: str | os.PathLike, options: PredictOptions
) -> LocalEngine:
    """List ``input_dir`` (never the output itself) and load the model."""
    exclude = frozenset({os.fspath(output)})
    listing = find_images(input_dir, options.recursive, exclude=exclude)
    return LocalEngine(listing, Inference.open(options))
