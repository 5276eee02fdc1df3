"""Authorization codes, access and refresh tokens, and the claims they carry.

A grant is one authorization: its code, and the family of tokens that the code's redemption and
every refresh descend from. Codes and refresh tokens are single-use, claimed by a conditional
UPDATE so that of parallel requests exactly one wins; a second use of either is taken as theft
and revokes the whole family."""

import re
import secrets
from datetime import datetime, timedelta
from types import SimpleNamespace

from flask import current_app, g
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import joinedload

from idp.database import (
    DirectStatement,
    claims_in_one_statement,
    single_statement_connection,
)
from idp.extensions import db
from idp.models import Client, Grant, Session, Token, TokenKind, User, UserState
from idp.services import clients, entitlements, keys
from idp.services.secrets import digest, new_token

# What the login proves: a password and a possession factor (the SMS PIN).
ACR = "https://refeds.org/profile/mfa"
SCOPES = ("openid", "profile", "email", "phone", "entitlements", "offline_access")
CLAIMS_BY_SCOPE = {
    "profile": ("name", "preferred_username"),
    "email": ("email", "email_verified"),
    "phone": ("phone_number", "phone_number_verified"),
    "entitlements": ("entitlements",),
}
# Claims that the ID token carries too, not only userinfo: a relying party that admits only
# one product decides at sign-in.
ID_TOKEN_SCOPED_CLAIMS = ("entitlements",)


