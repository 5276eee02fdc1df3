"""OpenID Connect: discovery, JWKS, the authorization pipeline, token, userinfo, revocation,
introspection and RP-initiated logout.

Two blueprints: `oidc` serves browsers (errors as pages), `oidc_api` serves relying parties
(errors as JSON, no CSRF token: they authenticate themselves)."""

import base64
import hashlib
import json
from datetime import timedelta
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)

from idp import audit
from idp.accounts import entitlements
from idp.authn import sessions, transactions
from idp.authn.models import TransactionState
from idp.oidc import authorizations, clients, keys, token_claims, tokens
from idp.oidc import server as oauth
from idp.platform import clock, i18n, ratelimit
from idp.platform.error_pages import error_page
from idp.platform.extensions import csrf, db
from idp.platform.web import (
    browser_authorizations,
    cancellable,
    clear_session_cookie,
    client_ip,
    current_session,
    end_flow,
    flow_transaction_token,
    remember_authorization,
    resume_path,
    way_back_of,
)

bp = Blueprint("oidc", __name__)
api = Blueprint("oidc_api", __name__)
csrf.exempt(api)

# A larger max_age (about 31 years) means the same; timedelta overflows near 10**14 days.
MAX_AGE_LIMIT = 10**9
# Header types of the tokens we sign that are not ID tokens: never an id_token_hint.
NOT_ID_TOKEN_TYPES = ("at+jwt", "logout+jwt")
DISCOVERY_MAX_AGE = 3600
# Authorization responses go back in the query, and only there.
RESPONSE_MODES = ("query",)
JWKS_MAX_AGE = 300


