"""The authorization endpoint as a pipeline of small named checks, run in order on one
`Request` (as node-oidc-provider's lib/actions/authorization/ does): each check either passes,
filling in what the next ones need, or answers (an error page, an error redirect to the
relying party, the login); the request that passes them all gets its code.

Before the redirect URI is known to be the client's, errors are pages for the person; after
it, they go back to the relying party (RFC 6749 4.1.2.1)."""

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from flask import redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from idp import audit
from idp.accounts import entitlements
from idp.authn.models import Session
from idp.authn.web import current_session
from idp.oidc import authorizations, clients
from idp.oidc import server as oauth
from idp.oidc.id_token_hints import verified_claims
from idp.oidc.models import Client, PendingAuthorization
from idp.oidc.way_back import resume_path
from idp.platform import clock, i18n, ratelimit
from idp.platform.error_pages import error_page
from idp.platform.extensions import db
from idp.platform.web import browser_authorizations, client_ip, remember_authorization
from idp.policy import MAX_AGE_LIMIT_SECONDS

# Authorization responses go back in the query, and only there.
RESPONSE_MODES = ("query",)


@dataclass
class Request:
    """What the checks learn about one authorization request, in the order they learn it."""

    status: int  # of every redirect: 302 after a GET, 303 after a POST
    client: Client | None = None
    max_age: int | None = None
    session: Session | None = None
    # This browser's request that was sent to log in for this very request, if it was.
    pending: PendingAuthorization | None = None
    login_reason: str | None = None
    grant: object | None = None  # Authlib's validated grant


Check = Callable[[Request], Response | tuple | None]


def invalid_request_page(reason: str):
    return render_template("oidc/invalid_request.html", reason=reason), 400


def deny(redirect_uri: str, error: str, description: str | None, state: str | None, status: int):
    return oauth.denial_response(
        oauth.AuthorizationDenied(redirect_uri, error, description, state), status
    )


# --- The checks, in the order they run ----------------------------------------------------------


def check_client(req: Request):
    req.client = clients.find(request.values.get("client_id"))
    if req.client is None or not clients.signs_people_in(req.client):
        return invalid_request_page("client")
    return None


def check_redirect_uri(req: Request):
    if not clients.redirect_uri_registered(req.client, request.values.get("redirect_uri")):
        return invalid_request_page("redirect_uri")
    return None


def check_parameters(req: Request):
    invalid = _parameter_refused()
    return _invalid_request(invalid, req.status) if invalid else None


def check_unsupported_parameters(req: Request):
    unsupported = _unsupported_parameter()
    if unsupported is None:
        return None
    error, description = unsupported
    return deny(
        request.values["redirect_uri"], error, description, request.values.get("state"), req.status
    )


def check_max_age(req: Request):
    try:
        req.max_age = _max_age()
    except ValueError as error:
        return _invalid_request(str(error), req.status)
    return None


def check_response_type(req: Request):
    response_type = request.values.get("response_type")
    if response_type == "code":
        return None
    # Refused here, before Authlib, which echoes the value into its error description and
    # fails on characters that RFC 6749 does not allow there.
    error = "invalid_request" if response_type is None else "unsupported_response_type"
    return deny(
        request.values["redirect_uri"], error, None, request.values.get("state"), req.status
    )


def check_login(req: Request):
    """Who is signed in, and whether this request needs a login first (NO_SESSION,
    FRESH_LOGIN): decided before Authlib validates, which must not see a session then."""
    req.session = current_session()
    req.pending = authorizations.claim(
        browser_authorizations(), _request_fingerprint(req.client.client_id), clock.now()
    )
    req.login_reason = _login_reason(req.session, req.max_age, req.pending)
    return None


def check_request(req: Request):
    """Authlib's checks of the grant: scope, PKCE, nonce, and the rest of RFC 6749."""
    try:
        req.grant = oauth.validate_authorization(None if req.login_reason else req.session)
    except oauth.AuthorizationInvalid:
        return invalid_request_page("request")
    except oauth.AuthorizationDenied as denied:
        return oauth.denial_response(denied, req.status)
    return None


