"""What the browser-facing views share: the client's address, the login session cookie, the
flow state kept in Flask's signed cookie, safe return paths, and the way back to the relying
party whose authorization request waits for a login."""

from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from flask import current_app, g, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from idp.authn import sessions
from idp.authn.models import Session, TransactionState
from idp.oidc import authorizations
from idp.oidc.models import PendingAuthorization
from idp.platform import clock
from idp.platform.secrets import digest
from idp.senders.sms_guard import SmsRefused

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


# The handles of the authorization requests that /authorize sent this browser to log in for
# (services.authorizations), newest last. They must outlive the login steps that they asked
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


def resume_path(handle: str) -> str:
    return url_for("oidc.resume", handle=handle)


class WayBack(NamedTuple):
    """Where a login goes on to: a page of this site, or the address that resumes this
    browser's request that waits for the login (then `authorization` is that request)."""

    path: str
    authorization: PendingAuthorization | None = None


def waiting_authorization() -> WayBack | None:
    """The browser's newest request that waits for a login. The login page offers it as a
    choice and never continues to it by itself: any page can send a browser to /authorize, and
    must not decide where the person's next login at the IdP goes."""
    row = authorizations.newest(browser_authorizations(), clock.now(), pending_only=True)
    if row is None:
        return None
    return WayBack(resume_path(_handles_by_digest()[row.handle_digest]), row)


def _handles_by_digest() -> dict[str, str]:
    return {digest(handle): handle for handle in browser_authorizations()}


def way_back_of(path: str | None) -> WayBack | None:
    """Where a login goes on to, by its `next`. The path is read as the browser and the URL
    map will read it, percent-decoded (`/authorize/resum%65/...` resumes too), and a resume
    address is written anew: the login form's step-up check and the redirect after the PIN
    must see one and the same request. A path that the URL map would redirect first (merged
    slashes) is refused, and so is a request that this browser does not hold."""
    path = safe_return_path(path)
    if not path:
        return None
    try:
        endpoint, args = current_app.url_map.bind("").match(
            unquote(urlsplit(path).path), method="GET"
        )
    except RequestRedirect:
        return None
    except HTTPException:
        return WayBack(path)  # no page of ours, but nothing that resumes either
    if endpoint != "oidc.resume":
        return WayBack(path)
    row = authorizations.find(args["handle"], browser_authorizations(), clock.now())
    return WayBack(resume_path(args["handle"]), row) if row is not None else None


def cancellable(way_back: WayBack | None) -> str | None:
    """The way back of a login that a relying party's request still waits for: the pages of
    that login offer to cancel it (see oidc.cancel). None for any other login."""
    if way_back is None or way_back.authorization is None:
        return None
    if way_back.authorization.state != TransactionState.PENDING:
        return None
    return way_back.path


def back_to_completed_authorization() -> str | None:
    """The back button after a login that went back to a relying party: the resume address of
    that request (which leads to the relying party's page), while the session lives."""
    if current_session() is None:
        return None
    row = authorizations.newest(browser_authorizations(), clock.now(), pending_only=False)
    if row is None or row.state != TransactionState.COMPLETED:
        return None
    return resume_path(_handles_by_digest()[row.handle_digest])


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
