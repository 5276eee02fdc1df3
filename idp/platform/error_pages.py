"""Friendly error pages for people; protocol endpoints answer in their own format instead."""

from flask import Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from idp.errors import HashingBusy
from idp.platform import outages
from idp.platform.extensions import db
from idp.platform.logging_setup import loggable_path
from idp.policy import BUSY_RETRY_AFTER_SECONDS

# Paths that relying parties call: errors there are JSON even when no route matched (a 404 or
# 405 has no blueprint), since a client library parses the answer instead of showing it.
PROTOCOL_PATHS = ("/token", "/userinfo", "/revoke", "/introspect", "/jwks.json", "/.well-known")
JSON_ERRORS = {404: "not_found", 405: "method_not_allowed"}


def is_protocol_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PROTOCOL_PATHS)


def wants_json() -> bool:
    return request.blueprint in current_app.config.get(
        "JSON_ERROR_BLUEPRINTS", ()
    ) or is_protocol_path(request.path)


def error_page(status: int, kind: str | None = None):
    if wants_json():
        default = JSON_ERRORS.get(status, "invalid_request" if status < 500 else "server_error")
        return {"error": kind or default}, status
    return render_template("errors/error.html", status=status, kind=kind), status


def answer_errors_under(app: Flask, prefix: str, answer) -> None:
    """HTTP errors under `prefix` (404 and 405 too, which no blueprint sees) are answered by
    `answer`, in the format that the clients of that API parse (SCIM's, say)."""
    app.extensions.setdefault("idp.path_errors", {})[prefix] = answer


def service_unavailable(error: Exception):
    """The database or the shared counters are away (idp.platform.outages): 503 with
    Retry-After, `temporarily_unavailable` for relying parties (RFC 6749's word for it), a page
    that asks people to try again in a moment."""
    outages.roll_back()
    kind = outages.kind_of(error)
    current_app.logger.warning(
        "%s unavailable on %s %s: %s",
        kind,
        request.method,
        loggable_path(request.path),
        type(getattr(error, "orig", None) or error).__name__,
    )
    if wants_json():
        body = {"error": "temporarily_unavailable"}
        return body, 503, outages.retry_after()
    page = render_template("errors/error.html", status=503, kind=f"unavailable_{kind}")
    return page, 503, outages.retry_after()


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_failed(_error):
        return error_page(400, "csrf")

    @app.errorhandler(HashingBusy)
    def hashing_busy(_error):
        # Raised before anything was counted or written; the person just tries again.
        db.session.rollback()
        page, status = error_page(503, "busy")
        return page, status, {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)}

    for error_class in outages.UNAVAILABLE_ERRORS:
        app.register_error_handler(error_class, service_unavailable)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        for prefix, answer in app.extensions.get("idp.path_errors", {}).items():
            if request.path.startswith(prefix):
                # No route matched, so the blueprint's own handler was not asked: its clients
                # still parse its error format.
                return answer(error)
        response = error.get_response()
        page, status = error_page(error.code)
        if isinstance(page, str):
            response.set_data(page)
            response.content_type = "text/html; charset=utf-8"
            return response
        # The error's own headers stay (Allow on a 405).
        return page, status, [(k, v) for k, v in response.headers if k.lower() == "allow"]

    @app.errorhandler(Exception)
    def unexpected(_error: Exception):
        db.session.rollback()
        current_app.logger.exception(
            "unhandled error on %s %s", request.method, loggable_path(request.path)
        )
        return error_page(InternalServerError.code)
