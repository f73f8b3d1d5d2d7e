"""``batchdigits serve``: draw a digit in the browser and see what the model reads.

A Flask front end of the same library: one page (no external assets, works offline),
``POST /api/predict`` and ``GET /healthz``. A request's image goes through exactly what
``predict`` does to a file: the same decoder and Pillow fallback, the same
normalisation, the same model call and calibration (:func:`predict_image`). The model is
loaded once, at start; requests are served concurrently (TensorFlow's compiled functions
are thread-safe).
"""

from __future__ import annotations

import base64
import io
import os
import queue
import threading
import time
from pathlib import Path

from .decode import DEFAULT_MAX_PIXELS, UnreadableImage
from .errors import BatchDigitsError, ExitCode

DEFAULT_MAX_CONTENT_LENGTH = 5 * 1024 * 1024
BATCH_WAIT_SECONDS = 0.005  # how long the model thread waits for more requests to join
#: Content types ``/api/predict`` takes as a raw body (besides multipart forms).
RAW_TYPES = ("image/", "application/octet-stream")
PAGE = Path(__file__).with_name("web_page.html")


class ListenError(BatchDigitsError):
    """The address or port cannot be listened on (in use, not this machine's, privileged)."""

    exit_code = ExitCode.USAGE


class WebNotInstalledError(BatchDigitsError):
    """``serve`` without the optional extra (or ``--server waitress`` without waitress)."""

    exit_code = ExitCode.USAGE


def _require(module: str, extra: str = "web"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise WebNotInstalledError(
            f"batchdigits serve needs {module}, which comes with an optional extra: "
            f"pip install 'batchdigits[{extra}]'"
        ) from exc


class Predictor:
    """The model, loaded once, and the one-image prediction every request runs."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        review_threshold: float | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        from .model import load_model
        from .pipeline import make_infer
        from .predict import DEFAULT_BATCH_SIZE, resolve_review_threshold
        from .state import model_fingerprint

        self.infer = make_infer(load_model(model))
        self.threshold = resolve_review_threshold(model, review_threshold)
        self.fingerprint = model_fingerprint(model)
        self.model = os.fspath(model) if model is not None else "(shipped model)"
        self.max_pixels = max_pixels
        self.batch_size = DEFAULT_BATCH_SIZE  # the same model call shape as predict's
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._batches, name="batchdigits-model", daemon=True).start()

    def _batches(self) -> None:
        """The one thread that calls the model: requests that arrive together share a
        call (a model call costs the same for 1 image as for a full batch, whose shape
        every call has so that answers equal predict's rows bit for bit)."""
        from .pipeline import normalize_and_infer

        while True:
            waiting = [self._queue.get()]
            deadline = time.monotonic() + BATCH_WAIT_SECONDS
            while len(waiting) < self.batch_size:
                try:
                    waiting.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                results = normalize_and_infer([g for g, _ in waiting], self.infer, self.batch_size)
                for i, (_, future) in enumerate(waiting):
                    future.set_result(tuple(part[i] for part in results))
            except Exception as exc:  # answered as a 500 by each waiting request
                for _, future in waiting:
                    future.set_exception(exc)

    def predict_image(self, data: bytes) -> dict:
        """An image file's bytes -> the JSON answer (raises UnreadableImage)."""
        from concurrent.futures import Future

        from .pipeline import prepare_bytes
        from .predict import _row

        gray = prepare_bytes(data, self.max_pixels)  # in the request's thread, in parallel
        future: Future = Future()
        self._queue.put((gray, future))
        inputs, probabilities, found = future.result()
        row = _row("upload", probabilities, bool(found), self.threshold)
        answer = {
            "prediction": row.prediction,
            "confidence": row.confidence,
            "needs_review": row.needs_review,
            "probabilities": [float(p) for p in probabilities] if found else None,
            "normalized": _png_data_url(inputs),
            "review_threshold": self.threshold,
        }
        if row.error:
            answer["error"] = row.error
        return answer


def _png_data_url(image) -> str:
    """A 28x28x1 model input (0..255) as a PNG data URL."""
    import numpy as np
    from PIL import Image

    pixels = np.clip(np.rint(image[..., 0]), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def create_app(
    model: str | os.PathLike | None = None,
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH,
    predictor: Predictor | None = None,
):
    """The Flask app; ``predictor`` (or a new one for ``model``) is shared by all requests."""
    flask = _require("flask")
    from werkzeug.exceptions import HTTPException

    predictor = predictor or Predictor(model)
    app = flask.Flask("batchdigits")
    app.config["MAX_CONTENT_LENGTH"] = max_content_length
    page = PAGE.read_text(encoding="utf-8")

    def error(status: int, message: str):
        return flask.jsonify({"error": message}), status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        messages = {
            405: "method not allowed",
            404: "not found",
            413: f"request too large (the limit is {max_content_length:,} bytes)",
        }
        return error(exc.code or 500, messages.get(exc.code, exc.description or exc.name))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # A bug, not the request's fault: logged with its traceback, answered as JSON,
        # and the server goes on.
        app.logger.exception("unexpected error")
        return error(500, f"internal error ({type(exc).__name__})")

    @app.get("/")
    def index():
        return flask.Response(page, mimetype="text/html")

    @app.get("/healthz")
    def healthz():
        return flask.jsonify(
            {
                "status": "ok",
                "model": predictor.model,
                "model_fingerprint": predictor.fingerprint,
                "review_threshold": predictor.threshold,
            }
        )

    @app.post("/api/predict")
    def api_predict():
        request = flask.request
        content_type = request.mimetype or ""
        if content_type == "multipart/form-data":
            upload = request.files.get("image") or next(iter(request.files.values()), None)
            if upload is None:
                return error(400, "no file in the form (send it as the field 'image')")
            data = upload.read()
        elif content_type.startswith(RAW_TYPES):
            data = request.get_data(cache=False)
        else:
            return error(
                415,
                f"unsupported content type {content_type or '(none)'!r}: send the image as "
                "the request body (image/png, image/jpeg, ...) or as a multipart form field",
            )
        if not data:
            return error(400, "empty request: no image")
        try:
            return flask.jsonify(predictor.predict_image(data))
        except UnreadableImage as exc:
            return error(422, str(exc))

    return app


def _check_listen(host: str, port: int) -> None:
    """Fail with a clear message, before loading anything, if ``host:port`` is taken."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise ListenError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
            "or --host"
        ) from exc


def serve(
    model: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    server: str = "flask",
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH,
    threads: int = 8,
    on_ready=None,
) -> None:
    """Run the app until interrupted: Flask's development server, or waitress."""
    _require("flask")
    if server == "waitress":
        waitress = _require("waitress")
    _check_listen(host, port)
    app = create_app(model, max_content_length)
    if on_ready is not None:
        on_ready(f"http://{host}:{port}/")
    if server == "waitress":
        waitress.serve(app, host=host, port=port, threads=threads, ident="batchdigits")
    else:
        app.run(host=host, port=port, threaded=True, use_reloader=False)
