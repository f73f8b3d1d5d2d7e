"""``predict --engine beam``: the same job on Apache Beam, so a runner (Dataflow, Flink,
Spark) can scale it out; locally it runs on Beam's in-process runner.

match files (``fileio``, so ``gs://`` and other Beam filesystems work) -> read bytes ->
decode + gray working image (:func:`pipeline.prepare_bytes`, the local engine's decoder
and Pillow fallback) -> ``RunInference`` with a keyed handler that loads the model once
per worker and runs the batched normalisation + model (:func:`pipeline.normalize_and_infer`)
-> rows. Decode and inference failures go to Beam's failure outputs and become error rows,
as in the local engine. Rows are written as shards to a temporary location; the driver
merges them sorted by path into one CSV, published atomically like the local engine's.

Nothing here is imported unless ``--engine beam`` is asked for.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence

from .decode import DEFAULT_MAX_PIXELS, UnreadableImage
from .errors import BatchDigitsError, ExitCode
from .files import check_input_folder, is_image_name
from .output import AtomicCsvWriter, Row, check_output_path
from .predict import (
    PredictSummary,
    _row,
    claim_output,
    resolve_review_threshold,
    write_cell_rows,
)
from .progress import NullReporter, Reporter
from .state import model_fingerprint

METRICS_NAMESPACE = "batchdigits"
#: Batching for RunInference on CPUs: big enough to amortise the per-batch graph, small
#: enough that a worker's batch fits in cache-friendly memory.
DEFAULT_MIN_BATCH = 32
DEFAULT_MAX_BATCH = 256


class BeamNotInstalledError(BatchDigitsError):
    """``--engine beam`` without the optional extra."""

    exit_code = ExitCode.USAGE


class BeamOptionError(BatchDigitsError):
    """A ``--beam-option`` that is not ``KEY=VALUE``."""

    exit_code = ExitCode.USAGE


def _import_beam():
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


# --------------------------------------------------------------------------- worker side


def _keyed_handler(model: str | None, threshold: float, min_batch: int, max_batch: int):
    """A keyed RunInference handler: ``(path, gray image)`` -> ``(path, Row cells)``."""
    beam = _import_beam()
    from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler

    class DigitModelHandler(ModelHandler):
        def __init__(self):
            super().__init__(min_batch_size=min_batch, max_batch_size=max_batch)
            self._inferences = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "inferences")

        def load_model(self):
            from .model import load_model
            from .pipeline import make_infer

            return make_infer(load_model(_local_copy(model)))

        def run_inference(self, batch, infer, inference_args=None):
            from .pipeline import normalize_and_infer

            _, probabilities, found = normalize_and_infer(list(batch), infer, max_batch)
            self._inferences.inc(len(batch))
            return list(zip(probabilities, found, strict=True))

        def get_metrics_namespace(self):
            return METRICS_NAMESPACE

    return KeyedModelHandler(DigitModelHandler())


def _local_copy(model: str | None) -> str | None:
    """A model on a Beam filesystem (``gs://...``) copied to a local temporary file once
    per worker process; local paths and the shipped model (None) as they are."""
    if model is None or "://" not in model:
        return model
    from apache_beam.io.filesystems import FileSystems

    target = os.path.join(tempfile.gettempdir(), f"batchdigits-{abs(hash(model))}.keras")
    if not os.path.exists(target):
        with FileSystems.open(model) as src, open(target + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(target + ".part", target)
    return target


def _decode(element, max_pixels: int):
    """``(path, bytes)`` -> ``(path, gray)``; raises UnreadableImage for a bad file."""
    import threading

    import apache_beam as beam

    from .pipeline import prepare_bytes

    # Which worker threads did the work (the tests check there is more than one).
    name = f"worker {threading.current_thread().name}"
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, name).inc()
    rel, data = element
    return rel, prepare_bytes(data, max_pixels)


def _error_line(rel: str, reason: str, probabilities: bool) -> str:
    return _shard_line(rel, Row(path=rel, error=reason), probabilities)


def _shard_line(rel: str, row: Row, probabilities: bool) -> str:
    """One row as a shard line: JSON ``[sort key, cells...]`` (any file name survives)."""
    return json.dumps([rel, *row.cells(probabilities)])


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


# --------------------------------------------------------------------------- driver side


def _build(p, root: str, pattern: str, settings: dict, shards: str):
    """The pipeline: files -> rows as JSON lines in shards under ``shards``."""
    beam = _import_beam()
    from apache_beam.io import fileio
    from apache_beam.ml.inference.base import RunInference

    max_pixels, threshold, probabilities = (
        settings["max_pixels"],
        settings["threshold"],
        settings["probabilities"],
    )
    exclude = settings["exclude"]
    skipped = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "skipped")

    def keep(meta) -> bool:
        # The local listing's rules: nothing under a hidden folder (not even counted);
        # hidden files and non-images counted as skipped; the output itself left out.
        rel = _relative(meta.path, root)
        if not rel:
            return False
        *folders, name = rel.split("/")
        if any(part.startswith(".") for part in folders):
            return False
        if name.startswith(".") or not is_image_name(name):
            skipped.inc()
            return False
        return os.path.realpath(meta.path) != exclude

    files = (
        p
        | "Match" >> fileio.MatchFiles(pattern, empty_match_treatment="ALLOW")
        | "Images only" >> beam.Filter(keep)
        | "Spread" >> beam.Reshuffle()
        | "Read" >> fileio.ReadMatches()
        | "Bytes" >> beam.Map(lambda f: (_relative(f.metadata.path, root), f.read()))
    )
    decoded, bad_files = files | "Decode" >> beam.Map(_decode, max_pixels).with_exception_handling(
        use_subprocess=False
    )
    handler = _keyed_handler(
        settings["model"], threshold, settings["min_batch"], settings["max_batch"]
    )
    predicted, failed = decoded | "Infer" >> RunInference(handler).with_exception_handling()

    def to_line(element) -> str:
        rel, (probs, found) = element
        return _shard_line(rel, _row(rel, probs, bool(found), threshold), probabilities)

    def failed_file(element) -> str:
        (rel, _data), (exc_type, exc_repr, _trace) = element
        return _error_line(rel, _failure_reason(exc_type, exc_repr), probabilities)

    def failed_batch(element) -> Iterator[str]:
        batch, (exc_type, _repr, _trace) = element
        for rel, _gray in batch:
            yield _error_line(rel, f"model failed ({exc_type.__name__})", probabilities)

    lines = (
        predicted | "Rows" >> beam.Map(to_line),
        bad_files | "Bad files" >> beam.Map(failed_file),
        failed.failed_inferences | "Failed batches" >> beam.FlatMap(failed_batch),
    )
    (
        lines
        | "All rows" >> beam.Flatten()
        | "Shards" >> beam.io.WriteToText(shards, file_name_suffix=".jsonl")
    )


def _sorted_lines(shard_paths: Iterable[str], scratch: str) -> Iterator[list]:
    """All shard rows in path order: each shard sorted alone into ``scratch``, then a
    streaming merge, so memory is one shard, not the whole CSV."""
    from apache_beam.io.filesystems import FileSystems

    sorted_files = []
    for i, path in enumerate(shard_paths):
        with FileSystems.open(path) as f:
            rows = [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line]
        rows.sort(key=lambda r: r[0])
        name = os.path.join(scratch, f"sorted-{i:05d}.jsonl")
        with open(name, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(r) + "\n" for r in rows)
        sorted_files.append(name)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open(n, encoding="utf-8")) for n in sorted_files]
        streams = [(json.loads(line) for line in f) for f in files]
        yield from heapq.merge(*streams, key=lambda r: r[0])


def predict_folder_beam(
    input_dir: str | os.PathLike,
    output: str | os.PathLike = "predictions.csv",
    model: str | os.PathLike | None = None,
    recursive: bool = True,
    reporter: Reporter | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    review_threshold: float | None = None,
    probabilities: bool = False,
    force: bool = False,
    wait_lock: float = 0.0,
    beam_options: Sequence[str] = (),
    min_batch_size: int = DEFAULT_MIN_BATCH,
    max_batch_size: int = DEFAULT_MAX_BATCH,
    metrics: dict | None = None,
) -> PredictSummary:
    """:func:`predict.predict_folder` on Apache Beam: same rows, same CSV.

    ``beam_options`` are ``KEY=VALUE`` pipeline options (``runner=DataflowRunner``,
    ``project=...``, ``temp_location=gs://...``); without a runner, Beam's in-process
    runner with one worker thread per core. ``metrics``, if given, receives Beam's
    counters (``inferences``, ``skipped``) and the worker threads used.
    """
    beam = _import_beam()
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    root = os.fspath(input_dir)
    flags = beam_flags(beam_options)
    if "://" not in root:
        check_input_folder(root)
        root = os.path.abspath(root)
    check_output_path(output)  # before the model check, as before; claim_output repeats it
    threshold = resolve_review_threshold(model, review_threshold)
    model_arg = os.fspath(model) if model is not None else None
    if model_arg is not None and "://" not in model_arg:
        from .model import load_model

        load_model(model_arg)  # a missing or bad model fails here, with its exit code
        model_arg = os.path.abspath(model_arg)
    summary = PredictSummary(
        input_dir=root,
        output=os.fspath(output),
        model=model_arg or "(shipped model)",
        model_fingerprint=model_fingerprint(model)
        if model_arg is None or "://" not in model_arg
        else "",
        review_threshold=threshold,
    )
    with claim_output(output, force, wait_lock):
        options = PipelineOptions(flags)
        given = options.get_all_options()
        temp_root = given.get("temp_location") or None
        with tempfile.TemporaryDirectory(prefix="batchdigits-beam-") as scratch:
            shards_dir = (
                FileSystems.join(temp_root, f"batchdigits-{os.getpid()}-{int(time.time())}")
                if temp_root
                else os.path.join(scratch, "shards")
            )
            settings = {
                "max_pixels": max_pixels,
                "threshold": threshold,
                "probabilities": probabilities,
                "model": model_arg,
                "min_batch": min_batch_size,
                "max_batch": max_batch_size,
                "exclude": os.path.realpath(os.fspath(output)),
            }
            pattern = FileSystems.join(root, "**" if recursive else "*")
            runner = None
            if not given.get("runner"):
                from apache_beam.runners.portability.fn_api_runner import FnApiRunner

                runner = FnApiRunner()
                options = PipelineOptions(
                    flags
                    + [
                        f"--direct_num_workers={os.cpu_count() or 2}",
                        "--direct_running_mode=multi_threading",
                    ]
                )
            reporter.start("predicting on Beam", None)
            try:
                t_stream = time.perf_counter()
                p = beam.Pipeline(runner=runner, options=options)
                _build(p, root, pattern, settings, FileSystems.join(shards_dir, "rows"))
                result = p.run()
                result.wait_until_finish()
                _collect_metrics(result, summary, metrics)
                shard_paths = [
                    m.path
                    for m in FileSystems.match([FileSystems.join(shards_dir, "rows*")])[
                        0
                    ].metadata_list
                ]
                with AtomicCsvWriter(output, probabilities) as writer:
                    rows = (line[1:] for line in _sorted_lines(shard_paths, scratch))
                    summary.found = write_cell_rows(writer, rows, summary, reporter)
                summary.stream_seconds = time.perf_counter() - t_stream
            finally:
                reporter.stop()
                if temp_root:
                    # best effort: a leftover temp folder is harmless
                    with contextlib.suppress(Exception):
                        FileSystems.delete([shards_dir])
    summary.predicted = summary.found - summary.errors
    summary.seconds = time.perf_counter() - t0
    return summary


def _collect_metrics(result, summary: PredictSummary, metrics: dict | None) -> None:
    from apache_beam.metrics.metric import MetricsFilter

    counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    values: dict = {}
    for counter in counters["counters"]:
        name = counter.key.metric.name
        values[name] = values.get(name, 0) + (counter.committed or counter.attempted or 0)
    summary.skipped = int(values.get("skipped", 0))
    if metrics is not None:
        metrics.update(values)
