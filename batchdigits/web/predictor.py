"""The model behind the web pages: :class:`Predictor` opens it once (through the one
:class:`~batchdigits.model.inference.Inference`) and answers one image at a time, with
the rows ``predict`` would write."""

from __future__ import annotations

import base64
import io
import os
import queue
import threading
import time

from batchdigits.imaging.one_file import prepare_bytes
from batchdigits.model.inference import Inference
from batchdigits.options import PredictOptions

BATCH_WAIT_SECONDS = 0.005  # how long the model thread waits for more requests to join
#: Images decoded at once, whatever the number of request threads: a burst of large
#: uploads costs the memory of this many, not of one per thread.
DECODE_SLOTS = max(1, os.cpu_count() or 1)


class Predictor:
    """The model, opened once (:class:`~batchdigits.model.inference.Inference`), and the
    one-image prediction every request runs."""

    def __init__(self, options: PredictOptions | None = None):
        self.inference = Inference.open(options or PredictOptions())
        self._queue: queue.Queue = queue.Queue()
        self._decoding = threading.BoundedSemaphore(DECODE_SLOTS)
        threading.Thread(target=self._batches, name="batchdigits-model", daemon=True).start()

    def _batches(self) -> None:
        """The one thread that calls the model: requests that arrive together share a
        call (a model call costs the same for 1 image as for a full batch, whose shape
        every call has so that answers equal predict's rows bit for bit)."""
        while True:
            waiting = self._waiting()
            try:
                predicted = self.inference.predict_prepared([gray for gray, _ in waiting])
                for i, (_, future) in enumerate(waiting):
                    future.set_result(predicted.row(i, "upload", keep_input=True))
            except Exception as exc:  # answered as a 500 by each waiting request
                for _, future in waiting:
                    future.set_exception(exc)

    def _waiting(self) -> list:
        """The next request, and those that join it within ``BATCH_WAIT_SECONDS``."""
        waiting = [self._queue.get()]
        deadline = time.monotonic() + BATCH_WAIT_SECONDS
        while len(waiting) < self.inference.options.batch_size:
            try:
                waiting.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return waiting

    def predict_image(self, data: bytes) -> dict:
        """An image file's bytes -> the JSON answer (raises UnreadableImage)."""
        from concurrent.futures import Future

        # decoded in the request's thread, in parallel with the others
        with self._decoding:
            gray = prepare_bytes(data, self.inference.options.max_pixels)
        future: Future = Future()
        self._queue.put((gray, future))
        return self.answer(future.result())

    def answer(self, row) -> dict:
        """A row -> the JSON answer: a digit's ten ``probabilities``, or with
        ``--numbers`` the number's ``digit_confidences``; ``normalized`` is what the
        model saw (28x28, or the number's field scaled to the reader's 32x192). The keys
        of a digit's answer are the same with or without the numbers mode existing."""
        each = None if row.error else [float(p) for p in row.probabilities]
        answer = {
            "prediction": row.prediction,
            "confidence": row.confidence,
            "needs_review": row.needs_review,
            "digit_confidences" if row.number else "probabilities": each,
            "normalized": _png_data_url(row.model_input),
            "review_threshold": self.inference.threshold,
        }
        if row.error:
            answer["error"] = row.error
        return answer


def _png_data_url(image) -> str:
    """A model input (``(H, W, 1)``, 0..255) as a PNG data URL."""
    import numpy as np
    from PIL import Image

    pixels = np.clip(np.rint(image[..., 0]), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
