"""One model, opened once, turning images into rows: :class:`Inference`.

Every front end predicts through it: the local engine (a listing, streamed by
:mod:`batchdigits.imaging.pipeline`), the Beam engine's workers and the web server (prepared
images, one file's bytes), ``evaluate``, the probes and the report. So every one of them
reads a file the same way (TensorFlow's decoder, Pillow where it refuses), normalises it
in the same compiled batch function, and calls the model with the same batch shape: a
file's row is bit-identical whichever way it came.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from batchdigits.imaging.decode import UnreadableImage, read_with_pillow
from batchdigits.imaging.files import Listing
from batchdigits.imaging.one_file import prepare_pixels
from batchdigits.imaging.preprocess import (
    SIZE,
    compiled_normalization,
    normalize_batch,
    pad_batch,
)
from batchdigits.model.network import networks
from batchdigits.model.store import ModelRef
from batchdigits.numbers.reader import NumberReading, read_cleaned, sequence_inputs_fn
from batchdigits.numbers.second import DigitCheck, digit_probabilities
from batchdigits.options import CONSULTED_REVIEW_BELOW, FALLBACK_REVIEW_THRESHOLD, PredictOptions
from batchdigits.rows import NO_DIGIT, Row, make_row
from batchdigits.runtime.lazy import tf
from batchdigits.stops import check_stop, stops_deferred

#: A listing of at most this many files is normalised and predicted eagerly: tracing the
#: compiled normalisation costs about as much as eagerly running 8-10 batches of 256
#: (measured: 1.6 s once vs 0.1-0.15 s more per batch).
EAGER_IMAGES = 2048


@dataclass(frozen=True)
class Inference:
    """A loaded model with what its rows need (see :meth:`open`)."""

    options: PredictOptions  # review_threshold resolved: never None here
    infer: Any  # compiled images -> probabilities (with --numbers: fields -> the reader's logits)
    fingerprint: str
    name: str  # the model as rows and summaries name it
    network: Any  # the Keras model itself, called eagerly in small runs
    second: SecondOpinion | None = None  # consulted for the rows the first doubts
    numbers: Any = None  # with --numbers: the sequence reader (model, confidence power);
    # then ``network`` is the shipped digit network, for its second opinion on the digits
    # that stand alone (:mod:`batchdigits.numbers.second`), and ``digits`` it compiled
    digits: Any = None

    @classmethod
    def open(cls, options: PredictOptions, ref: ModelRef | None = None) -> Inference:
        """Load the model (``ref``, else ``options.model`` resolved) once: a missing or bad
        model fails here, with its code."""
        ref = ref or ModelRef(options.model, numbers=options.numbers)
        threshold = ref.threshold(options.review_threshold)
        if options.numbers:
            reader = (ref.load(), ref.confidence_power)
            options = replace(options, review_threshold=threshold)
            infer = make_infer(reader[0])
            digit = networks(ModelRef(None).load())[0]
            return cls(
                options,
                infer,
                ref.fingerprint,
                ref.name,
                digit,
                numbers=reader,
                digits=make_infer(digit),
            )
        return cls.of(
            ref.load(),
            replace(options, review_threshold=threshold),
            fingerprint=ref.fingerprint,
            name=ref.name,
            consult_below=ref.consult_below(),
            consulted_review_below=ref.consulted_review_below(options.review_threshold),
            second_alone=ref.second_answers_alone(),
        )

    @classmethod
    def of(
        cls,
        keras_model,
        options: PredictOptions | None = None,
        fingerprint: str = "",
        name: str = "",
        consult_below: float | None = None,
        consulted_review_below: float = CONSULTED_REVIEW_BELOW,
        second_alone: bool = False,
    ) -> Inference:
        """A model already in memory (training measures its own on the probes). A file
        with a second opinion consults it for the rows whose first confidence is under
        ``consult_below`` (default: the review threshold); a consulted row is flagged
        for review below ``consulted_review_below`` (default: always), and takes the
        second's answer alone with ``second_alone`` (a cascade), else the mean."""
        options = options or PredictOptions()
        if options.review_threshold is None:
            options = replace(options, review_threshold=FALLBACK_REVIEW_THRESHOLD)
        first, second = networks(keras_model)
        if second is not None:
            below = options.review_threshold if consult_below is None else consult_below
            infer = make_infer(second)
            second = SecondOpinion(infer, second, below, consulted_review_below, second_alone)
        name = name or "(in memory)"
        return cls(options, make_infer(first), fingerprint, name, first, second)

    @property
    def threshold(self) -> float:
        return self.options.review_threshold

    def infer_batch(self, gray, sizes, compiled: bool = True) -> Predicted | Readings:
        """A padded batch of gray working images ``(B, H, W)``, ``B <= batch_size``, with
        their ``sizes (B, 2)`` -> numpy :class:`Predicted`. The model always gets the full
        ``batch_size`` shape (zero rows added): its kernels, and so the last bits of the
        probabilities, can differ with the batch shape, and a file's row must not depend on
        how many share its batch.

        ``compiled=False`` runs the same code eagerly, op by op: slower per batch, but
        without the ~1.5 s of tracing the normalisation's graph costs once per process,
        so a run of a few batches finishes sooner. Both give the same bits."""
        return self.finish(self.begin(gray, sizes, compiled), compiled)

    def begin(self, gray, sizes, compiled: bool = True):
        """The first half of :meth:`infer_batch`: the normalisation (with ``numbers``, the
        fields' cleaning), as tensors. :meth:`rows` runs it for the next batch while the
        model reads this one."""
        t = tf()
        gray, sizes = t.convert_to_tensor(gray), t.convert_to_tensor(sizes)
        if self.options.numbers:
            return sequence_inputs_fn()(gray, sizes)
        return (compiled_normalization() if compiled else normalize_batch)(gray, sizes)

    def finish(self, begun, compiled: bool = True) -> Predicted | Readings:
        """The second half of :meth:`infer_batch`: :meth:`begin`'s tensors through the
        model, to numpy."""
        if self.options.numbers:
            logits = self.infer if compiled else None
            digits = self.digits if compiled else functools.partial(self.network, training=False)
            check = DigitCheck(
                functools.partial(digit_probabilities, digits, compiled), self.threshold
            )
            lengths = self.options.lengths
            readings, inputs = read_cleaned(self.numbers, *begun, lengths, logits, check)
            return Readings(readings, self.threshold, inputs)
        t = tf()
        inputs, has_digit = begun
        n = int(inputs.shape[0])
        padded = t.pad(inputs, [[0, max(self.options.batch_size - n, 0)], [0, 0], [0, 0], [0, 0]])
        model = self.infer if compiled else functools.partial(self.network, training=False)
        probabilities = model(padded).numpy()[:n]
        inputs, has_digit = inputs.numpy(), has_digit.numpy()
        review_below = np.full(n, self.threshold)
        if self.second is not None:
            probabilities, consulted = self.second.consulted(
                inputs, probabilities, has_digit, compiled
            )
            review_below[consulted] = self.second.review_below
        return Predicted(inputs, probabilities, has_digit, review_below)

    def predict_prepared(self, grays: Sequence[np.ndarray]) -> Predicted | Readings:
        """Gray working images (:func:`~batchdigits.imaging.one_file.prepare_bytes`) ->
        numpy :class:`Predicted` (with ``numbers``: :class:`Readings`), ``batch_size``
        images per model call."""
        size = self.options.batch_size
        parts = [
            self.infer_batch(*pad_batch(grays[start : start + size]))
            for start in range(0, len(grays), size)
        ]
        if self.options.numbers:
            readings = [r for part in parts for r in part.readings]
            inputs = [part.inputs for part in parts]
            return Readings(readings, self.threshold, np.concatenate(inputs) if inputs else None)
        if not parts:
            empty = np.zeros((0, SIZE, SIZE, 1), np.float32), np.zeros((0, 10), np.float32)
            return Predicted(*empty, np.zeros(0, bool), np.zeros(0))
        return Predicted(*(np.concatenate(part) for part in zip(*parts, strict=True)))

    def rows_of_prepared(self, paths: Sequence[str], grays: Sequence[np.ndarray]) -> list[Row]:
        """One row per prepared image, named by ``paths``."""
        predicted = self.predict_prepared(grays)
        return [predicted.row(k, path, keep_input=True) for k, path in enumerate(paths)]

    def predict_images(self, images: Sequence[np.ndarray]):
        """Decoded images (``uint8``, gray or with channels, any size) -> numpy
        ``(probabilities (N, 10), has_digit (N,))``."""
        predicted = self.predict_prepared([prepare_pixels(i) for i in images])
        return predicted.probabilities, np.asarray(predicted.has_digit, bool)

    def rows(self, listing: Listing, keep_inputs: bool = False) -> Iterator[list[Row]]:
        """Rows for every file of ``listing``, in its order, a batch at a time, streamed
        through the tf.data pipeline; a file it cannot decode is read alone by Pillow.
        ``keep_inputs``: each row keeps the 28x28 image the model saw (``model_input``)."""
        from batchdigits.imaging.pipeline import image_batches

        full = listing.full_paths()
        done = 0  # rows yielded so far; the pipeline's indices skip the files it dropped
        batches = image_batches(full, self.options.batch_size, self.options.max_pixels)
        compiled = len(full) > EAGER_IMAGES
        for indices, predicted in self._results(batches, compiled):
            rows: list[Row] = []
            for k, index in enumerate(indices.numpy().tolist()):
                rows.extend(self._read_alone(listing, full, done, index, keep_inputs))
                rows.append(predicted.row(k, listing.paths[index], keep_inputs))
                done = index + 1
            yield rows
        if done < len(full):
            yield self._read_alone(listing, full, done, len(full), keep_inputs)

    def _results(self, batches, compiled: bool) -> Iterator[tuple]:
        """Each batch of the pipeline through the model, in order. One thread takes the
        next batch from the pipeline and normalises it (:meth:`begin`) while this one runs
        the model on the batch before (:meth:`finish`) and the caller makes its rows: the
        two halves of :meth:`infer_batch`, the same functions on the same tensors, so the
        same bits. A signal meanwhile is recorded and raised between batches
        (:func:`~batchdigits.stops.stops_deferred`), never inside TensorFlow; the batch
        being normalised then is finished, not cut."""
        batches = iter(batches)

        def ahead():
            batch = next(batches, None)
            if batch is None:
                return None
            indices, gray, sizes = batch
            return indices, self.begin(gray, sizes, compiled)

        with ThreadPoolExecutor(1, thread_name_prefix="batchdigits-normalise") as pool:
            with stops_deferred():
                pending = pool.submit(ahead)
                if compiled:
                    self._warm_up()
            while True:
                with stops_deferred():
                    begun = pending.result()
                    if begun is not None:
                        pending = pool.submit(ahead)
                        result = (begun[0], self.finish(begun[1], compiled))
                check_stop()
                if begun is None:
                    return
                yield result

    def _warm_up(self) -> None:
        """Trace and first call the model on zeros while the first batch is normalised
        (with ``numbers``, the digit model's second opinion too)."""
        one = self.infer.input_signature[0].shape[1:]
        self.infer(tf().zeros((self.options.batch_size, *one)))
        if self.digits is not None:
            digit_probabilities(self.digits, True, np.zeros((1, *one[:2]), np.float32))

    def _read_alone(self, listing, full, first: int, stop: int, keep_inputs: bool) -> list[Row]:
        """Rows for the files the pipeline dropped: Pillow's reading, or an error row."""
        rows = []
        for j in range(first, stop):
            check_stop()
            try:
                gray = prepare_pixels(read_with_pillow(full[j], self.options.max_pixels))
            except UnreadableImage as exc:
                rows.append(Row(listing.paths[j], error=str(exc), number=self.options.numbers))
                continue
            row = self.rows_of_prepared([listing.paths[j]], [gray])[0]
            rows.append(row if keep_inputs else replace(row, model_input=None))
        return rows


