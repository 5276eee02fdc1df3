"""Which language a page speaks: the visitor's choice (a cookie set by the switch), else the
browser's Accept-Language, else German."""

from flask import Blueprint, current_app, has_request_context, redirect, request

from idp.web import safe_return_path

LANGUAGE_COOKIE = "idp_lang"

bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    languages = current_app.config["LANGUAGES"]
    if not has_request_context():
        return languages[0]
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in languages:
        return chosen
    return request.accept_languages.best_match(languages) or languages[0]


@bp.get("/language/<code>")
def switch(code: str):
    target = safe_return_path(request.args.get("next")) or "/"
    response = redirect(target)
    if code in current_app.config["LANGUAGES"]:
        response.set_cookie(
            LANGUAGE_COOKIE,
            code,
            max_age=365 * 24 * 3600,
            secure=current_app.config["SESSION_COOKIE_SECURE"],
            httponly=True,
            samesite="Lax",
        )
    return response
