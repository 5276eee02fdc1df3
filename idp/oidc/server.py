"""All Authlib glue: the authorization server, its grants and endpoints, and thin adapters
that show our rows to Authlib. Decisions live in idp.services; this module only translates."""

from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    grants,
)
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode
from flask import Flask, Response, current_app, g, redirect, request

from idp import policy
from idp.oidc import clients, token_claims, token_store, tokens
from idp.oidc.models import Client, TokenKind
from idp.oidc.token_store import ClientRecord, CodeRecord, GrantRecord, TokenRecord
from idp.platform import clock, metrics
from idp.platform.secrets import new_token

SECRET_METHODS = ["client_secret_basic", "client_secret_post"]
TOKEN_AUTH_METHODS = [*SECRET_METHODS, "none"]
CODE_FLOW_GRANT_TYPES = ("authorization_code", "refresh_token")
GRANT_TYPES = (*CODE_FLOW_GRANT_TYPES, "client_credentials")
# The audience of a service token, by scope: the one API the scope opens.
SERVICE_AUDIENCES = {"scim": "/scim/v2"}


def service_audience(scope: str) -> str:
    return current_app.config["ISSUER"] + SERVICE_AUDIENCES[scope]


class ClientAdapter(ClientMixin):
    def __init__(self, row: ClientRecord):
        self.row = row
        self.client_id = row.client_id

    def get_client_id(self):
        return self.row.client_id

    def get_default_redirect_uri(self):
        # OpenID Connect requires redirect_uri in every request: no default.
        return None

    def get_allowed_scope(self, scope):
        if not clients.signs_people_in(self.row):
            return " ".join(clients.service_scopes(self.row))
        return " ".join(s for s in (scope or "").split() if s in policy.SCOPES)

    def check_redirect_uri(self, redirect_uri):
        return clients.redirect_uri_registered(self.row, redirect_uri)

    def check_client_secret(self, client_secret):
        return clients.secret_matches(self.row, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        if clients.is_public(self.row):
            return method == "none"
        return method in SECRET_METHODS

    def check_response_type(self, response_type):
        return response_type == "code" and clients.signs_people_in(self.row)

    def check_grant_type(self, grant_type):
        if clients.signs_people_in(self.row):
            return grant_type in CODE_FLOW_GRANT_TYPES
        return grant_type == "client_credentials"


class CodeAdapter:
    """The authorization code as Authlib sees it."""

    def __init__(self, row: CodeRecord):
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self):
        return self.row.redirect_uri

    def get_scope(self):
        return self.row.grant.scope


class TokenAdapter:
    def __init__(self, row: TokenRecord):
        self.row = row

    def check_client(self, client):
        return self.row.grant.client.id == client.row.id

    def get_scope(self):
        return self.row.scope

    def is_expired(self):
        return not tokens.is_active(self.row, clock.now())

    def is_revoked(self):
        return self.row.revoked_at is not None


def _refresh_token_record(value: str | None) -> TokenRecord | None:
    """The refresh token sent with this request, read once: the client authentication and the
    grant both ask for it."""
    looked_up = g.setdefault("idp_refresh_records", {})
    if value not in looked_up:
        looked_up[value] = token_store.find_token(value, TokenKind.REFRESH)
    return looked_up[value]


def _query_client(client_id):
    # A refresh grant finds its client with the refresh token, in one statement: Authlib
    # authenticates the client first, then reads the token, and one joined SELECT serves both.
    # Reading a token before its client is authenticated changes nothing: the read has no
    # effect, and every check still follows.
    row = None
    if request.form.get("grant_type") == "refresh_token":
        token = _refresh_token_record(request.form.get("refresh_token"))
        if token is not None and token.grant.client.client_id == client_id:
            row = token.grant.client
    if row is None:
        row = token_store.find_client(client_id)
    return ClientAdapter(row) if row is not None else None