@dataclass(frozen=True)
class Readings:
    """A batch of number fields read (``--numbers``): what each image's row is made of."""

    readings: list[NumberReading]
    threshold: float
    inputs: np.ndarray | None = None  # (N, HEIGHT, WIDTH, 1) ink 0..1: what the reader saw

    def row(self, k: int, path: str, keep_input: bool = False) -> Row:
        """Image ``k``'s row, named ``path`` (with the field the reader saw, 0..255, if
        ``keep_input``)."""
        reading = self.readings[k]
        x = self.inputs[k] * 255.0 if keep_input and self.inputs is not None else None
        if not reading.found:
            return Row(path=path, error=NO_DIGIT, model_input=x, number=True)
        return Row(
            path=path,
            prediction=reading.digits,
            confidence=reading.confidence,
            needs_review=reading.confidence < self.threshold,
            probabilities=reading.digit_confidences,
            model_input=x,
            number=True,
        )


class Predicted(NamedTuple):
    """A batch through the model, numpy: what each image's row is made of."""

    inputs: np.ndarray  # (N, 28, 28, 1): what the network saw
    probabilities: np.ndarray  # (N, 10)
    has_digit: np.ndarray  # (N,): False is "no digit found"
    review_below: np.ndarray  # (N,): the row is flagged when its confidence is under this

    def row(self, k: int, path: str, keep_input: bool = False) -> Row:
        """Image ``k``'s row, named ``path`` (with the model's input if ``keep_input``)."""
        x = self.inputs[k] if keep_input else None
        found = bool(self.has_digit[k])
        return make_row(path, self.probabilities[k], found, float(self.review_below[k]), x)


