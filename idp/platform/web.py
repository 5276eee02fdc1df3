"""What every browser-facing view shares: the client's address, the flow state kept in Flask's
signed cookie, and safe return paths."""

from flask import request, session
from flask.sessions import SecureCookieSessionInterface

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


# The handles of the authorization requests that /authorize sent this browser to log in for
# (idp.oidc.way_back), newest last. They must outlive the login steps that they asked
# for; a logout forgets them.
FLOW_AUTHORIZATIONS = "authorizations"
MAX_BROWSER_AUTHORIZATIONS = 5


def browser_authorizations() -> list[str]:
    handles = session.get(FLOW_AUTHORIZATIONS)
    if not isinstance(handles, list):
        return []
    return [handle for handle in handles if isinstance(handle, str)]


def remember_authorization(handle: str) -> None:
    handles = [*browser_authorizations(), handle]
    session[FLOW_AUTHORIZATIONS] = handles[-MAX_BROWSER_AUTHORIZATIONS:]


def _clear_flow(*, keep_authorizations: bool) -> None:
    handles = browser_authorizations() if keep_authorizations else None
    session.clear()
    if handles:
        session[FLOW_AUTHORIZATIONS] = handles


def start_flow(transaction_token: str) -> None:
    """A new login or activation step: drop whatever flow state the browser had (another
    person's half-done login on a shared computer must not carry over)."""
    _clear_flow(keep_authorizations=True)
    session[FLOW_TRANSACTION] = transaction_token


def flow_transaction_token() -> str | None:
    return session.get(FLOW_TRANSACTION)


def end_flow(*, keep_authorizations: bool = True) -> None:
    # A new CSRF token and no leftover state after every change of who is logged in; a logout
    # also forgets the authorizations that wait for a login.
    _clear_flow(keep_authorizations=keep_authorizations)


def safe_return_path(path: str | None) -> str | None:
    """A path on this server, or None: never another origin (open redirect)."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")):
        return None
    if any(c in path for c in "\\\r\n\t") or any(ord(c) < 32 for c in path):
        return None
    return path
