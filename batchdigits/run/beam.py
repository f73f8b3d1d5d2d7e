"""``predict --engine beam``: the same job on Apache Beam, so a runner (Dataflow, Flink,
Spark) can scale it out; locally it runs on Beam's in-process runner.

match files (``fileio``, so ``gs://`` and other Beam filesystems work) -> read bytes ->
decode + gray working image (the local engine's decoder and Pillow fallback) ->
``RunInference`` with a keyed handler that opens the model once per worker (the one
:class:`~batchdigits.model.inference.Inference`, with the local engine's batch shape, so
the rows are the same bits for any ``--batch-size``) -> rows. Decode and inference
failures go to Beam's failure outputs and become error rows, as in the local engine.
Rows are written as shards to a temporary location, then merged sorted by path and
handed to the driver (:mod:`batchdigits.run.driver`), which writes the CSV as for the
local engine. File names travel through Beam as bytes: any name, even one not valid
UTF-8, survives. The steps themselves are in :mod:`batchdigits.run.beam_steps`.

Nothing here is imported unless ``--engine beam`` is asked for.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

from batchdigits.imaging.files import check_input_folder
from batchdigits.model.store import SHIPPED_NAME, ModelRef
from batchdigits.options import FALLBACK_REVIEW_THRESHOLD, PredictOptions
from batchdigits.rows import Row
from batchdigits.run.beam_steps import (
    METRICS_NAMESPACE,
    BeamNotInstalledError,
    beam_flags,
    decode_file,
    from_line,
    import_beam,
    keep_rule,
    keyed_handler,
    read_file,
    to_lines,
)
from batchdigits.run.engines import CHUNK, chunks


class BeamEngine:
    """The Beam pipeline as an engine: :meth:`rows` runs it and yields the merged rows."""

    label = "predicting on Beam"
    listing = None  # Beam lists the files itself, on its workers

    def __init__(
        self,
        root: str,
        output: str,
        options: PredictOptions,
        flags: list[str],
        model: tuple[str, float],
    ):
        self.root, self.output, self.options, self.flags = root, output, options, flags
        self.model_name = options.model or SHIPPED_NAME
        self.fingerprint, self.threshold = model
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
                number = self.options.numbers
                yield from chunks((from_line(line, number) for line in merged), CHUNK)
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
        beam = import_beam()
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
        beam = import_beam()
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
            | "Images only" >> beam.Filter(keep_rule(self.root, exclude, skipped))
            | "Spread" >> beam.Reshuffle()
            | "Read" >> fileio.ReadMatches()
            | "Bytes" >> beam.Map(read_file(self.root))
        )
        decode = beam.Map(decode_file, self.options.max_pixels)
        decoded, bad_files = files | "Decode" >> decode.with_exception_handling(
            use_subprocess=False
        )
        infer = RunInference(keyed_handler(self.options)).with_exception_handling()
        predicted, failed = decoded | "Infer" >> infer
        lines = to_lines(predicted, bad_files, failed, beam)
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
    import_beam()
    flags = beam_flags(options.beam.pipeline_options)
    root = os.fspath(input_dir)
    if "://" not in root:
        check_input_folder(root)
        root = os.path.abspath(root)
    for path in (root, os.fspath(options.model or "")):
        _check_filesystem(path)
    model = os.fspath(options.model) if options.model is not None else None
    if model is not None and "://" in model:  # read by the workers: no card, no fingerprint
        threshold = options.review_threshold
        fingerprint = ""
        if threshold is None:
            threshold = FALLBACK_REVIEW_THRESHOLD
    else:
        ref = ModelRef(model, numbers=options.numbers)
        if model is not None:
            ref.load()  # a bad file fails here, not on every worker
            model = os.path.abspath(model)
        threshold, fingerprint = ref.threshold(options.review_threshold), ref.fingerprint
    # the workers resolve the threshold from the card (or its absence) themselves, as the
    # local engine does: a second opinion's rows have their own unless the user gave one
    options = replace(options, model=model)
    return BeamEngine(root, os.fspath(output), options, flags, (fingerprint, threshold))