def check_id_token_hint(req: Request):
    hint = request.values.get("id_token_hint")
    if not hint:
        return None
    hinted = verified_claims(hint)
    if hinted is None:
        return deny(
            req.grant.redirect_uri,
            "invalid_request",
            "bad id_token_hint",
            req.grant.request.payload.state,
            req.status,
        )
    # The relying party expects someone else than who is signed in here.
    if req.login_reason is None and hinted.get("sub") != req.session.user.subject:
        req.login_reason = OTHER_ACCOUNT
    return None


def check_prompt(req: Request):
    """A request that needs a login goes to it, unless prompt=none forbids asking."""
    if not req.login_reason:
        return None
    if "none" in request.values.get("prompt", "").split():
        return deny(
            req.grant.redirect_uri, "login_required", None, request.values.get("state"), req.status
        )
    return _login_redirect(req.client, req.session, req.login_reason, req.pending, req.status)


def check_entitlement(req: Request):
    if entitlements.admits(req.client.required_entitlement, req.session.user):
        return None
    return _entitlement_missing(req.grant, req.client, req.session, req.status)


PIPELINE: tuple[Check, ...] = (
    check_client,
    check_redirect_uri,
    check_parameters,
    check_unsupported_parameters,
    check_max_age,
    check_response_type,
    check_login,
    check_request,
    check_id_token_hint,
    check_prompt,
    check_entitlement,
)


def run(status: int):
    """The answer to the authorization request of this HTTP request."""
    i18n.remember_ui_locales()
    req = Request(status=status)
    for check in PIPELINE:
        answer = check(req)
        if answer is not None:
            return answer
    if req.pending is not None:
        authorizations.complete(req.pending)
    return oauth.authorization_response(req.grant, req.session, req.client, status)


# --- What the checks share ----------------------------------------------------------------------


# The parameters of an authorization request that we read, each with the longest value we take
# (far above what a relying party sends). Only these are kept while the request waits for a
# login, and they alone make up the request: others are ignored (OIDC Core 3.1.2.1), and an
# over-long or repeated one is refused. `request` and `request_uri` are refused before.
AUTHORIZATION_PARAMETERS = {
    "response_type": 64,
    "client_id": 64,
    "redirect_uri": 2048,
    "scope": 1024,
    "state": 2048,
    "nonce": 512,
    "code_challenge": 128,
    "code_challenge_method": 16,
    "response_mode": 32,
    "prompt": 64,
    "max_age": 32,
    "login_hint": 256,
    "id_token_hint": 8192,
    "ui_locales": 256,
    "claims_locales": 256,
    "acr_values": 256,
    "display": 16,
    authorizations.PURPOSE_PARAMETER: 300,  # OpenID Connect for Identity Assurance: 3 to 300
}


def _authorization_parameters() -> list[tuple[str, str]]:
    """The request's parameters that we read (see AUTHORIZATION_PARAMETERS), as given."""
    return [
        (name, value)
        for name, value in request.values.items(multi=True)
        if name in AUTHORIZATION_PARAMETERS
    ]


def _parameter_refused() -> str | None:
    """Why the request's parameters are refused (one too long, or given twice), or None."""
    seen = set()
    for name, value in _authorization_parameters():
        if name in seen:
            return f"{name} must not be given more than once"
        seen.add(name)
        if len(value) > AUTHORIZATION_PARAMETERS[name]:
            return f"{name} is too long"
    return None


def _invalid_request(description: str, status: int) -> Response:
    """The error redirect for a request whose client and redirect URI were checked. An
    over-long state does not go back (it is refused before anything echoes it)."""
    state = request.values.get("state")
    if state is not None and len(state) > AUTHORIZATION_PARAMETERS["state"]:
        state = None
    denied = oauth.AuthorizationDenied(
        request.values["redirect_uri"], "invalid_request", description, state
    )
    return oauth.denial_response(denied, status)


def _request_fingerprint(client_id: str) -> str:
    """Names this very authorization request: every parameter that we read, so a new request
    (new state, nonce and PKCE challenge) never matches an old one, and the request resumed
    with the parameters that were kept is still the one that was made."""
    items = sorted(_authorization_parameters())
    digest = hashlib.sha256(json.dumps([client_id, items]).encode()).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()


