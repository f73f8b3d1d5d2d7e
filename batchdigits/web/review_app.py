"""The review page's Flask app (``batchdigits review``): rows, images, labels.

Routes: ``GET /`` the page (no external assets); ``GET /api/rows?show=review|all|errors|
digit&digit=N``; ``GET /api/image?path=P`` the original file; ``GET /api/seen?path=P``
the 28x28 the model saw, its probabilities and the next most likely digit (with
``--numbers``: the field the reader saw and each digit's confidence); ``POST
/api/label`` with JSON ``{"path": P, "label": "0".."9" | "x" | ""}`` (with
``--numbers``, a label is a string of digits). A path that is not
a row of the CSV, or that leaves the images folder, gets a 4xx and nothing is served.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from batchdigits.errors import BatchDigitsError, InputNotFoundError, LabelError
from batchdigits.imaging.decode import UnreadableImage
from batchdigits.imaging.files import is_safe_relative
from batchdigits.options import PredictOptions, ServeOptions
from batchdigits.web.predictor import Predictor
from batchdigits.web.server import json_error, new_app, run_app

#: The review page's requests are small JSON bodies.
REVIEW_MAX_CONTENT_LENGTH = 65536
#: How ``review`` listens unless told otherwise (loopback, the small body limit).
REVIEW_LISTEN = ServeOptions(max_content_length=REVIEW_MAX_CONTENT_LENGTH)

PAGE = Path(__file__).with_name("review_page.html")


def create_review_app(session, predictor: Predictor, listen: ServeOptions | None = None):
    import flask

    listen = listen or REVIEW_LISTEN
    app = new_app("batchdigits-review", listen)
    page = PAGE.read_text(encoding="utf-8")
    app.add_url_rule("/", "index", lambda: flask.Response(page, mimetype="text/html"))
    app.add_url_rule("/healthz", "healthz", lambda: flask.jsonify({"status": "ok"}))
    app.add_url_rule("/api/rows", "rows", lambda: _rows(flask, session))
    app.add_url_rule("/api/image", "image", lambda: _image(flask, session))
    app.add_url_rule("/api/seen", "seen", lambda: _seen(flask, session, predictor))
    app.add_url_rule("/api/label", "label", lambda: _label(flask, session), methods=["POST"])
    return app


def review(
    session,
    options: PredictOptions | None = None,
    listen: ServeOptions | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the review page for ``session`` (a
    :class:`~batchdigits.web.review_session.ReviewSession`) until stopped."""
    listen = listen or REVIEW_LISTEN
    run_app(lambda: create_review_app(session, Predictor(options), listen), listen, on_ready)


def _rows(flask, session):
    show = flask.request.args.get("show", "review")
    digit = flask.request.args.get("digit", "")
    if show not in ("review", "all", "errors", "digit"):
        return json_error(flask, 400, f"unknown show={show!r}: review, all, errors or digit")
    if show == "digit" and not _is_prediction(digit, session.numbers):
        return json_error(flask, 400, f"show=digit needs digit={_PREDICTION[session.numbers]}")
    value = (digit if session.numbers else int(digit)) if show == "digit" else None
    answer = {"rows": session.queue(show, value), "labelled": len(session.labels)}
    return flask.jsonify(answer | ({"numbers": True} if session.numbers else {}))


_PREDICTION = {False: "0..9", True: "a number (digits 0-9)"}


def _is_prediction(text: str, numbers: bool) -> bool:
    """A prediction to show the rows of: one digit, or with ``numbers`` a string of them."""
    ascii_digits = text.isascii() and text.isdigit()
    return ascii_digits and (numbers or len(text) == 1)


def _file(flask, session):
    path = flask.request.args.get("path", "")
    if not is_safe_relative(path):
        return None, json_error(flask, 400, "a path relative to the images folder, without ..")
    full = session.image_file(path)
    if full is None:
        return None, json_error(flask, 404, f"{path!r} is not an image row of the CSV here")
    return full, None


def _image(flask, session):
    full, problem = _file(flask, session)
    return problem or flask.send_file(full, max_age=0)


def _seen(flask, session, predictor: Predictor):
    full, problem = _file(flask, session)
    if problem:
        return problem
    try:
        answer = predictor.predict_image(full.read_bytes())
    except UnreadableImage as exc:
        return json_error(flask, 422, str(exc))
    probabilities = answer.get("probabilities") or []
    order = sorted(range(len(probabilities)), key=lambda d: -probabilities[d])
    answer["second"] = order[1] if len(order) > 1 else None
    return flask.jsonify(answer)


def _label(flask, session):
    body = flask.request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("path"), str):
        return json_error(flask, 400, 'send JSON {"path": ..., "label": "..."} (digits or x)')
    label = body.get("label")
    if not isinstance(label, str):
        return json_error(flask, 400, "label must be a string: 0-9, x, or empty to remove")
    path = body["path"]
    if not is_safe_relative(path):
        return json_error(flask, 400, "a path relative to the images folder, without ..")
    try:
        labelled = session.set_label(path, label)
    except InputNotFoundError as exc:  # not a row of the CSV
        return json_error(flask, 404, str(exc))
    except (LabelError, BatchDigitsError) as exc:
        return json_error(flask, 400, str(exc))
    saved = session.labels.get(path, "")  # as saved: lower case, a number's separators out
    return flask.jsonify({"path": path, "label": saved, "labelled": labelled})
