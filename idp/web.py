"""What the browser-facing views share: the client's address, the login session cookie, the
flow state kept in Flask's signed cookie, and safe return paths."""

from flask import current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface

from idp.models import Session
from idp.services import clock, sessions
from idp.services.sms_guard import SmsRefused

FLOW_TRANSACTION = "tx"


class FlowCookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie session. A request without the cookie (every protocol request:
    token, userinfo, keys) starts an empty session without building the signer first."""

    def open_session(self, app, request):
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def client_ip() -> str | None:
    return request.remote_addr


def user_agent() -> str | None:
    return request.headers.get("User-Agent")


def current_session() -> Session | None:
    """The live login session of this browser (cached for the request)."""
    if "idp_session" not in g:
        token = request.cookies.get(current_app.config["AUTH_COOKIE_NAME"])
        g.idp_session = sessions.load(token, clock.now())
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


# What /authorize asked this browser to log in for, and when (see views.oidc): it must outlive
# the login steps that it asked for. It grants nothing by itself: only a login after that moment
# satisfies it, for the very same authorization request, once.
FLOW_PENDING_LOGINS = "oidc_logins"


def _clear_flow(*, keep_pending_logins: bool) -> None:
    pending = session.get(FLOW_PENDING_LOGINS) if keep_pending_logins else None
    session.clear()
    if pending:
        session[FLOW_PENDING_LOGINS] = pending


def start_flow(transaction_token: str) -> None:
    """A new login or activation step: drop whatever flow state the browser had (another
    person's half-done login on a shared computer must not carry over)."""
    _clear_flow(keep_pending_logins=True)
    session[FLOW_TRANSACTION] = transaction_token


def flow_transaction_token() -> str | None:
    return session.get(FLOW_TRANSACTION)


def end_flow(*, keep_pending_logins: bool = True) -> None:
    # A new CSRF token and no leftover state after every change of who is logged in; a logout
    # also forgets the authorizations that wait for a login.
    _clear_flow(keep_pending_logins=keep_pending_logins)


def sms_error(error: Exception) -> tuple[str, int]:
    """The page's error key and status when a PIN SMS was not sent: refused by our own caps
    (429, try later) or failed at the provider (503, try again)."""
    if isinstance(error, SmsRefused):
        return "sms_refused", 429
    return "sms_failed", 503


def safe_return_path(path: str | None) -> str | None:
    """A path on this server, or None: never another origin (open redirect)."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return None
    if any(c in path for c in "\\\r\n\t") or any(ord(c) < 32 for c in path):
        return None
    return path
