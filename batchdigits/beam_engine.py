"""``predict --engine beam``: the same job on Apache Beam, so a runner (Dataflow, Flink,
Spark) can scale it out; locally it runs on Beam's in-process runner.

match files (``fileio``, so ``gs://`` and other Beam filesystems work) -> read bytes ->
decode + gray working image (:func:`inference.prepare_bytes`, the local engine's decoder
and Pillow fallback) -> ``RunInference`` with a keyed handler that opens the model once
per worker (:class:`inference.Inference`, with the local engine's batch shape, so the
rows are the same bits for any ``--batch-size``) -> rows. Decode and inference failures
go to Beam's failure outputs and become error rows, as in the local engine. Rows are
written as shards to a temporary location, then merged sorted by path and handed to the
driver (:mod:`batchdigits.predict`), which writes the CSV as for the local engine.
File names travel through Beam as bytes: any name, even one not valid UTF-8, survives.

Nothing here is imported unless ``--engine beam`` is asked for.
"""

from __future__ import annotations

import atexit
import contextlib
import heapq
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

from .decode import UnreadableImage
from .errors import BatchDigitsError, ExitCode
from .files import check_input_folder, is_image_name
from .inference import Inference
from .model import model_fingerprint, model_name, review_threshold
from .options import PredictOptions
from .output import Row
from .predict import CHUNK, chunks

METRICS_NAMESPACE = "batchdigits"


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


def _keyed_handler(options: PredictOptions):
    """A keyed RunInference handler: ``(name, gray image)`` -> ``(name, (probabilities,
    has_digit))``, with the local engine's model-call shape."""
    beam = _import_beam()
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
            _inputs, probabilities, has_digit = inference.predict_prepared(list(batch))
            self._inferences.inc(len(batch))
            return list(zip(probabilities, has_digit, strict=True))

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


def _decode(element, max_pixels: int):
    """``(name, bytes)`` -> ``(name, gray)``; raises UnreadableImage for a bad file."""
    import threading

    import apache_beam as beam

    from .inference import prepare_bytes

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


def _from_line(values: list) -> Row:
    path, prediction, confidence, needs_review, error, probabilities = values
    return Row(path, prediction, confidence, error, needs_review, probabilities)


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


def _keep(root: str, exclude: str, skipped):
    """The local listing's rules as a filter on matched files: nothing under a hidden
    folder (not even counted); hidden files and non-images counted as skipped; the
    output itself left out."""

    def keep(meta) -> bool:
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

    return keep


def _read(root: str):
    def read(f) -> tuple[bytes, bytes]:
        return os.fsencode(_relative(f.metadata.path, root)), f.read()

    return read


def _to_lines(predicted, bad_files, failed, threshold: float, beam):
    """Rows of the predicted files, the unreadable ones and the failed batches, as lines."""
    from .output import make_row

    def to_line(element) -> str:
        key, (probabilities, has_digit) = element
        return _line(make_row(os.fsdecode(key), probabilities, bool(has_digit), threshold))

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