def _authenticate_basic(query_client, request):
    """client_secret_basic, where credentials that are not base64 of UTF-8 text are no
    client's (every client_id and secret we issue is ASCII): Authlib raises on them."""
    try:
        return authenticate_client_secret_basic(query_client, request)
    except ValueError:  # UnicodeDecodeError, and non-ASCII characters in the base64 text
        return None


def _save_token(token, request):
    if request.user is None:
        # Client credentials: checked by signature (see token_claims.service_access_token).
        return
    # The grant travels as Authlib's "user" (a GrantRecord, with its user and its client).
    # A refresh grant's old token is claimed in the same step (see tokens.store).
    replacing = request.refresh_token.row if request.refresh_token is not None else None
    if not tokens.store(request.user, token, clock.now(), replacing=replacing):
        raise InvalidGrantError()


def _generate_token(grant_type, client, user, scope, expires_in=None, include_refresh_token=True):
    now = clock.now()
    if grant_type == "client_credentials":
        access, lifetime = token_claims.service_access_token(
            client.row, scope, service_audience(scope), now
        )
        return {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": lifetime,
            "scope": scope,
        }
    grant: GrantRecord = user
    access, lifetime = token_claims.access_token(grant, scope, now)
    token = {"token_type": "Bearer", "access_token": access, "expires_in": lifetime, "scope": scope}
    if include_refresh_token and tokens.refresh_allowed(scope):
        token["refresh_token"] = new_token()
    return token


