"""What both web pages (``serve``, ``review``) share: the optional extra, a Flask app with
JSON errors and a Host allow-list, and the server that runs it (waitress by default).

The Host allow-list is the defence against DNS rebinding: a page on another site that
makes its own name resolve to 127.0.0.1 still sends its own name as ``Host``, and gets a
400. Loopback names and the listening address are allowed; ``--allow-host`` adds more.
"""

from __future__ import annotations

from collections.abc import Callable

from batchdigits.errors import BatchDigitsError, ExitCode
from batchdigits.options import ServeOptions


class ListenError(BatchDigitsError):
    """The address or port cannot be listened on (in use, not this machine's, privileged)."""

    exit_code = ExitCode.USAGE


class WebNotInstalledError(BatchDigitsError):
    """``serve`` or ``review`` without the optional extra."""

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


def new_app(name: str, listen: ServeOptions):
    """A Flask app that answers every error as JSON and only requests whose ``Host`` is
    allowed (:attr:`ServeOptions.allowed_hosts`)."""
    flask = require("flask")
    app = flask.Flask(name)
    app.config["MAX_CONTENT_LENGTH"] = listen.max_content_length
    error_handlers(app, flask, listen.max_content_length)
    allowed = listen.allowed_hosts

    @app.before_request
    def check_host():
        if allowed is not None and host_name(flask.request.host) not in allowed:
            return json_error(
                flask,
                400,
                "this Host is not allowed (start the server with --allow-host NAME to "
                "reach it by that name)",
            )
        return None

    return app


def host_name(host: str) -> str:
    """``Host`` without its port, lower-case: ``[::1]:8000`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


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


def check_listen(host: str, port: int) -> None:
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


def run_app(make_app: Callable, listen: ServeOptions, on_ready) -> None:
    """Check the address, make the app (loading the model), then serve until stopped."""
    require("flask")
    if listen.server == "waitress":
        require("waitress")
    check_listen(listen.host, listen.port)
    app = make_app()
    if on_ready is not None:
        on_ready(listen.url)
    if listen.server == "waitress":
        _waitress(app, listen).run()
    else:
        app.run(host=listen.host, port=listen.port, threaded=True, use_reloader=False)


def _waitress(app, listen: ServeOptions):
    """A waitress server whose own answers (headers too large, a malformed request line
    or chunk: requests that never reach the app) are JSON like every other error. Only
    this server's channels change: nothing of waitress is patched for the process."""
    from waitress.server import create_server

    server = create_server(
        app, host=listen.host, port=listen.port, threads=listen.threads, ident="batchdigits"
    )
    channel = _json_error_channel()
    for each in getattr(server, "map", {}).values():
        if hasattr(each, "channel_class"):
            each.channel_class = channel
    server.channel_class = channel
    return server


def _json_error_channel():
    import json

    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class JsonErrorTask(ErrorTask):
        def execute(self):
            error = self.request.error
            body = json.dumps({"error": f"{error.reason.lower()}: {error.body}"}).encode()
            self.status = f"{error.code} {error.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonErrorChannel(HTTPChannel):
        error_task_class = JsonErrorTask

    return JsonErrorChannel
