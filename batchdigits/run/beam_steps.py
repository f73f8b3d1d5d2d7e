"""The Beam pipeline's steps (``predict --engine beam``): options, listing rules, reading
and decoding, the keyed RunInference handler, and rows as lines. The workers run these;
:mod:`batchdigits.run.beam` builds the pipeline from them and drives it."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace

from batchdigits.errors import BatchDigitsError, ExitCode
from batchdigits.imaging.decode import UnreadableImage
from batchdigits.imaging.files import path_kind
from batchdigits.model.inference import Inference
from batchdigits.options import PredictOptions
from batchdigits.rows import Row

METRICS_NAMESPACE = "batchdigits"


class BeamNotInstalledError(BatchDigitsError):
    """``--engine beam`` without the optional extra."""

    exit_code = ExitCode.USAGE


class BeamOptionError(BatchDigitsError):
    """A ``--beam-option`` that is not ``KEY=VALUE``."""

    exit_code = ExitCode.USAGE


def import_beam():
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # Beam warns at import about optional GCP libraries
    try:
        import apache_beam
    except ImportError as exc:
        raise BeamNotInstalledError(
            "--engine beam needs Apache Beam, which is an optional extra: "
            "pip install 'batchdigits[beam]'"
        ) from exc
    finally:
        root.setLevel(level)
    return apache_beam


def beam_flags(options: Sequence[str]) -> list[str]:
    """``["runner=DataflowRunner", "project=p"]`` -> ``["--runner=DataflowRunner", ...]``."""
    flags = []
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise BeamOptionError(
                f"--beam-option {option!r} is not KEY=VALUE "
                "(e.g. --beam-option runner=DataflowRunner)"
            )
        flags.append(f"--{key}={value}")
    return flags


def _relative(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` with ``/`` separators, or None if outside it."""
    root = root.rstrip("/\\") + "/"
    path = path.replace(os.sep, "/") if "://" not in path else path
    root = root.replace(os.sep, "/") if "://" not in root else root
    return path[len(root) :] if path.startswith(root) else None


def keyed_handler(options: PredictOptions):
    """A keyed RunInference handler: ``(name, gray image)`` -> ``(name, row)`` (the row's
    path filled in later), with the local engine's model-call shape."""
    beam = import_beam()
    from apache_beam.ml.inference import base

    _let_beam_read_memory(base)

    class DigitModelHandler(base.ModelHandler):
        def __init__(self):
            super().__init__(
                min_batch_size=options.beam.smallest_batch,
                max_batch_size=options.beam.max_batch,
            )
            self._inferences = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "inferences")

        def load_model(self):
            return Inference.open(replace(options, model=_local_copy(options.model)))

        def run_inference(self, batch, inference, inference_args=None):
            got = inference.predict_prepared(list(batch))
            self._inferences.inc(len(batch))
            return [got.row(k, "") for k in range(len(batch))]

        def get_metrics_namespace(self):
            return METRICS_NAMESPACE

    return base.KeyedModelHandler(DigitModelHandler())


def _let_beam_read_memory(base) -> None:
    """Beam (2.7x) imports the standard ``resource`` module in one ``try`` with its
    torch-only model manager, so without torch it takes ``resource`` for missing and logs
    "Resource module is not available for current platform" twice a run (cron mail).
    Where ``resource`` exists, hand it back; once Beam imports it alone this does nothing."""
    if getattr(base, "resource", False) is None:
        try:
            import resource
        except ImportError:  # not a POSIX system: Beam's warning is true there
            return
        base.resource = resource


_copies: dict[str, str] = {}
_copies_lock = threading.Lock()


def _local_copy(model: str | None) -> str | None:
    """A model on a Beam filesystem (``gs://...``) copied once per worker process into a
    private temporary folder (mode 0700, removed when the process ends); local paths and
    the shipped model (None) as they are."""
    if model is None or "://" not in model:
        return model
    from apache_beam.io.filesystems import FileSystems

    with _copies_lock:
        if model not in _copies:
            folder = tempfile.mkdtemp(prefix="batchdigits-model-")
            atexit.register(shutil.rmtree, folder, True)
            target = os.path.join(folder, "model.keras")
            with FileSystems.open(model) as src, open(target, "xb") as dst:
                shutil.copyfileobj(src, dst)
            _copies[model] = target
        return _copies[model]


def decode_file(element, max_pixels: int):
    """``(name, bytes)`` -> ``(name, gray)``; raises UnreadableImage for a bad file."""
    import threading

    import apache_beam as beam

    from batchdigits.imaging.one_file import prepare_bytes

    # Which worker threads did the work (the tests check there is more than one).
    name = f"worker {threading.current_thread().name}"
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, name).inc()
    key, data = element
    return key, prepare_bytes(data, max_pixels)


def _line(row: Row) -> str:
    """One row as a shard line: JSON ``[path, prediction, confidence, needs_review,
    error, probabilities]``; the path first, as the merge's sort key."""
    p = None if row.probabilities is None else [float(v) for v in row.probabilities]
    return json.dumps([row.path, row.prediction, row.confidence, row.needs_review, row.error, p])


def from_line(values: list, number: bool = False) -> Row:
    """A shard line's row (``number``: a ``--numbers`` run's)."""
    path, prediction, confidence, needs_review, error, probabilities = values
    return Row(path, prediction, confidence, error, needs_review, probabilities, number=number)


def _failure_reason(exc_type: type, exc_repr: str) -> str:
    """The CSV error text for a failure Beam recorded as (type, repr, traceback): an
    UnreadableImage's own message (its repr is ``UnreadableImage('message')``), else the
    exception's type."""
    import ast

    if issubclass(exc_type, UnreadableImage):
        try:
            return str(ast.literal_eval(exc_repr[len(exc_type.__name__) + 1 : -1]))
        except (ValueError, SyntaxError):
            pass
    return f"cannot process image ({exc_type.__name__})"


def keep_rule(root: str, exclude: str, skipped):
    """The local listing's rules (:func:`~batchdigits.imaging.files.path_kind`) as a
    filter on matched files: nothing under a hidden folder (not even counted); hidden
    files and non-images counted as skipped; the output itself left out."""

    def keep(meta) -> bool:
        rel = _relative(meta.path, root)
        kind = path_kind(rel) if rel else "hidden folder"
        if kind == "skipped":
            skipped.inc()
        return kind == "image" and os.path.realpath(meta.path) != exclude

    return keep


def read_file(root: str):
    def read(f) -> tuple[bytes, bytes]:
        return os.fsencode(_relative(f.metadata.path, root)), f.read()

    return read


def to_lines(predicted, bad_files, failed, beam):
    """Rows of the predicted files, the unreadable ones and the failed batches, as lines."""

    def to_line(element) -> str:
        key, row = element
        return _line(replace(row, path=os.fsdecode(key)))

    def failed_file(element) -> str:
        (key, _data), (exc_type, exc_repr, _trace) = element
        return _line(Row(os.fsdecode(key), error=_failure_reason(exc_type, exc_repr)))

    def failed_batch(element) -> Iterator[str]:
        batch, (exc_type, _repr, _trace) = element
        for key, _gray in batch:
            yield _line(Row(os.fsdecode(key), error=f"model failed ({exc_type.__name__})"))

    return (
        predicted | "Rows" >> beam.Map(to_line),
        bad_files | "Bad files" >> beam.Map(failed_file),
        failed.failed_inferences | "Failed batches" >> beam.FlatMap(failed_batch),
    )
