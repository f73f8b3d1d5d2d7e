"""``batchdigits serve``: draw a digit in the browser and see what the model reads.

A Flask front end of the same library: one page (no external assets, works offline),
``POST /api/predict`` and ``GET /healthz``. A request's image goes through exactly what
``predict`` does to a file: the same decoder and Pillow fallback, the same
normalisation, the same model call and calibration (:class:`Predictor`, through the
shared :class:`~batchdigits.inference.Inference`). The model is loaded once, at start;
requests are served concurrently (TensorFlow's compiled functions are thread-safe).
"""

from __future__ import annotations

import base64
import io
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .decode import UnreadableImage
from .errors import BatchDigitsError, ExitCode
from .inference import Inference, prepare_bytes
from .options import PredictOptions, ServeOptions
from .output import make_row

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


def require(module: str, extra: str = "web"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise WebNotInstalledError(
            f"batchdigits serve and review need {module}, which comes with an optional extra: "
            f"pip install 'batchdigits[{extra}]'"
        ) from exc


class Predictor:
    """The model, opened once (:class:`~batchdigits.inference.Inference`), and the
    one-image prediction every request runs."""

    def __init__(self, options: PredictOptions | None = None):
        self.inference = Inference.open(options or PredictOptions())
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._batches, name="batchdigits-model", daemon=True).start()

    def _batches(self) -> None:
        """The one thread that calls the model: requests that arrive together share a
        call (a model call costs the same for 1 image as for a full batch, whose shape
        every call has so that answers equal predict's rows bit for bit)."""
        while True:
            waiting = self._waiting()
            try:
                results = self.inference.predict_prepared([gray for gray, _ in waiting])
                for i, (_, future) in enumerate(waiting):
                    future.set_result(tuple(part[i] for part in results))
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
        gray = prepare_bytes(data, self.inference.options.max_pixels)
        future: Future = Future()
        self._queue.put((gray, future))
        inputs, probabilities, has_digit = future.result()
        row = make_row("upload", probabilities, bool(has_digit), self.inference.threshold)
        answer = {
            "prediction": row.prediction,
            "confidence": row.confidence,
            "needs_review": row.needs_review,
            "probabilities": [float(p) for p in probabilities] if has_digit else None,
            "normalized": _png_data_url(inputs),
            "review_threshold": self.inference.threshold,
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


def create_app(predictor: Predictor, max_content_length: int = ServeOptions.max_content_length):
    """The Flask app; ``predictor`` is shared by all requests."""
    flask = require("flask")
    app = flask.Flask("batchdigits")
    app.config["MAX_CONTENT_LENGTH"] = max_content_length
    error_handlers(app, flask, max_content_length)
    page = PAGE.read_text(encoding="utf-8")
    app.add_url_rule("/", "index", lambda: flask.Response(page, mimetype="text/html"))
    app.add_url_rule("/healthz", "healthz", lambda: flask.jsonify(_health(predictor)))
    app.add_url_rule(
        "/api/predict", "predict", lambda: _api_predict(flask, predictor), methods=["POST"]
    )
    return app


def json_error(flask, status: int, message: str):
    return flask.jsonify({"error": message}), status


def error_handlers(app, flask, max_content_length: int) -> None:
    from werkzeug.exceptions import HTTPException

    messages = {
        405: "method not allowed",
        404: "not found",
        413: f"request too large (the limit is {max_content_length:,} bytes)",
    }

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        return json_error(flask, code, messages.get(code, exc.description or exc.name))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # A bug, not the request's fault: logged with its traceback, answered as JSON,
        # and the server goes on.
        app.logger.exception("unexpected error")
        return json_error(flask, 500, f"internal error ({type(exc).__name__})")


def _health(predictor: Predictor) -> dict:
    inference = predictor.inference
    return {
        "status": "ok",
        "model": inference.name,
        "model_fingerprint": inference.fingerprint,
        "review_threshold": inference.threshold,
    }


def _api_predict(flask, predictor: Predictor):
    request = flask.request
    content_type = request.mimetype or ""
    if content_type == "multipart/form-data":
        upload = request.files.get("image") or next(iter(request.files.values()), None)
        if upload is None:
            return json_error(flask, 400, "no file in the form (send it as the field 'image')")
        data = upload.read()
    elif content_type.startswith(RAW_TYPES):
        data = request.get_data(cache=False)
    else:
        return json_error(
            flask,
            415,
            f"unsupported content type {content_type or '(none)'!r}: send the image as "
            "the request body (image/png, image/jpeg, ...) or as a multipart form field",
        )
    if not data:
        return json_error(flask, 400, "empty request: no image")
    try:
        return flask.jsonify(predictor.predict_image(data))
    except UnreadableImage as exc:
        return json_error(flask, 422, str(exc))


def _json_waitress_errors() -> None:
    """waitress answers requests that never reach the app (headers too large, a malformed
    request line or chunk) itself, as plain text; make those JSON like every other error."""
    import json

    from waitress import utilities

    def to_response(self, ident=None):
        body = json.dumps({"error": f"{self.reason.lower()}: {self.body}"}).encode("utf-8")
        return f"{self.code} {self.reason}", [("Content-Type", "application/json")], body

    utilities.Error.to_response = to_response


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
    options: PredictOptions | None = None,
    listen: ServeOptions | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the drawing page and API until interrupted: Flask's server, or waitress."""
    listen = listen or ServeOptions()
    _run_app(lambda: create_app(Predictor(options), listen.max_content_length), listen, on_ready)


def review(
    session,
    options: PredictOptions | None = None,
    listen: ServeOptions | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the review page for ``session`` (:class:`batchdigits.review.ReviewSession`)."""
    from .review_web import create_review_app

    listen = listen or ServeOptions()
    _run_app(lambda: create_review_app(session, Predictor(options)), listen, on_ready)


def _run_app(make_app: Callable, listen: ServeOptions, on_ready) -> None:
    require("flask")
    if listen.server == "waitress":
        waitress = require("waitress")
    _check_listen(listen.host, listen.port)
    app = make_app()
    if on_ready is not None:
        on_ready(listen.url)
    if listen.server == "waitress":
        _json_waitress_errors()
        waitress.serve(
            app, host=listen.host, port=listen.port, threads=listen.threads, ident="batchdigits"
        )
    else:
        app.run(host=listen.host, port=listen.port, threaded=True, use_reloader=False)