def _max_age() -> int | None:
    """The max_age asked for in seconds, at most MAX_AGE_LIMIT_SECONDS; ValueError unless a
    non-negative integer. Empty counts as absent (RFC 6749 3.1)."""
    value = request.values.get("max_age")
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise ValueError("max_age must be a non-negative integer")
    # Long digit strings are huge numbers: no need to parse them (int() refuses 4300 digits).
    return MAX_AGE_LIMIT_SECONDS if len(value) > 10 else min(int(value), MAX_AGE_LIMIT_SECONDS)


# Why password and PIN must be asked (again) before a code is issued (as node-oidc-provider's
# interaction checks name them).
NO_SESSION = "no_session"
FRESH_LOGIN = "fresh_login"  # prompt=login, or a max_age that the session exceeds: a step-up
OTHER_ACCOUNT = "other_account"  # the id_token_hint names someone else than who is signed in


def _fresh_login_asked(session, max_age: int | None) -> bool:
    stale = max_age is not None and clock.now() - session.auth_time > timedelta(seconds=max_age)
    return stale or "login" in request.values.get("prompt", "").split()


def _login_reason(session, max_age: int | None, pending) -> str | None:
    """Why a login is needed, or None. pending: this browser's request that was sent to log
    in for this very request, if it was."""
    if session is None:
        return NO_SESSION
    if pending is not None and pending.user_id not in (None, session.user_id):
        # A step-up is confirmed by the account that was asked, never by another one.
        return FRESH_LOGIN
    if not _fresh_login_asked(session, max_age):
        return None
    # Back from the login that prompt=login or max_age asked for: it must have happened since.
    if pending is None or session.auth_time < pending.login_asked_at:
        return FRESH_LOGIN
    return None


def _login_redirect(client, session, reason: str, pending, status: int):
    """To the hosted login, which comes back to this same request through a server-side
    pending request that this browser's flow cookie holds the handle of."""
    wait = ratelimit.take_pending_authorization(client_ip())
    if wait is not None:
        page, code = error_page(429)
        return page, code, {"Retry-After": str(wait)}
    step_up_user = None
    if pending is not None and pending.user is not None:
        step_up_user = pending.user
    elif reason == FRESH_LOGIN:
        step_up_user = session.user
    _, handle = authorizations.start(
        client,
        _authorization_parameters(),
        _request_fingerprint(client.client_id),
        clock.now(),
        step_up_user=step_up_user,
    )
    db.session.commit()
    remember_authorization(handle)
    login_params = {"next": resume_path(handle)}
    if request.values.get("login_hint"):
        login_params["username"] = request.values["login_hint"][:64]
    return redirect(url_for("login.form", **login_params), code=status)


def _unsupported_parameter() -> tuple[str, str] | None:
    """The error and description for a parameter that asks for what we do not do: a request
    object by value or by reference (OIDC Core 6.1, 6.2) or another response mode. Ignoring
    one would answer a different request than the one that was made. Empty counts as absent
    (RFC 6749 3.1)."""
    if request.values.get("request"):
        return "request_not_supported", "request objects are not supported"
    if request.values.get("request_uri"):
        return "request_uri_not_supported", "request_uri is not supported"
    if request.values.get("response_mode", "query") not in ("", *RESPONSE_MODES):
        return "invalid_request", "response_mode must be query"
    return None


def _entitlement_missing(grant, client, session, status):
    """The person is signed in but has no contract for the product this client serves: they
    learn why here, instead of landing in an application that has nothing for them."""
    audit.record(
        "authorization.refused",
        now=clock.now(),
        actor="user",
        user=session.user,
        ip=client_ip(),
        client_id=client.client_id,
        missing_entitlement=client.required_entitlement,
    )
    db.session.commit()
    if "none" in request.values.get("prompt", "").split():
        denied = oauth.AuthorizationDenied(
            grant.redirect_uri, "access_denied", None, grant.request.payload.state
        )
        return oauth.denial_response(denied, status)
    page = render_template("oidc/entitlement_missing.html", client=client, user=session.user)
    return page, 403