class S256Challenge(CodeChallenge):
    """PKCE with S256 for every client: a missing challenge or `plain` is refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        payload = grant.request.payload.data
        if not payload.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256)")
        if payload.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def save_authorization_code(self, code, request):
        # Codes are issued by `authorization_response` below, never by Authlib's generator.
        raise NotImplementedError

    def query_authorization_code(self, code, client):
        row = tokens.redeem_code(code, client.row, clock.now())
        return CodeAdapter(row) if row is not None else None

    def delete_authorization_code(self, authorization_code):
        """The code was marked used when it was redeemed."""

    def authenticate_user(self, authorization_code):
        # Not grant_is_usable: a replay of the code that revoked the grant since this request
        # claimed it must not leave the winner without an answer. The tokens it stores are
        # then dead on arrival, as they die when the replay comes after them.
        grant = authorization_code.row.grant
        return grant if tokens.account_admits(grant) else None


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        row = tokens.usable_refresh(_refresh_token_record(refresh_token), clock.now())
        return TokenAdapter(row) if row is not None else None

    def authenticate_user(self, refresh_token):
        grant = refresh_token.row.grant
        return grant if tokens.grant_is_usable(grant) else None

    def issue_token(self, user, refresh_token):
        token = super().issue_token(user, refresh_token)
        if "openid" in token["scope"].split():
            # As Keycloak and oidc-provider do: the relying party sees the claims as they are
            # now (entitlements change), under the login's auth_time.
            token["id_token"] = token_claims.id_token(
                user, token["access_token"], clock.now(), refreshed=True
            )
        return token

    def revoke_old_credential(self, refresh_token):
        """Claimed (marked used) when the new tokens were stored (see _save_token)."""


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """For a service acting for itself (the ordering system), with exactly one scope of those
    its operator allowed it: the token then opens that one API."""

    TOKEN_ENDPOINT_AUTH_METHODS = SECRET_METHODS

    def validate_requested_scope(self):
        allowed = clients.service_scopes(self.client.row)
        requested = (self.request.payload.scope or "").split() or allowed[:1]
        if len(requested) != 1 or requested[0] not in allowed:
            raise InvalidScopeError("ask for one scope that this client is allowed")
        self.granted_scope = requested[0]

    def create_token_response(self):
        token = self.generate_token(scope=self.granted_scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class IdToken(OpenIDCode):
    def exists_nonce(self, nonce, request):
        # A code is single-use and bound to its PKCE verifier: a replayed nonce gains nothing.
        return False

    def encode_id_token(self, token, request):
        return token_claims.id_token(request.user, token.get("access_token"), clock.now())


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        row = token_store.find_token(token_string)
        return TokenAdapter(row) if row is not None else None

    def revoke_token(self, token, request):
        tokens.revoke(token.row, clock.now())


class Introspection(IntrospectionEndpoint):
    # RFC 7662: only clients that authenticate may ask.
    CLIENT_AUTH_METHODS = SECRET_METHODS

    def query_token(self, token_string, token_type_hint):
        row = tokens.introspected(token_string, clock.now())
        return TokenAdapter(row) if row is not None else None

    def check_permission(self, token, client, request):
        return token.check_client(client)

    def introspect_token(self, token):
        return token_claims.introspection(token.row)


def init_app(app: Flask) -> None:
    server = AuthorizationServer()
    server.init_app(app, query_client=_query_client, save_token=_save_token)
    server.register_token_generator("default", _generate_token)
    server.register_client_auth_method("client_secret_basic", _authenticate_basic)
    # Scopes we do not know are ignored (OIDC Core 3.1.2.1), not refused.
    server.scopes_supported = None
    server.register_grant(AuthorizationCodeGrant, [S256Challenge(required=True), IdToken()])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    app.extensions["idp.oidc.server"] = server


def _server() -> AuthorizationServer:
    return current_app.extensions["idp.oidc.server"]


class AuthorizationDenied(Exception):
    """An authorization request that fails after its client and redirect URI were checked:
    the answer goes back to the relying party."""

    def __init__(self, redirect_uri: str, error: str, description: str | None, state: str | None):
        super().__init__(error)
        self.redirect_uri = redirect_uri
        self.error = error
        self.description = description
        self.state = state


class AuthorizationInvalid(Exception):
    """An authorization request that cannot be answered to any redirect URI."""


def validate_authorization(end_user):
    """The validated Authlib grant for the current request, or AuthorizationDenied. The caller
    has checked client_id and redirect_uri already."""
    try:
        return _server().get_consent_grant(end_user=end_user)
    except OAuth2Error as error:
        if not error.redirect_uri:
            raise AuthorizationInvalid(error.error) from None
        raise AuthorizationDenied(
            error.redirect_uri, error.error, error.description, error.state
        ) from None


def denial_response(denied: AuthorizationDenied, status: int) -> Response:
    """RFC 6749 4.1.2.1 with RFC 9207: the error, the state and our issuer."""
    params = [("error", denied.error)]
    if denied.description:
        params.append(("error_description", denied.description))
    if denied.state:
        params.append(("state", denied.state))
    params.append(("iss", current_app.config["ISSUER"]))
    return redirect(add_params_to_uri(denied.redirect_uri, params), code=status)


def authorization_response(grant, session, client: Client, status: int) -> Response:
    """Issues the code for a validated grant and sends the browser back with it."""
    payload = grant.request.payload
    code = tokens.issue_code(
        client,
        session,
        redirect_uri=grant.redirect_uri,
        scope=grant.request.scope,
        nonce=payload.data.get("nonce"),
        code_challenge=payload.data["code_challenge"],
        code_challenge_method=payload.data["code_challenge_method"],
        now=clock.now(),
    )
    params = [("code", code)]
    if payload.state:
        params.append(("state", payload.state))
    params.append(("iss", current_app.config["ISSUER"]))
    return redirect(add_params_to_uri(grant.redirect_uri, params), code=status)


def token_response() -> Response:
    response = _server().create_token_response()
    if response.status_code == 200:
        # Only grant types that the server registered get this far: a bounded label set.
        metrics.TOKENS_ISSUED.labels(grant=request.form.get("grant_type", "")).inc()
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def revocation_response() -> Response:
    return _server().create_endpoint_response(RevocationEndpoint.ENDPOINT_NAME)


def introspection_response() -> Response:
    response = _server().create_endpoint_response(IntrospectionEndpoint.ENDPOINT_NAME)
    response.headers["Cache-Control"] = "no-store"
    return response
