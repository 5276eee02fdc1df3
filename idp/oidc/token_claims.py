"""What the tokens we sign say: RFC 9068 access tokens, ID tokens, userinfo and introspection
claims, and the service tokens of the client credentials grant. Made from the store's records
(see token_store), never from a request."""

import secrets
from datetime import datetime

from flask import current_app

from idp import policy
from idp.accounts import entitlements
from idp.oidc import clients, keys
from idp.oidc.token_store import (
    MAX_VALUE_LENGTH,
    ClientRecord,
    GrantRecord,
    TokenRecord,
    UserRecord,
    find_client,
)
from idp.platform.secrets import new_token
from idp.policy import CLAIMS_BY_SCOPE, ID_TOKEN_SCOPED_CLAIMS


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def access_token(grant: GrantRecord, scope: str, now: datetime) -> tuple[str, int]:
    """An access token in the client's format and its lifetime in seconds: an RFC 9068 JWT,
    or an opaque random value. Both are stored as digests and checked against them."""
    lifetime = current_app.config["ACCESS_TOKEN_LIFETIME"]
    if grant.client.access_token_format == clients.OPAQUE:
        return new_token(), lifetime
    issuer = current_app.config["ISSUER"]
    claims = {
        "iss": issuer,
        "sub": grant.user.subject,
        "aud": f"{issuer}/userinfo",
        "client_id": grant.client.client_id,
        "scope": scope,
        "iat": epoch(now),
        "exp": epoch(now) + lifetime,
        "jti": secrets.token_urlsafe(16),
        "auth_time": epoch(grant.auth_time),
        "acr": grant.acr,
        "amr": grant.amr,
        "sid": grant.sid,
    }
    return keys.sign(claims, alg=policy.DEFAULT_ALG, now=now, typ="at+jwt"), lifetime


def service_access_token(client: ClientRecord, scope: str, audience: str, now: datetime):
    """An RFC 9068 JWT access token for a client acting for itself (client credentials), valid
    only at `audience`, and its lifetime in seconds. It is not stored: it is short-lived and
    checked by signature, audience and scope, and it dies with its client."""
    lifetime = current_app.config["SERVICE_TOKEN_LIFETIME"]
    claims = {
        "iss": current_app.config["ISSUER"],
        "sub": client.client_id,
        "aud": audience,
        "client_id": client.client_id,
        "scope": scope,
        "iat": epoch(now),
        "exp": epoch(now) + lifetime,
        "jti": secrets.token_urlsafe(16),
    }
    return keys.sign(claims, alg=policy.DEFAULT_ALG, now=now, typ="at+jwt"), lifetime


def authenticate_service_token(
    value: str | None, *, audience: str, scope: str, now: datetime
) -> ClientRecord | None:
    """The client_credentials client behind a bearer token that is ours, unexpired, meant for
    `audience` and granted `scope`; None for anything else, a relying party's token included."""
    if not value or len(value) > MAX_VALUE_LENGTH:
        return None
    try:
        claims = keys.verify(value, now, typ="at+jwt")
    except keys.InvalidJWT:
        return None
    expires = claims.get("exp")
    if not isinstance(expires, int) or expires <= epoch(now):
        return None
    if claims.get("iss") != current_app.config["ISSUER"] or claims.get("aud") != audience:
        return None
    if scope not in str(claims.get("scope", "")).split():
        return None
    # The client as it is now: a deleted client, or one no longer allowed the scope, is out.
    client_id = claims.get("client_id")
    client = find_client(client_id) if isinstance(client_id, str) else None
    return client if client is not None and scope in clients.service_scopes(client) else None


def user_claims(user: UserRecord, scope: str) -> dict:
    """Claims by scope (OIDC Core 5.4); `sub` is the opaque subject, never the username."""
    scopes = set(scope.split())
    values = {
        "name": user.name,
        "preferred_username": user.username,
        "email": user.email,
        # Addresses and numbers come from operators and provisioning, who vouch for them.
        "email_verified": True,
        "phone_number": user.phone,
        "phone_number_verified": True,
        "entitlements": entitlements.of(user),
    }
    claims = {"sub": user.subject}
    for name, granted in CLAIMS_BY_SCOPE.items():
        if name in scopes:
            claims.update({claim: values[claim] for claim in granted if values[claim] is not None})
    return claims


def id_token(
    grant: GrantRecord, access_token_value: str | None, now: datetime, *, refreshed: bool = False
) -> str:
    """The ID token of a grant. `refreshed`: for a refresh grant (OIDC Core 12.2), the same
    issuer, subject, audience and auth_time (of the login, not now) with the user's claims as
    they are now, and no nonce: that answered the authentication request."""
    client = grant.client
    claims = {
        "iss": current_app.config["ISSUER"],
        "sub": grant.user.subject,
        "aud": client.client_id,
        "azp": client.client_id,
        "iat": epoch(now),
        "exp": epoch(now) + current_app.config["ID_TOKEN_LIFETIME"],
        "auth_time": epoch(grant.auth_time),
        "amr": grant.amr,
        "acr": grant.acr,
        "sid": grant.sid,
    }
    scoped = user_claims(grant.user, grant.scope)
    claims.update({name: scoped[name] for name in ID_TOKEN_SCOPED_CLAIMS if name in scoped})
    if grant.nonce and not refreshed:
        claims["nonce"] = grant.nonce
    if access_token_value:
        claims["at_hash"] = keys.half_hash(access_token_value)
    return keys.sign(claims, alg=client.id_token_signed_response_alg, now=now)


def introspection(token: TokenRecord) -> dict:
    grant = token.grant
    return {
        "active": True,
        "scope": token.scope,
        "client_id": grant.client.client_id,
        "username": grant.user.username,
        "sub": grant.user.subject,
        "token_type": token.kind,
        "exp": epoch(token.expires_at),
        "iat": epoch(token.created_at),
        "iss": current_app.config["ISSUER"],
        "sid": grant.sid,
    }
