"""The rules of a grant's life: issuing and redeeming its code, storing and rotating its
tokens, when a token is usable, and what a reuse or a revocation ends.

A grant is one authorization: its code, and the family of tokens that the code's redemption and
every refresh descend from. Codes and refresh tokens are single-use (claimed in the store, see
token_store); a second use of either is taken as theft and revokes the whole family. What the
tokens say is in token_claims, where they are kept in token_store."""

import re
from datetime import datetime, timedelta

from flask import current_app

from idp.accounts import entitlements
from idp.accounts.models import UserState
from idp.authn.models import Session
from idp.oidc import clients, keys, token_store
from idp.oidc.models import Client, TokenKind
from idp.oidc.token_store import ClientRecord, CodeRecord, GrantRecord, NewToken, TokenRecord
from idp.platform.secrets import new_token
from idp.policy import ACR


def _seconds(setting: str) -> timedelta:
    return timedelta(seconds=current_app.config[setting])


# --- Codes -------------------------------------------------------------------------------------


def issue_code(
    client: Client,
    session: Session,
    *,
    redirect_uri: str,
    scope: str,
    nonce: str | None,
    code_challenge: str,
    code_challenge_method: str,
    now: datetime,
) -> str:
    code = new_token()
    token_store.add_grant(
        code,
        client_id=client.id,
        user_id=session.user_id,
        session_id=session.id,
        sid=session.sid,
        redirect_uri=redirect_uri,
        scope=scope,
        nonce=nonce,
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
        auth_time=session.auth_time,
        amr=list(session.amr),
        acr=ACR,
        created_at=now,
        code_expires_at=now + _seconds("AUTHORIZATION_CODE_LIFETIME"),
    )
    return code


def redeem_code(code: str, client: ClientRecord, now: datetime) -> CodeRecord | None:
    """An unused, unexpired code issued to this client, now marked used. A code used before
    revokes its grant."""
    claimed = token_store.claim_code(code, client.id, now)
    found = token_store.find_code(code)
    if claimed:
        # Unrevoked when claimed. A parallel replay may revoke the grant from now on: that
        # ends the tokens this request stores, not this request (see account_admits).
        return found
    reused = found is not None and found.code_used_at is not None
    if reused and found.grant.client.id == client.id:
        token_store.revoke_grant(found.grant.id, now)
        current_app.logger.warning(
            "authorization code of grant %s used again: its tokens are revoked", found.grant.id
        )
    return None


# --- Whether a grant and its tokens are usable -------------------------------------------------


def grant_is_usable(grant: GrantRecord) -> bool:
    """Unrevoked, the account active, and the product the client serves still under contract."""
    return grant.revoked_at is None and account_admits(grant)


def account_admits(grant: GrantRecord) -> bool:
    """The account active, and the product the client serves still under contract. What a
    redeemed code still needs: its claim required the grant unrevoked (see claim_code)."""
    required = grant.client.required_entitlement
    return grant.user.state == UserState.ACTIVE and entitlements.admits(required, grant.user)


def is_active(token: TokenRecord, now: datetime) -> bool:
    return (
        token.revoked_at is None
        and token.used_at is None
        and token.expires_at > now
        and grant_is_usable(token.grant)
    )


def refresh_allowed(scope: str) -> bool:
    return "offline_access" in scope.split()


# --- Storing a token response ------------------------------------------------------------------


def store(grant: GrantRecord, token: dict, now: datetime, *, replacing=None) -> bool:
    """Keeps the digests of what the token response carries. `replacing`: the refresh token
    (a TokenRecord) that this response rotates; it is claimed together with the storing, so
    that of parallel requests with it exactly one stores its tokens. False when another one
    was first: nothing is stored, and the family is revoked (see _refresh_reused)."""
    scope = token.get("scope", grant.scope)
    new = [
        NewToken(
            TokenKind.ACCESS,
            token["access_token"],
            now + timedelta(seconds=token["expires_in"]),
        )
    ]
    if "refresh_token" in token:
        # An absolute lifetime for the family: rotation does not extend it.
        expires = grant.created_at + _seconds("REFRESH_TOKEN_LIFETIME")
        new.append(NewToken(TokenKind.REFRESH, token["refresh_token"], expires))
    if replacing is None:
        token_store.add_tokens(grant.id, scope, new, now)
        return True
    if token_store.rotate_refresh_token(replacing.id, grant.id, scope, new, now):
        return True
    return _refresh_reused(replacing, now)


# --- Refresh tokens ----------------------------------------------------------------------------


def usable_refresh(token: TokenRecord | None, now: datetime) -> TokenRecord | None:
    """The refresh token if it is usable. One that was used already means that two parties
    hold it: the family is revoked, so that neither the thief nor the victim goes on with it."""
    if token is None:
        return None
    if token.used_at is not None:
        _refresh_reused(token, now)
        return None
    return token if is_active(token, now) else None


def _refresh_reused(token: TokenRecord, now: datetime) -> bool:
    """Revokes the family of a refresh token used twice; False, for store's caller."""
    token_store.revoke_grant(token.grant.id, now)
    current_app.logger.warning(
        "refresh token of grant %s used again: the grant is revoked", token.grant.id
    )
    return False


# --- Access tokens -----------------------------------------------------------------------------

# What new_token makes: 32 random bytes, base64url without padding.
OPAQUE_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def _access_token_format(value: str | None, now: datetime) -> str | None:
    """The format a bearer value would be ours in (clients.JWT or clients.OPAQUE), or None when
    it cannot be ours: a JWT must carry our signature, an opaque value new_token's shape."""
    if not value:
        return None
    if "." not in value:
        return clients.OPAQUE if OPAQUE_SHAPE.fullmatch(value) else None
    try:
        claims = keys.verify(value, now, typ="at+jwt")
    except keys.InvalidJWT:
        return None
    return clients.JWT if claims.get("iss") == current_app.config["ISSUER"] else None


def _active_access_token(
    token: TokenRecord | None, value_format: str, now: datetime
) -> TokenRecord | None:
    """The access token if it is active and in its client's format: a value without dots
    passes only for a client given opaque tokens, a JWT client's token only with a signature."""
    if token is None or not is_active(token, now):
        return None
    return token if token.grant.client.access_token_format == value_format else None


def authenticate_access_token(value: str | None, now: datetime) -> TokenRecord | None:
    """The stored, active access token for a bearer value, with its grant, user and client."""
    value_format = _access_token_format(value, now)
    if value_format is None:
        return None  # not one of ours: no database lookup for it
    return _active_access_token(token_store.find_token(value, TokenKind.ACCESS), value_format, now)


def introspected(value: str | None, now: datetime) -> TokenRecord | None:
    """The stored token for a value sent to introspection (RFC 7662): a refresh token as it is
    (the endpoint tells whether it is active), an access token only if it is active and ours as
    authenticate_access_token takes it."""
    token = token_store.find_token(value)
    if token is None or token.kind != TokenKind.ACCESS:
        return token
    value_format = _access_token_format(value, now)
    return _active_access_token(token, value_format, now) if value_format else None


# --- Revocation --------------------------------------------------------------------------------


def revoke(token: TokenRecord, now: datetime) -> None:
    """RFC 7009: a refresh token takes its whole grant with it; an access token only itself."""
    if token.kind == TokenKind.REFRESH:
        token_store.revoke_grant(token.grant.id, now)
    else:
        token_store.revoke_token(token.id, now)