class BeamEngine:
    """The Beam pipeline as an engine: :meth:`rows` runs it and yields the merged rows."""

    label = "predicting on Beam"
    listing = None  # Beam lists the files itself, on its workers

    def __init__(self, root: str, output: str, options: PredictOptions, flags: list[str]):
        self.root, self.output, self.options, self.flags = root, output, options, flags
        self.model = options.model or model_name(None)
        self.fingerprint = "" if "://" in self.model else model_fingerprint(options.model)
        self.threshold = options.review_threshold
        self.counters: dict = {}

    def rows(self, paths: Sequence[str] | None = None) -> Iterator[list[Row]]:
        from apache_beam.io.filesystems import FileSystems

        with tempfile.TemporaryDirectory(prefix="batchdigits-beam-") as scratch:
            shards_dir = self._shards_dir(scratch)
            try:
                self._run(FileSystems.join(shards_dir, "rows"))
                pattern = FileSystems.join(shards_dir, "rows*")
                found = FileSystems.match([pattern])[0].metadata_list
                merged = _sorted_lines((m.path for m in found), scratch)
                yield from chunks((_from_line(line) for line in merged), CHUNK)
            finally:
                if not shards_dir.startswith(scratch):  # best effort: a leftover is harmless
                    with contextlib.suppress(Exception):
                        FileSystems.delete([shards_dir])

    def describe(self, summary) -> None:
        summary.input_dir = self.root
        summary.skipped = int(self.counters.get("skipped", 0))
        summary.engine_counters = dict(self.counters)

    def _shards_dir(self, scratch: str) -> str:
        from apache_beam.io.filesystems import FileSystems

        temp_root = self._pipeline_options().get_all_options().get("temp_location")
        if not temp_root:
            return os.path.join(scratch, "shards")
        return FileSystems.join(temp_root, f"batchdigits-{os.getpid()}-{int(time.time())}")

    def _pipeline_options(self, runner_flags: Sequence[str] = ()):
        from apache_beam.options.pipeline_options import PipelineOptions

        return PipelineOptions(self.flags + list(runner_flags))

    def _run(self, shard_prefix: str) -> None:
        """Run the pipeline to its end: Beam's in-process runner, one worker thread per
        core, unless ``--beam-option runner=...`` names another."""
        beam = _import_beam()
        runner, extra = None, []
        if not self._pipeline_options().get_all_options().get("runner"):
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner

            runner = FnApiRunner()
            extra = [f"--direct_num_workers={os.cpu_count() or 2}"]
            extra.append("--direct_running_mode=multi_threading")
        p = beam.Pipeline(runner=runner, options=self._pipeline_options(extra))
        self._build(p, shard_prefix)
        result = p.run()
        result.wait_until_finish()
        self.counters = _counters(result)

    def _build(self, p, shard_prefix: str) -> None:
        """The pipeline: files -> rows as JSON lines in shards at ``shard_prefix``."""
        beam = _import_beam()
        from apache_beam.io import fileio
        from apache_beam.ml.inference.base import RunInference

        skipped = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "skipped")
        exclude = os.path.realpath(self.output)
        pattern = beam.io.filesystems.FileSystems.join(
            self.root, "**" if self.options.recursive else "*"
        )
        files = (
            p
            | "Match" >> fileio.MatchFiles(pattern, empty_match_treatment="ALLOW")
            | "Images only" >> beam.Filter(_keep(self.root, exclude, skipped))
            | "Spread" >> beam.Reshuffle()
            | "Read" >> fileio.ReadMatches()
            | "Bytes" >> beam.Map(_read(self.root))
        )
        decode = beam.Map(_decode, self.options.max_pixels)
        decoded, bad_files = files | "Decode" >> decode.with_exception_handling(
            use_subprocess=False
        )
        infer = RunInference(_keyed_handler(self.options)).with_exception_handling()
        predicted, failed = decoded | "Infer" >> infer
        lines = _to_lines(predicted, bad_files, failed, self.threshold, beam)
        (
            lines
            | "All rows" >> beam.Flatten()
            | "Shards" >> beam.io.WriteToText(shard_prefix, file_name_suffix=".jsonl")
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


def _counters(result) -> dict:
    """Beam's counters of this run (``inferences``, ``skipped``, worker threads)."""
    from apache_beam.metrics.metric import MetricsFilter

    counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    values: dict = {}
    for counter in counters["counters"]:
        name = counter.key.metric.name
        values[name] = values.get(name, 0) + (counter.committed or counter.attempted or 0)
    return values


#: What to install for a Beam filesystem scheme.
_SCHEME_EXTRAS = {"gs": "gcp", "s3": "aws", "azfs": "azure", "hdfs": "hadoopfilesystem"}


def _check_filesystem(path: str) -> None:
    """A ``scheme://`` path needs a Beam filesystem for it: say what to install."""
    if "://" not in path:
        return
    from apache_beam.io.filesystems import FileSystems

    try:
        FileSystems.get_filesystem(path)
    except ValueError as exc:
        scheme = path.split("://", 1)[0]
        extra = _SCHEME_EXTRAS.get(scheme)
        fix = (
            f"pip install 'apache-beam[{extra}]'"
            if extra
            else "use a local folder or a scheme Beam knows (gs://, s3://, azfs://, hdfs://)"
        )
        raise BeamNotInstalledError(
            f"Beam has no filesystem for {scheme}:// here ({path}): {fix}"
        ) from exc


def open_engine(input_dir, output, options: PredictOptions) -> BeamEngine:
    """Check what can be checked before a pipeline starts: Beam installed, the options,
    the input folder (when local) and the model (a missing or bad one fails here)."""
    _import_beam()
    flags = beam_flags(options.beam.pipeline_options)
    root = os.fspath(input_dir)
    if "://" not in root:
        check_input_folder(root)
        root = os.path.abspath(root)
    for path in (root, os.fspath(options.model or "")):
        _check_filesystem(path)
    model = os.fspath(options.model) if options.model is not None else None
    if model is not None and "://" not in model:
        from .model import load_model

        load_model(model)
        model = os.path.abspath(model)
    threshold = review_threshold(options.model, options.review_threshold)
    options = replace(options, model=model, review_threshold=threshold)
    return BeamEngine(root, os.fspath(output), options, flags)
