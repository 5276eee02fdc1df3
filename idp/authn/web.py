"""What the browser-facing views of logins share: the login session of this browser and its
cookie, and the answer when a PIN SMS was not sent."""

from flask import current_app, g, request

from idp.authn import sessions
from idp.authn.models import Session
from idp.platform import clock
from idp.senders.sms_guard import SmsRefused


def current_session(*, touch: bool = True) -> Session | None:
    """The live login session of this browser (cached for the request). Untouched (nothing
    committed) inside a confirmation's finish, whose claim must commit with what it confirms."""
    if "idp_session" not in g:
        token = request.cookies.get(current_app.config["AUTH_COOKIE_NAME"])
        g.idp_session = sessions.load(token, clock.now(), touch=touch)
    return g.idp_session


def set_session_cookie(response, token: str) -> None:
    config = current_app.config
    response.set_cookie(
        config["AUTH_COOKIE_NAME"],
        token,
        # A browser-session cookie: the server enforces idle and absolute lifetimes.
        secure=config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
        path="/",
    )


def clear_session_cookie(response) -> None:
    config = current_app.config
    response.delete_cookie(
        config["AUTH_COOKIE_NAME"],
        secure=config["SESSION_COOKIE_SECURE"],
        httponly=True,
        samesite="Lax",
        path="/",
    )


def sms_error(error: Exception) -> tuple[str, int]:
    """The page's error key and status when a PIN SMS was not sent: refused by our own caps
    (429, try later) or failed at the provider (503, try again)."""
    if isinstance(error, SmsRefused):
        return "sms_refused", 429
    return "sms_failed", 503
