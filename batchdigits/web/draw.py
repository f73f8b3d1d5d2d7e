"""``batchdigits serve``: draw a digit in the browser and see what the model reads.

A Flask front end of the same library: one page (no external assets, works offline),
``POST /api/predict`` and ``GET /healthz``. A request's image goes through exactly what
``predict`` does to a file: the same decoder and Pillow fallback, the same
normalisation, the same model call and calibration (:class:`~batchdigits.web.predictor.
Predictor`). The model is loaded once, at start; requests are served concurrently.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from batchdigits.imaging.decode import UnreadableImage
from batchdigits.options import PredictOptions, ServeOptions
from batchdigits.web.predictor import Predictor
from batchdigits.web.server import json_error, new_app, run_app

#: Content types ``/api/predict`` takes as a raw body (besides multipart forms).
RAW_TYPES = ("image/", "application/octet-stream")
PAGE = Path(__file__).with_name("draw_page.html")


def create_app(predictor: Predictor, listen: ServeOptions | None = None):
    """The Flask app; ``predictor`` is shared by all requests."""
    import flask

    app = new_app("batchdigits", listen or ServeOptions())
    page = PAGE.read_text(encoding="utf-8")
    app.add_url_rule("/", "index", lambda: flask.Response(page, mimetype="text/html"))
    app.add_url_rule("/healthz", "healthz", lambda: flask.jsonify(_health(predictor)))
    app.add_url_rule(
        "/api/predict", "predict", lambda: _api_predict(flask, predictor), methods=["POST"]
    )
    return app


def _health(predictor: Predictor) -> dict:
    inference = predictor.inference
    return {
        "status": "ok",
        "model": inference.name,
        "model_fingerprint": inference.fingerprint,
        "review_threshold": inference.threshold,
        **({"numbers": True} if inference.options.numbers else {}),
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


def serve(
    options: PredictOptions | None = None,
    listen: ServeOptions | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the drawing page and API until interrupted: Flask's server, or waitress."""
    listen = listen or ServeOptions()
    run_app(lambda: create_app(Predictor(options), listen), listen, on_ready)
