"""OpenID Connect: discovery, JWKS, the authorization pipeline, token, userinfo, revocation,
introspection and RP-initiated logout.

Two blueprints: `oidc` serves browsers (errors as pages), `oidc_api` serves relying parties
(errors as JSON, no CSRF token: they authenticate themselves)."""

import json
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    request,
    url_for,
)

from idp.authn import login, transactions, way_back
from idp.authn.models import TransactionState
from idp.authn.web import clear_session_cookie, current_session
from idp.oidc import authorization, authorizations, clients, keys, token_claims, tokens
from idp.oidc import server as oauth
from idp.oidc.authorization import invalid_request_page
from idp.oidc.id_token_hints import hinted_client
from idp.platform import clock
from idp.platform.extensions import csrf, db
from idp.platform.web import browser_authorizations, client_ip, end_flow, flow_transaction_token
from idp.policy import DISCOVERY_MAX_AGE_SECONDS, JWKS_MAX_AGE_SECONDS

bp = Blueprint("oidc", __name__)
api = Blueprint("oidc_api", __name__)
csrf.exempt(api)


def _public_json(body: bytes, max_age: int) -> Response:
    response = Response(body, mimetype="application/json")
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@api.get("/.well-known/openid-configuration")
def discovery():
    return _public_json(current_app.extensions["idp.discovery"], DISCOVERY_MAX_AGE_SECONDS)


@api.get("/jwks.json")
def jwks():
    # The first key is made on first use; publish it before anything needs it.
    return _public_json(keys.jwks_document(clock.now()), JWKS_MAX_AGE_SECONDS)


# --- Authorization -----------------------------------------------------------------------------


@bp.route("/authorize", methods=["GET", "POST"])
@csrf.exempt
def authorize():
    return authorization.run(status=303 if request.method == "POST" else 302)


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
    back = way_back.of(request.form.get("next"))
    row = back.waiting.row if way_back.cancellable(back) else None
    if row is None or not authorizations.cancel(row, clock.now()):
        db.session.rollback()
        return redirect(url_for("login.form"), code=303)
    params = dict(row.params)
    if not clients.redirect_uri_registered(row.client, params.get("redirect_uri")):
        db.session.rollback()
        return invalid_request_page("redirect_uri")
    db.session.commit()
    if transactions.return_to_of(flow_transaction_token()) == back.path:
        end_flow()  # the password or PIN step of that login ends with it
    denied = oauth.AuthorizationDenied(
        params["redirect_uri"], "access_denied", None, params.get("state")
    )
    return oauth.denial_response(denied, 303)


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


@bp.route("/end_session", methods=["GET", "POST"])
@csrf.exempt
def end_session():
    hint = request.values.get("id_token_hint")
    client, claims = hinted_client(hint)
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
        actor = f"client:{client.client_id}"
        after_commit = login.log_out(session, clock.now(), actor=actor, ip=client_ip())
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
