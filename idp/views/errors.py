"""Friendly error pages for people; protocol endpoints answer in their own format instead."""

from flask import Flask, current_app, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from idp.extensions import db


def wants_json() -> bool:
    return request.blueprint in current_app.config.get("JSON_ERROR_BLUEPRINTS", ())


def error_page(status: int, kind: str | None = None):
    if wants_json():
        return {"error": kind or "server_error"}, status
    return render_template("errors/error.html", status=status, kind=kind), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_failed(error):
        return error_page(400, "csrf")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if error.code is None or error.code < 400:
            return error
        response = error.get_response()
        page, status = error_page(error.code)
        if isinstance(page, str):
            response.set_data(page)
            response.content_type = "text/html; charset=utf-8"
            return response
        return page, status

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        db.session.rollback()
        current_app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_page(InternalServerError.code)