@dataclass(frozen=True)
class SecondOpinion:
    """A stronger network asked about the rows the first is not sure of (its confidence
    under ``below``); such a row's probabilities are the mean of the two networks' (in a
    cascade, ``alone``: the second's own), and it is flagged for review when their
    confidence is under ``review_below``.

    Rows go to it in chunks of :data:`SECOND_CHUNK`, zero rows added, a row in the slot
    its place in the batch gives it (that place modulo the chunk), the first row of each
    slot in the first chunk, the second in the next, and so on. The network's kernels
    give a chunk's last rows other last bits than the rest (measured: a row in slot 31
    differs from the same row in slot 0), so a row keeps a slot that does not depend on
    which other rows are doubtful, as the first network's row keeps its place in the
    batch; :mod:`tests.test_second_opinion` checks it. A batch with few doubtful rows
    asks for one small call."""

    infer: Any
    network: Any
    below: float
    review_below: float = CONSULTED_REVIEW_BELOW
    alone: bool = False  # a cascade: a consulted row takes the second's answer alone

    def consulted(self, inputs, probabilities, has_digit, compiled: bool = True):
        """``(probabilities (B, 10)`` with the doubtful rows' replaced (a copy), ``consulted
        (B,)`` which rows those are)``."""
        found = np.asarray(has_digit, bool)
        consulted = found & (probabilities.max(1) < self.below)
        doubtful = np.flatnonzero(consulted)
        out = probabilities.copy()
        model = self.infer if compiled else functools.partial(self.network, training=False)
        slots = doubtful % SECOND_CHUNK
        for rows, at in _by_slot(doubtful, slots):
            chunk = np.zeros((SECOND_CHUNK, *inputs.shape[1:]), np.float32)
            chunk[at] = inputs[rows]
            second = np.asarray(model(chunk))[at]
            out[rows] = second if self.alone else (probabilities[rows] + second) / 2
        return out, consulted