def discovery_document(config) -> dict:
    issuer = config["ISSUER"]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/jwks.json",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "end_session_endpoint": f"{issuer}/end_session",
        "scopes_supported": list(token_claims.SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": list(RESPONSE_MODES),
        "grant_types_supported": list(oauth.GRANT_TYPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(keys.ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": oauth.TOKEN_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": oauth.TOKEN_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": oauth.SECRET_METHODS,
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "sid",
            "azp",
            "at_hash",
            *[claim for claims in token_claims.CLAIMS_BY_SCOPE.values() for claim in claims],
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "acr_values_supported": [token_claims.ACR],
        "prompt_values_supported": ["none", "login"],
        "ui_locales_supported": list(config["LANGUAGES"]),
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
    }


def precompute_discovery(app) -> None:
    """Discovery depends on configuration only: render it once per process."""
    app.extensions["idp.discovery"] = json.dumps(discovery_document(app.config)).encode()


def _public_json(body: bytes, max_age: int) -> Response:
    response = Response(body, mimetype="application/json")
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@api.get("/.well-known/openid-configuration")
def discovery():
    return _public_json(current_app.extensions["idp.discovery"], DISCOVERY_MAX_AGE)


@api.get("/jwks.json")
def jwks():
    # The first key is made on first use; publish it before anything needs it.
    return _public_json(keys.jwks_document(clock.now()), JWKS_MAX_AGE)


# --- Authorization -----------------------------------------------------------------------------


def invalid_request_page(reason: str):
    return render_template("oidc/invalid_request.html", reason=reason), 400


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
    """The max_age asked for in seconds, at most MAX_AGE_LIMIT; ValueError unless a
    non-negative integer. Empty counts as absent (RFC 6749 3.1)."""
    value = request.values.get("max_age")
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise ValueError("max_age must be a non-negative integer")
    # Long digit strings are huge numbers: no need to parse them (int() refuses 4300 digits).
    return MAX_AGE_LIMIT if len(value) > 10 else min(int(value), MAX_AGE_LIMIT)


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


def _refuse_unsupported_parameters(status: int) -> Response | None:
    """The error redirect for an unsupported parameter (see above), for a request whose client
    and redirect URI were checked; None when there is none."""
    unsupported = _unsupported_parameter()
    if unsupported is None:
        return None
    error, description = unsupported
    denied = oauth.AuthorizationDenied(
        request.values["redirect_uri"], error, description, request.values.get("state")
    )
    return oauth.denial_response(denied, status)


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt
def authorize():
    status = 303 if request.method == "POST" else 302
    i18n.remember_ui_locales()
    client = clients.find(request.values.get("client_id"))
    if client is None or not clients.signs_people_in(client):
        return invalid_request_page("client")
    if not clients.redirect_uri_registered(client, request.values.get("redirect_uri")):
        return invalid_request_page("redirect_uri")
    invalid = _parameter_refused()
    if invalid:
        return _invalid_request(invalid, status)
    refused = _refuse_unsupported_parameters(status)
    if refused is not None:
        return refused

    try:
        max_age = _max_age()
    except ValueError as error:
        return _invalid_request(str(error), status)

    response_type = request.values.get("response_type")
    if response_type != "code":
        # Refused here, before Authlib, which echoes the value into its error description and
        # fails on characters that RFC 6749 does not allow there.
        denied = oauth.AuthorizationDenied(
            request.values["redirect_uri"],
            "invalid_request" if response_type is None else "unsupported_response_type",
            None,
            request.values.get("state"),
        )
        return oauth.denial_response(denied, status)

    session = current_session()
    pending = authorizations.claim(
        browser_authorizations(), _request_fingerprint(client.client_id), clock.now()
    )
    reason = _login_reason(session, max_age, pending)
    try:
        grant = oauth.validate_authorization(None if reason else session)
    except oauth.AuthorizationInvalid:
        return invalid_request_page("request")
    except oauth.AuthorizationDenied as denied:
        return oauth.denial_response(denied, status)
    hint = request.values.get("id_token_hint")
    if hint:
        hinted = _verified_claims(hint)
        if hinted is None:
            denied = oauth.AuthorizationDenied(
                grant.redirect_uri,
                "invalid_request",
                "bad id_token_hint",
                grant.request.payload.state,
            )
            return oauth.denial_response(denied, status)
        # The relying party expects someone else than who is signed in here.
        if reason is None and hinted.get("sub") != session.user.subject:
            reason = OTHER_ACCOUNT
    if reason:
        if "none" in request.values.get("prompt", "").split():
            denied = oauth.AuthorizationDenied(
                grant.redirect_uri, "login_required", None, request.values.get("state")
            )
            return oauth.denial_response(denied, status)
        return _login_redirect(client, session, reason, pending, status)
    if not entitlements.admits(client, session.user):
        return _entitlement_missing(grant, client, session, status)
    if pending is not None:
        authorizations.complete(pending)
    return oauth.authorization_response(grant, session, client, status)


@bp.get("/authorize/resume/<handle>")
def resume(handle):
    """Back to a request that waits for a login: to /authorize with its own parameters, where
    every check runs again. The back button after it completed: the relying party's page. A
    handle that this browser does not hold (another's, used up, expired) leads to the login."""
    row = authorizations.find(handle, browser_authorizations(), clock.now())
    if row is not None and row.state == TransactionState.PENDING:
        query = urlencode([tuple(pair) for pair in row.params])
        return redirect(url_for("oidc.authorize") + "?" + query)
    if row is not None and row.state == TransactionState.COMPLETED and current_session():
        return redirect(clients.landing_uri(row.client) or current_app.config["PORTAL_URL"])
    return redirect(url_for("login.form"))


@bp.post("/authorize/cancel")
def cancel():
    """The person cancels the login that a relying party's request waits for (the login and
    PIN pages offer it): back to the relying party with access_denied (OIDC Core 3.1.2.6), its
    state and our issuer (RFC 9207), as Keycloak's cancel does. A POST with the CSRF token,
    for a request that this very browser holds and that still waits; each request once. Its
    redirect URI was checked when the request was made, and is checked again."""
    way_back = way_back_of(request.form.get("next"))
    row = way_back.authorization if cancellable(way_back) else None
    if row is None or not authorizations.cancel(row, clock.now()):
        db.session.rollback()
        return redirect(url_for("login.form"), code=303)
    params = dict(row.params)
    if not clients.redirect_uri_registered(row.client, params.get("redirect_uri")):
        db.session.rollback()
        return invalid_request_page("redirect_uri")
    db.session.commit()
    if transactions.return_to_of(flow_transaction_token()) == way_back.path:
        end_flow()  # the password or PIN step of that login ends with it
    denied = oauth.AuthorizationDenied(
        params["redirect_uri"], "access_denied", None, params.get("state")
    )
    return oauth.denial_response(denied, 303)


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


# --- Protocol endpoints for relying parties ----------------------------------------------------


@api.post("/token")
def token():
    return oauth.token_response()


@api.route("/userinfo", methods=["GET", "POST"])
def userinfo():
    value = None
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        value = header[7:].strip()
    elif request.method == "POST" and request.mimetype == "application/x-www-form-urlencoded":
        value = request.form.get("access_token")
    found = tokens.authenticate_access_token(value, clock.now())
    if found is None:
        response = Response(
            json.dumps({"error": "invalid_token"}), status=401, mimetype="application/json"
        )
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    return token_claims.user_claims(found.grant.user, found.scope)


@api.post("/revoke")
def revoke():
    return oauth.revocation_response()


@api.post("/introspect")
def introspect():
    return oauth.introspection_response()


# --- RP-initiated logout -----------------------------------------------------------------------


def _verified_claims(id_token: str) -> dict | None:
    """The claims of an ID token that we signed (expired or not: it is only a hint). Access and
    logout tokens are ours too, but no ID tokens: they must not speak for a session."""
    try:
        if keys.token_type(id_token) in NOT_ID_TOKEN_TYPES:
            return None
        claims = keys.verify(id_token, clock.now())
    except keys.InvalidJWT:
        return None
    return claims if claims.get("iss") == current_app.config["ISSUER"] else None


def _hinted_client(hint: str | None):
    """The client and claims of a valid id_token_hint, else (None, None)."""
    claims = _verified_claims(hint) if hint else None
    if claims is None or not isinstance(claims.get("aud"), str):
        return None, None
    return clients.find(claims["aud"]), claims


@bp.route("/end_session", methods=["GET", "POST"])
@csrf.exempt
def end_session():
    hint = request.values.get("id_token_hint")
    client, claims = _hinted_client(hint)
    if hint and client is None:
        return invalid_request_page("id_token_hint")
    requested_client = request.values.get("client_id")
    if requested_client is not None and client is not None:
        if requested_client != client.client_id:
            return invalid_request_page("client")
    elif client is None:
        client = clients.find(requested_client)
    post_logout_uri = request.values.get("post_logout_redirect_uri")
    if post_logout_uri and (
        client is None or not clients.post_logout_uri_registered(client, post_logout_uri)
    ):
        return invalid_request_page("post_logout_redirect_uri")

    session = current_session()
    if session is not None and (claims is None or claims.get("sid") != session.sid):
        # Without proof that the relying party speaks for this very session, the person decides.
        return redirect(url_for("login.confirm_logout"))
    if session is not None:
        after_commit = sessions.end(session, clock.now())
        audit.record(
            "logout",
            now=clock.now(),
            actor=f"client:{client.client_id}",
            user=session.user,
            ip=client_ip(),
            sid=session.sid,
        )
        db.session.commit()
        after_commit.run()
    end_flow(keep_authorizations=False)
    if post_logout_uri:
        target = post_logout_uri
        state = request.values.get("state")
        if state:
            target += ("&" if "?" in target else "?") + urlencode({"state": state})
        response = redirect(target, code=303 if request.method == "POST" else 302)
    else:
        response = redirect(url_for("login.logged_out"), code=303)
    clear_session_cookie(response)
    return response
