"""Logs as JSON lines on stderr, each carrying the id of the request it belongs to.

What reaches a log never contains a query string, a request body, a header value or a cookie:
codes, tokens, PINs and passwords travel there. Paths are logged with long random segments
(the activation link's token) replaced, see `loggable_path`.
"""

import contextvars
import json
import logging
import re
import sys
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, g, request
from flask.logging import default_handler
from gunicorn.glogging import Logger as GunicornBaseLogger

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is reused only when it cannot smuggle anything into a log line.
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Random values are long and mix cases or digits; route words ("openid-configuration") do not.
SECRET_LOOKING_SEGMENT = re.compile(r"(?=[^/]*[A-Z0-9])[A-Za-z0-9._~=-]{24,}")
REDACTED = "[redacted]"

# Loggers whose chatter at DEBUG or INFO would carry SQL parameters (hashes, token digests)
# or whole token responses (Authlib logs every token it issues at DEBUG).
QUIET_LOGGERS = ("sqlalchemy.engine", "sqlalchemy.pool", "authlib")

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "idp_request_id", default=None
)


def loggable_path(path: str) -> str:
    """The path without query string, long random segments replaced."""
    path = path.split("?", 1)[0]
    return SECRET_LOOKING_SEGMENT.sub(REDACTED, path)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        if request_id:
            entry["request_id"] = request_id
        access = getattr(record, "access", None)
        if access:
            entry["access"] = access
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _json_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.idp_json = True
    return handler


def configure_logging(app: Flask) -> None:
    """JSON lines on stderr from every logger, at IDP_LOG_LEVEL; a request id on each."""
    root = logging.getLogger()
    if not any(getattr(handler, "idp_json", False) for handler in root.handlers):
        root.addHandler(_json_handler())
    root.setLevel(app.config["LOG_LEVEL"])
    app.logger.removeHandler(default_handler)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)

    def assign_request_id() -> None:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if SAFE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
        g.request_id = request_id
        g.request_id_token = current_request_id.set(request_id)

    # First of all hooks: a request that CSRF protection rejects gets an id too.
    app.before_request_funcs.setdefault(None, []).insert(0, assign_request_id)

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        if "request_id" in g:
            response.headers[REQUEST_ID_HEADER] = g.request_id
        return response

    @app.teardown_request
    def forget_request_id(_error) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            current_request_id.reset(token)


class GunicornLogger(GunicornBaseLogger):
    """gunicorn's logs as JSON lines too. The access line names method, path (never the query
    string, never the referrer: both carry codes), status, duration and the request id."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())

    def access(self, resp, req, environ, request_time) -> None:
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.syslog):
            return
        request_id = next(
            (value for name, value in resp.headers if name.lower() == "x-request-id"), None
        )
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        path = loggable_path(req.path)
        self.access_log.info(
            "%s %s %s",
            req.method,
            path,
            status,
            extra={
                "request_id": request_id,
                "access": {
                    "method": req.method,
                    "path": path,
                    "status": int(status),
                    "duration_ms": round(
                        request_time.seconds * 1000 + request_time.microseconds / 1000, 1
                    ),
                    "remote": environ.get("REMOTE_ADDR"),
                    "bytes": getattr(resp, "sent", None),
                },
            },
        )