def _seconds(setting: str) -> timedelta:
    return timedelta(seconds=current_app.config[setting])


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


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
    db.session.add(
        Grant(
            code_digest=digest(code),
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
    )
    db.session.commit()
    return code


def redeem_code(code: str, client: Client, now: datetime) -> Grant | None:
    """The grant of an unused, unexpired code issued to this client, now marked used. A code
    used before revokes its grant."""
    code_digest = digest(code)
    claimed = claim_code(code_digest, client, now)
    grant = db.session.scalar(select(Grant).where(Grant.code_digest == code_digest))
    if claimed:
        # Unrevoked when claimed. A parallel replay may revoke the grant from now on: that
        # ends the tokens this request stores, not this request (see account_admits).
        return grant
    if grant is not None and grant.client_id == client.id and grant.code_used_at is not None:
        revoke_grant(grant, now)
        db.session.commit()
        current_app.logger.warning(
            "authorization code of grant %s used again: its tokens are revoked", grant.id
        )
    return None


def claim_code(code_digest: str, client: Client, now: datetime) -> bool:
    """Marks the code used if it is unused, unexpired, unrevoked and this client's, in one
    conditional UPDATE, committed so that parallel redemptions see it: of those exactly one
    claims the code."""
    claimed = db.session.execute(
        update(Grant)
        .where(
            Grant.code_digest == code_digest,
            Grant.client_id == client.id,
            Grant.code_used_at.is_(None),
            Grant.revoked_at.is_(None),
            Grant.code_expires_at > now,
        )
        .values(code_used_at=now)
    ).rowcount
    db.session.commit()
    return claimed == 1


def grant_is_usable(grant: Grant) -> bool:
    """Unrevoked, the account active, and the product the client serves still under contract."""
    return grant.revoked_at is None and account_admits(grant)


def account_admits(grant: Grant) -> bool:
    """The account active, and the product the client serves still under contract. What a
    redeemed code still needs: its claim required the grant unrevoked (see claim_code)."""
    return grant.user.state == UserState.ACTIVE and entitlements.admits(grant.client, grant.user)


def revoke_grant(grant: Grant, now: datetime) -> None:
    db.session.execute(
        update(Grant).where(Grant.id == grant.id, Grant.revoked_at.is_(None)).values(revoked_at=now)
    )


def revoke_user_grants(user: User, now: datetime) -> int:
    return db.session.execute(
        update(Grant)
        .where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount


def revoke_session_grants(session: Session, now: datetime) -> None:
    db.session.execute(
        update(Grant)
        .where(Grant.session_id == session.id, Grant.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def refresh_allowed(scope: str) -> bool:
    return "offline_access" in scope.split()


def access_token(grant: Grant, scope: str, now: datetime) -> tuple[str, int]:
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
    return keys.sign(claims, alg=keys.DEFAULT_ALG, now=now, typ="at+jwt"), lifetime


def service_access_token(client: Client, scope: str, audience: str, now: datetime):
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
    return keys.sign(claims, alg=keys.DEFAULT_ALG, now=now, typ="at+jwt"), lifetime


def authenticate_service_token(
    value: str | None, *, audience: str, scope: str, now: datetime
) -> Client | None:
    """The client_credentials client behind a bearer token that is ours, unexpired, meant for
    `audience` and granted `scope`; None for anything else, a relying party's token included."""
    if not value or len(value) > 8192:
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
    client = db.session.scalar(select(Client).where(Client.client_id == claims.get("client_id")))
    return client if client is not None and scope in clients.service_scopes(client) else None


def store(grant: Grant, token: dict, now: datetime, *, replacing=None) -> bool:
    """Keeps the digests of what the token response carries. `replacing`: the refresh token
    that this response rotates; it is claimed (marked used) together with the storing, so
    that of parallel requests with it exactly one stores its tokens. False when another one
    was first: nothing is stored, and the family is revoked (see _refresh_reused)."""
    scope = token.get("scope", grant.scope)
    rows = [(TokenKind.ACCESS, token["access_token"], now + timedelta(seconds=token["expires_in"]))]
    if "refresh_token" in token:
        # An absolute lifetime for the family: rotation does not extend it.
        expires = grant.created_at + _seconds("REFRESH_TOKEN_LIFETIME")
        rows.append((TokenKind.REFRESH, token["refresh_token"], expires))
    values = {}
    for index, (kind, value, expires_at) in enumerate(rows):
        values |= {
            f"grant_id_{index}": grant.id,
            f"kind_{index}": kind,
            f"digest_{index}": digest(value),
            f"scope_{index}": scope,
            f"created_at_{index}": now,
            f"expires_at_{index}": expires_at,
        }
    connection = single_statement_connection(db.session)
    claim = {"token_id": replacing.id, "now": now} if replacing is not None else None
    if claim is None:
        _INSERT_TOKENS[len(rows)].rowcount(connection, values)
    elif claims_in_one_statement(connection):
        # The claim and the new tokens in one atomic statement: no row if the claim failed.
        if _CLAIM_AND_INSERT_TOKENS[len(rows)].rowcount(connection, values | claim) == 0:
            return _refresh_reused(replacing, now)
    elif _CLAIM_REFRESH.rowcount(connection, claim) == 1:
        # The claimed row stays locked until the commit: a parallel claim waits, then fails.
        _INSERT_TOKENS[len(rows)].rowcount(connection, values)
    else:
        db.session.rollback()
        return _refresh_reused(replacing, now)
    # A refresh grant on PostgreSQL gets here without ever making a session (all in autocommit):
    # nothing to commit. Otherwise the session's transaction holds the rows, or the grant's.
    if db.session.registry.has():
        db.session.commit()
    return True


def find(value: str | None, kind: str | None = None) -> Token | None:
    if not value or len(value) > 8192:
        return None
    # Every caller goes on to the grant and its user: one query instead of three.
    query = (
        select(Token)
        .where(Token.digest == digest(value))
        .options(joinedload(Token.grant).joinedload(Grant.user))
    )
    if kind is not None:
        query = query.where(Token.kind == kind)
    return db.session.scalar(query)


def is_active(token: Token, now: datetime) -> bool:
    return (
        token.revoked_at is None
        and token.used_at is None
        and token.expires_at > now
        and grant_is_usable(token.grant)
    )


# The hot paths (refresh grant, userinfo, introspection of an access token) read a token with
# its grant, user and client in one Core statement of the columns they need, and see them as
# plain records with the ORM models' attribute names (token.grant.user.subject, ...): no ORM
# objects to build, track and expire. The statements are built once; only values vary.
_TOKENS, _GRANTS, _USERS, _CLIENTS = (model.__table__ for model in (Token, Grant, User, Client))
_TOKEN_FIELDS = (
    "id",
    "grant_id",
    "kind",
    "scope",
    "created_at",
    "expires_at",
    "used_at",
    "revoked_at",
)
_GRANT_FIELDS = (
    "id",
    "client_id",
    "user_id",
    "session_id",
    "sid",
    "scope",
    "nonce",
    "auth_time",
    "amr",
    "acr",
    "created_at",
    "revoked_at",
)
_USER_FIELDS = ("id", "subject", "username", "name", "email", "phone", "state", "entitlements")
# The whole client: a refresh grant authenticates its client from this row (see
# client_of_refresh_token), so it needs what clients.find_record gives.
_CLIENT_FIELDS = tuple(column.name for column in _CLIENTS.columns)
_RECORD_PARTS = (
    ("t", _TOKENS, _TOKEN_FIELDS),
    ("g", _GRANTS, _GRANT_FIELDS),
    ("u", _USERS, _USER_FIELDS),
    ("c", _CLIENTS, _CLIENT_FIELDS),
)
_FIND_WITH_GRANT = DirectStatement(
    select(
        *[
            table.c[name].label(f"{prefix}_{name}")
            for prefix, table, names in _RECORD_PARTS
            for name in names
        ]
    )
    .select_from(
        _TOKENS.join(_GRANTS, _GRANTS.c.id == _TOKENS.c.grant_id)
        .join(_USERS, _USERS.c.id == _GRANTS.c.user_id)
        .join(_CLIENTS, _CLIENTS.c.id == _GRANTS.c.client_id)
    )
    .where(_TOKENS.c.digest == bindparam("digest"), _TOKENS.c.kind == bindparam("kind"))
)
_CLAIM_REFRESH = DirectStatement(
    update(_TOKENS)
    .where(
        _TOKENS.c.id == bindparam("token_id"),
        _TOKENS.c.used_at.is_(None),
        _TOKENS.c.revoked_at.is_(None),
    )
    .values(used_at=bindparam("now", type_=_TOKENS.c.used_at.type))
)


_NEW_TOKEN_COLUMNS = ("grant_id", "kind", "digest", "scope", "created_at", "expires_at")


def _new_token_rows(count: int) -> tuple[str, list]:
    """VALUES (...), ... for `count` new tokens, parameters named <column>_<row>, and those
    parameters typed by their columns."""
    rows = ", ".join(
        "(" + ", ".join(f":{name}_{index}" for name in _NEW_TOKEN_COLUMNS) + ")"
        for index in range(count)
    )
    parameters = [
        bindparam(f"{name}_{index}", type_=_TOKENS.c[name].type)
        for index in range(count)
        for name in _NEW_TOKEN_COLUMNS
    ]
    return f"VALUES {rows}", parameters


# Written as text: a multi-row insert() has no VALUES list of named parameters to bind by
# name. Only our own table and column names go into the text; every value is a bound
# parameter.
def _insert_tokens(count: int):
    """INSERT INTO tokens (...) VALUES (...), ... for `count` rows."""
    values, parameters = _new_token_rows(count)
    columns = ", ".join(_NEW_TOKEN_COLUMNS)
    return text(f"INSERT INTO {_TOKENS.name} ({columns}) {values}").bindparams(*parameters)


def _claim_and_insert_tokens(count: int):
    """_CLAIM_REFRESH and, only if it claimed the token, the INSERT of `count` rows, in one
    statement (PostgreSQL). Its row count is the number of tokens stored."""
    values, parameters = _new_token_rows(count)
    columns = ", ".join(_NEW_TOKEN_COLUMNS)
    sql = (
        f"WITH claimed AS (UPDATE {_TOKENS.name} SET used_at = :now"  # noqa: S608
        " WHERE id = :token_id AND used_at IS NULL AND revoked_at IS NULL RETURNING id)"
        f" INSERT INTO {_TOKENS.name} ({columns})"
        f" SELECT * FROM ({values}) AS new ({columns}) WHERE EXISTS (SELECT FROM claimed)"
    )
    return text(sql).bindparams(
        *parameters,
        bindparam("now", type_=_TOKENS.c.used_at.type),
        bindparam("token_id", type_=_TOKENS.c.id.type),
    )


# An access token alone, or with a refresh token.
_INSERT_TOKENS = {count: DirectStatement(_insert_tokens(count)) for count in (1, 2)}
_CLAIM_AND_INSERT_TOKENS = {
    count: DirectStatement(_claim_and_insert_tokens(count)) for count in (1, 2)
}


# Where each part's columns sit in a _FIND_WITH_GRANT row: (prefix, names, first, end).
_RECORD_SLICES = []
for _prefix, _, _names in _RECORD_PARTS:
    _first = _RECORD_SLICES[-1][3] if _RECORD_SLICES else 0
    _RECORD_SLICES.append((_prefix, _names, _first, _first + len(_names)))


def _record(row) -> SimpleNamespace:
    """The token of a _FIND_WITH_GRANT row, with .grant, .grant.user and .grant.client."""
    parts = {
        prefix: SimpleNamespace(**dict(zip(names, row[first:end], strict=True)))
        for prefix, names, first, end in _RECORD_SLICES
    }
    token, grant = parts["t"], parts["g"]
    grant.user, grant.client = parts["u"], parts["c"]
    token.grant = grant
    return token


def _find_record(value: str | None, kind: str) -> SimpleNamespace | None:
    """Like find(value, kind), as a record (see above) instead of ORM objects."""
    if not value or len(value) > 8192:
        return None
    row = _FIND_WITH_GRANT.first(
        single_statement_connection(db.session), {"digest": digest(value), "kind": kind}
    )
    return _record(row) if row is not None else None


def _refresh_record(value: str | None) -> SimpleNamespace | None:
    """The refresh token record for `value`, read once per request: the client authentication
    and the grant both ask for it (see client_of_refresh_token)."""
    looked_up = g.setdefault("idp_refresh_records", {})
    if value not in looked_up:
        looked_up[value] = _find_record(value, TokenKind.REFRESH)
    return looked_up[value]


def client_of_refresh_token(value: str | None, client_id: str | None):
    """The client (a record like clients.find_record's) of the refresh token's grant, if that
    is the client `client_id`; else None, and the caller reads the client by itself. Saves the
    refresh grant a statement: Authlib authenticates the client first, then reads the token,
    and one joined SELECT serves both. Reading a token before its client is authenticated
    changes nothing: the read has no effect, and every check still follows."""
    token = _refresh_record(value)
    if token is None or token.grant.client.client_id != client_id:
        return None
    return token.grant.client


def find_refresh(value: str | None, now: datetime):
    """A usable refresh token (a record, see _find_record). One that was used already means
    that two parties hold it: the family is revoked, so that neither the thief nor the victim
    goes on with it."""
    token = _refresh_record(value)
    if token is None:
        return None
    if token.used_at is not None:
        _refresh_reused(token, now)
        return None
    return token if is_active(token, now) else None


def _refresh_reused(token, now: datetime) -> bool:
    """Revokes the family of a refresh token used twice; False, for store's caller."""
    revoke_grant(token.grant, now)
    db.session.commit()
    current_app.logger.warning(
        "refresh token of grant %s used again: the grant is revoked", token.grant_id
    )
    return False


def revoke(token: Token, now: datetime) -> None:
    """RFC 7009: a refresh token takes its whole grant with it; an access token only itself."""
    if token.kind == TokenKind.REFRESH:
        revoke_grant(token.grant, now)
    elif token.revoked_at is None:
        token.revoked_at = now
    db.session.commit()


# What new_token makes: 32 random bytes, base64url without padding.
OPAQUE_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def authenticate_access_token(value: str | None, now: datetime):
    """The stored, active access token for a bearer value, as a record (see _find_record) with
    its grant, user and client. A JWT must also carry our signature; an opaque value is found
    by its digest alone, and only for a client that is given opaque tokens."""
    if not value:
        return None
    opaque = "." not in value
    if opaque and not OPAQUE_SHAPE.fullmatch(value):
        return None  # not one of ours: no database lookup for it
    if not opaque:
        try:
            claims = keys.verify(value, now, typ="at+jwt")
        except keys.InvalidJWT:
            return None
        if claims.get("iss") != current_app.config["ISSUER"]:
            return None
    token = _find_record(value, TokenKind.ACCESS)
    if token is None or not is_active(token, now):
        return None
    return token if opaque == (token.grant.client.access_token_format == clients.OPAQUE) else None


def user_claims(user: User, scope: str) -> dict:
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
    grant: Grant, access_token_value: str | None, now: datetime, *, refreshed: bool = False
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


def introspection(token: Token) -> dict:
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


def clients_of_session(session: Session) -> list[Client]:
    """The relying parties that received tokens from this login session."""
    return list(
        db.session.scalars(
            select(Client).where(
                Client.id.in_(select(Grant.client_id).where(Grant.session_id == session.id))
            )
        )
    )
