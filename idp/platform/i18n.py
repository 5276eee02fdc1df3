"""Which language a page speaks: the visitor's choice (a cookie set by the switch), else the
language a relying party asked for with `ui_locales` at /authorize (for that login), else the
browser's Accept-Language, else German."""

from datetime import datetime, timedelta

from babel.dates import get_timezone_name
from flask import (
    Blueprint,
    after_this_request,
    current_app,
    has_request_context,
    redirect,
    request,
)
from flask_babel import format_time, get_locale, gettext, to_user_timezone

from idp.platform.web import safe_return_path

LANGUAGE_COOKIE = "idp_lang"
# Lives as long as the browser session: the login that the relying party started, not longer.
UI_LOCALES_COOKIE = "idp_ui_locales"

bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    languages = current_app.config["LANGUAGES"]
    if not has_request_context():
        return languages[0]
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in languages:
        return chosen
    asked = requested_ui_locale(request.args.get("ui_locales")) or request.cookies.get(
        UI_LOCALES_COOKIE
    )
    if asked in languages:
        return asked
    return request.accept_languages.best_match(languages) or languages[0]


def requested_ui_locale(ui_locales: str | None) -> str | None:
    """The first language of a space-separated `ui_locales` list that the pages speak
    ("en-US" counts as "en")."""
    languages = current_app.config["LANGUAGES"]
    for tag in (ui_locales or "").split()[:10]:
        for candidate in (tag, tag.split("-")[0]):
            if candidate.lower() in languages:
                return candidate.lower()
    return None


def remember_ui_locales() -> None:
    """At /authorize: the hosted pages of the login that follows speak the language asked for."""
    asked = requested_ui_locale(request.values.get("ui_locales"))
    if asked is None:
        return

    @after_this_request
    def set_cookie(response):
        response.set_cookie(
            UI_LOCALES_COOKIE,
            asked,
            secure=current_app.config["SESSION_COOKIE_SECURE"],
            httponly=True,
            samesite="Lax",
        )
        return response


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
        if UI_LOCALES_COOKIE in request.cookies:
            # The person's own choice outranks what a relying party asked for.
            response.delete_cookie(UI_LOCALES_COOKIE)
    return response


@bp.app_template_filter("local_time")
def local_time(moment: datetime) -> str:
    """A moment as the visitor reads a clock: the time in her language's format and the site's
    time zone (BABEL_DEFAULT_TIMEZONE), to the minute, rounded up, so that "try again at" is
    never too early; with the zone named ("05:06 Uhr (MEZ)", "5:06 AM CET"), since the
    visitor may be elsewhere."""
    minute = moment.replace(second=0, microsecond=0)
    if minute < moment:
        minute += timedelta(minutes=1)
    return gettext(
        "%(time)s %(zone)s", time=format_time(minute, format="short"), zone=zone_name(minute)
    )


def zone_name(moment: datetime) -> str:
    """The short name of the site's time zone at that moment, in the visitor's language where
    it has one ("MEZ", "MESZ"); else the zone database's ("CET", "CEST"): English has no short
    name of its own for most zones (Babel would say "+0100")."""
    local = to_user_timezone(moment)
    name = get_timezone_name(local, "short", locale=get_locale())
    return name if name.isalpha() else local.tzname()