def _by_slot(rows: np.ndarray, slots: np.ndarray):
    """``(rows, their slots)`` per chunk: the k-th row of each slot in the k-th chunk."""
    rank = np.zeros(len(rows), int)
    seen: dict[int, int] = {}
    for n, slot in enumerate(slots.tolist()):
        rank[n] = seen.get(slot, 0)
        seen[slot] = rank[n] + 1
    for k in range(int(rank.max()) + 1 if len(rows) else 0):
        yield rows[rank == k], slots[rank == k]


#: Rows asked of the second opinion per call (zero rows fill the last chunk).
SECOND_CHUNK = 32


def make_infer(model):
    """A compiled ``inputs -> outputs`` function of a Keras model (the digit network:
    probabilities; the reader of numbers: logits) for batches of any size, with the
    model's own input shape. The same bits as calling it layer by layer (small runs do),
    in less time (the reader: 109 against 153 ms a batch of 256 fields)."""
    t = tf()
    spec = t.TensorSpec([None, *model.input_shape[1:]], t.float32)

    @t.function(input_signature=[spec], reduce_retracing=True)
    def infer(images):
        return model(images, training=False)

    return infer


def compute_images_per_second(model, batch_size: int = 4096, repeats: int = 7) -> float:
    """The model's compute alone: a batch of random 28x28 inputs, in memory, through
    :func:`make_infer`; images/s of the median of ``repeats`` timed runs."""
    import statistics
    import time

    infer = make_infer(model)
    batch = (np.random.default_rng(0).random((batch_size, SIZE, SIZE, 1)) * 255).astype("float32")
    infer(batch)  # trace and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        infer(batch).numpy()
        times.append(time.perf_counter() - t0)
    return batch_size / statistics.median(times)
