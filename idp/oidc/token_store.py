"""Where codes, tokens and their grants are kept: every read and write of them, and what each
read gives back, a frozen record.

A token is read with its grant, the grant's user and its client in one joined SELECT of the
columns the protocol needs (the record types below name them), and comes back as a TokenRecord
whose .grant carries .user and .client: the same type on every path (refresh grant, userinfo,
introspection, revocation), not ORM objects to build, track and expire. A code comes back as a
CodeRecord with the same GrantRecord.

Statements are SQLAlchemy Core, built once here: SQLAlchemy's compiled cache then compiles each
once per dialect, and a call only binds its values; the token read, the refresh grant's and
userinfo's, runs on psycopg's cursor on PostgreSQL (see token_store_pg). They run on the
single-statement connection (database.single_statement_connection): on PostgreSQL one in
autocommit, so that a statement costs its own round trip and no BEGIN or COMMIT; within a
transaction that the request's session began already, that transaction. Single-use values
(codes, refresh tokens) are claimed by a conditional UPDATE, so that of parallel requests
exactly one wins; on PostgreSQL the claim of a refresh token and the INSERT of its successors
are one statement."""

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import bindparam, exists, insert, select, union_all, update

from idp.accounts.models import User
from idp.authn.models import Session
from idp.oidc import token_store_pg
from idp.oidc.models import Client, Grant, Token
from idp.platform.database import (
    claims_in_one_statement,
    read_retried_once,
    single_statement_connection,
)
from idp.platform.extensions import db
from idp.platform.secrets import digest

_TOKENS, _GRANTS, _USERS, _CLIENTS = (model.__table__ for model in (Token, Grant, User, Client))
# Longer values are no token of ours: not worth a lookup.
MAX_VALUE_LENGTH = 8192


# --- The records: each field a column of the same name (the SELECTs are built from them) -------


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A client as the token endpoint and the tokens need it: authentication, grant type,
    access token format, ID token algorithm, the entitlement it requires."""

    id: int
    client_id: str
    secret_digest: str | None
    grant_type: str
    scope: str | None
    redirect_uris: list[str]
    required_entitlement: str | None
    access_token_format: str
    id_token_signed_response_alg: str


@dataclass(frozen=True, slots=True)
class UserRecord:
    """The account behind a grant: its state, and what its claims are made of."""

    id: int
    subject: str
    username: str
    name: str | None
    email: str
    phone: str
    state: str
    entitlements: list[str]


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """One authorization: what the login proved, and the family's scope and lifetime."""

    id: int
    sid: str
    scope: str
    nonce: str | None
    auth_time: datetime
    amr: list[str]
    acr: str | None
    created_at: datetime
    revoked_at: datetime | None
    user: UserRecord
    client: ClientRecord


@dataclass(frozen=True, slots=True)
class CodeRecord:
    """An authorization code: what its redemption is checked against, and its grant."""

    redirect_uri: str
    code_challenge: str
    code_challenge_method: str
    code_used_at: datetime | None
    grant: GrantRecord


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An access or refresh token (kind: models.TokenKind) and its grant."""

    id: int
    kind: str
    scope: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    grant: GrantRecord


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token to store: its kind, the value the client gets, when it expires."""

    kind: str
    value: str
    expires_at: datetime


# The fields that hold another record, not a column.
_NESTED = ("user", "client", "grant")


def _columns(record: type, table) -> list:
    """The table's columns for a record's fields, in their order."""
    return [table.c[field.name] for field in fields(record) if field.name not in _NESTED]


_CLIENT_COLUMNS = _columns(ClientRecord, _CLIENTS)
_USER_COLUMNS = _columns(UserRecord, _USERS)
_GRANT_COLUMNS = _columns(GrantRecord, _GRANTS)
_CODE_COLUMNS = _columns(CodeRecord, _GRANTS)
_TOKEN_COLUMNS = _columns(TokenRecord, _TOKENS)
# A grant with its user and client, as every joined SELECT ends.
_GRANT_WITH_PARTIES = (*_GRANT_COLUMNS, *_USER_COLUMNS, *_CLIENT_COLUMNS)
_USER_STARTS = len(_GRANT_COLUMNS)
_CLIENT_STARTS = _USER_STARTS + len(_USER_COLUMNS)
_GRANTS_WITH_PARTIES = _GRANTS.join(_USERS, _USERS.c.id == _GRANTS.c.user_id).join(
    _CLIENTS, _CLIENTS.c.id == _GRANTS.c.client_id
)


def _grant_record(row: Sequence) -> GrantRecord:
    """The grant of row values in the order of _GRANT_WITH_PARTIES."""
    return GrantRecord(
        *row[:_USER_STARTS],
        user=UserRecord(*row[_USER_STARTS:_CLIENT_STARTS]),
        client=ClientRecord(*row[_CLIENT_STARTS:]),
    )


# --- Clients -----------------------------------------------------------------------------------

_FIND_CLIENT = select(*_CLIENT_COLUMNS).where(_CLIENTS.c.client_id == bindparam("client_id"))


def find_client(client_id: str | None) -> ClientRecord | None:
    """The client by client_id, for the token endpoint's client authentication (a refresh
    grant has its client with the refresh token: see find_token)."""
    if not client_id or len(client_id) > 64:
        return None
    row = _connection().execute(_FIND_CLIENT, {"client_id": client_id}).first()
    return ClientRecord(*row) if row is not None else None


# --- Authorization codes -----------------------------------------------------------------------

_FIND_CODE = (
    select(*_CODE_COLUMNS, *_GRANT_WITH_PARTIES)
    .select_from(_GRANTS_WITH_PARTIES)
    .where(_GRANTS.c.code_digest == bindparam("code_digest"))
)
_CLAIM_CODE = (
    update(_GRANTS)
    .where(
        # Not named after a column: those names are the SET clause's.
        _GRANTS.c.code_digest == bindparam("claimed_digest"),
        _GRANTS.c.client_id == bindparam("claiming_client"),
        _GRANTS.c.code_used_at.is_(None),
        _GRANTS.c.revoked_at.is_(None),
        _GRANTS.c.code_expires_at > bindparam("now", type_=_GRANTS.c.code_expires_at.type),
    )
    .values(code_used_at=bindparam("now", type_=_GRANTS.c.code_used_at.type))
)


def add_grant(code: str, **columns) -> None:
    """A new grant with its authorization code (kept as its digest), committed with whatever
    the request's session holds (the authorization request it completes). `columns`: the
    Grant's other columns by name."""
    db.session.execute(insert(_GRANTS).values(code_digest=digest(code), **columns))
    db.session.commit()


def claim_code(code: str, client_id: int, now: datetime) -> bool:
    """Marks the code used if it is unused, unexpired, unrevoked and the client's (its row id),
    committed so that parallel redemptions see it: of those exactly one claims the code."""
    parameters = {"claimed_digest": digest(code), "claiming_client": client_id, "now": now}
    claimed = _connection().execute(_CLAIM_CODE, parameters).rowcount == 1
    _commit()
    return claimed


def find_code(code: str) -> CodeRecord | None:
    row = _connection().execute(_FIND_CODE, {"code_digest": digest(code)}).first()
    if row is None:
        return None
    first_grant_column = len(_CODE_COLUMNS)
    return CodeRecord(*row[:first_grant_column], grant=_grant_record(row[first_grant_column:]))


# --- Access and refresh tokens -----------------------------------------------------------------

_FIND_TOKEN = (
    select(*_TOKEN_COLUMNS, *_GRANT_WITH_PARTIES)
    .select_from(_TOKENS.join(_GRANTS_WITH_PARTIES, _GRANTS.c.id == _TOKENS.c.grant_id))
    .where(_TOKENS.c.digest == bindparam("digest"))
)
_FIND_TOKEN_OF_KIND = _FIND_TOKEN.where(_TOKENS.c.kind == bindparam("kind"))
# The same on psycopg's cursor: the refresh grant's and userinfo's read (see token_store_pg).
_FIND_TOKEN_ON_PSYCOPG = {
    statement: token_store_pg.TextParameterRead(statement)
    for statement in (_FIND_TOKEN, _FIND_TOKEN_OF_KIND)
}


def find_token(value: str | None, kind: str | None = None) -> TokenRecord | None:
    """The stored token for a value the client holds (of that kind, if given), with its grant,
    user and client, in one statement; None for a value we never issued."""
    if not value or len(value) > MAX_VALUE_LENGTH:
        return None
    if kind is None:
        statement, parameters = _FIND_TOKEN, {"digest": digest(value)}
    else:
        statement, parameters = _FIND_TOKEN_OF_KIND, {"digest": digest(value), "kind": kind}

    def read(connection):
        if token_store_pg.serves(connection):
            return _FIND_TOKEN_ON_PSYCOPG[statement].first(connection, parameters)
        return connection.execute(statement, parameters).first()

    # The first statement of a refresh grant and of userinfo: on a connection that died since
    # its last use (a database restart), once more on a new one instead of a 503.
    row = read_retried_once(db.session, read)
    if row is None:
        return None
    first_grant_column = len(_TOKEN_COLUMNS)
    return TokenRecord(*row[:first_grant_column], grant=_grant_record(row[first_grant_column:]))


_CLAIM_REFRESH = (
    update(_TOKENS)
    .where(
        _TOKENS.c.id == bindparam("token_id"),
        _TOKENS.c.used_at.is_(None),
        _TOKENS.c.revoked_at.is_(None),
    )
    .values(used_at=bindparam("now", type_=_TOKENS.c.used_at.type))
)
_NEW_TOKEN_COLUMNS = ("grant_id", "kind", "digest", "scope", "created_at", "expires_at")
# An access token alone, or with a refresh token.
_NEW_TOKEN_COUNTS = (1, 2)


def _new_token_rows(count: int):
    """A SELECT of `count` new token rows of bound parameters named <column>_<row>. Not a
    multi-row VALUES: SQLAlchemy does not cache a statement with one, and compiling it again
    on every request cost more than the rest of the statement's execution."""
    rows = [
        select(
            *[
                bindparam(f"{name}_{index}", type_=_TOKENS.c[name].type).label(name)
                for name in _NEW_TOKEN_COLUMNS
            ]
        )
        for index in range(count)
    ]
    return union_all(*rows) if count > 1 else rows[0]


def _claim_and_insert(count: int):
    """_CLAIM_REFRESH and, only if it claimed the token, the INSERT of `count` rows, in one
    statement (PostgreSQL: a data-modifying WITH). It returns the ids stored: the driver's row
    count of such a statement is not to be trusted (psycopg has reported -1 for it, which read
    as a successful claim and let parallel refreshes with one token all succeed)."""
    claimed = _CLAIM_REFRESH.returning(_TOKENS.c.id).cte("claimed")
    new = select(_new_token_rows(count).subquery("new")).where(exists(select(claimed.c.id)))
    stored = insert(_TOKENS).from_select(_NEW_TOKEN_COLUMNS, new).add_cte(claimed)
    return stored.returning(_TOKENS.c.id)


_INSERT_TOKENS = {
    count: insert(_TOKENS).from_select(_NEW_TOKEN_COLUMNS, _new_token_rows(count))
    for count in _NEW_TOKEN_COUNTS
}
_CLAIM_AND_INSERT_TOKENS = {count: _claim_and_insert(count) for count in _NEW_TOKEN_COUNTS}


def _new_token_parameters(grant_id: int, scope: str, tokens: Sequence[NewToken], now) -> dict:
    parameters = {}
    for index, token in enumerate(tokens):
        parameters |= {
            f"grant_id_{index}": grant_id,
            f"kind_{index}": token.kind,
            f"digest_{index}": digest(token.value),
            f"scope_{index}": scope,
            f"created_at_{index}": now,
            f"expires_at_{index}": token.expires_at,
        }
    return parameters


def add_tokens(grant_id: int, scope: str, tokens: Sequence[NewToken], now: datetime) -> None:
    """Stores new tokens of a grant (kept as digests), committed."""
    parameters = _new_token_parameters(grant_id, scope, tokens, now)
    _connection().execute(_INSERT_TOKENS[len(tokens)], parameters)
    _commit()


def rotate_refresh_token(
    old_token_id: int, grant_id: int, scope: str, tokens: Sequence[NewToken], now: datetime
) -> bool:
    """Claims (marks used) the refresh token `old_token_id` and stores its successors, both or
    neither: of parallel requests with one refresh token exactly one stores its tokens. False
    when the token was claimed or revoked already: nothing is stored."""
    parameters = _new_token_parameters(grant_id, scope, tokens, now)
    claim = {"token_id": old_token_id, "now": now}
    connection = _connection()
    if claims_in_one_statement(connection):
        # No row is stored if the claim failed.
        statement = _CLAIM_AND_INSERT_TOKENS[len(tokens)]
        if not connection.execute(statement, parameters | claim).all():
            return False
    elif connection.execute(_CLAIM_REFRESH, claim).rowcount == 1:
        # The claimed row stays locked until the commit: a parallel claim waits, then fails.
        connection.execute(_INSERT_TOKENS[len(tokens)], parameters)
    else:
        db.session.rollback()
        return False
    _commit()
    return True


# --- Revocation --------------------------------------------------------------------------------

_REVOKE_TOKEN = (
    update(_TOKENS)
    .where(_TOKENS.c.id == bindparam("token_id"), _TOKENS.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now", type_=_TOKENS.c.revoked_at.type))
)
_REVOKE_GRANT = (
    update(_GRANTS)
    .where(_GRANTS.c.id == bindparam("grant_id"), _GRANTS.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("now", type_=_GRANTS.c.revoked_at.type))
)


def revoke_token(token_id: int, now: datetime) -> None:
    """One token alone (an access token), committed."""
    _connection().execute(_REVOKE_TOKEN, {"token_id": token_id, "now": now})
    _commit()


def revoke_grant(grant_id: int, now: datetime) -> None:
    """A grant and with it its whole family of tokens, committed."""
    _connection().execute(_REVOKE_GRANT, {"grant_id": grant_id, "now": now})
    _commit()


# Whole logins and accounts end together with their sessions (see tokens_logout): in the
# caller's session transaction, which it commits.


def revoke_session_grants(session: Session, now: datetime) -> None:
    db.session.execute(
        update(Grant)
        .where(Grant.session_id == session.id, Grant.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def revoke_user_grants(user: User, now: datetime) -> int:
    return db.session.execute(
        update(Grant)
        .where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount


def clients_of_session(session: Session) -> list[Client]:
    """The relying parties that received tokens from this login session."""
    return list(
        db.session.scalars(
            select(Client).where(
                Client.id.in_(select(Grant.client_id).where(Grant.session_id == session.id))
            )
        )
    )


# --- The connection ----------------------------------------------------------------------------


def _connection():
    return single_statement_connection(db.session)


def _commit() -> None:
    """What the statements did is final: in autocommit already; else (SQLite, or a session
    that was in a transaction before) by committing the session's transaction. A request that
    never made a session commits none (a refresh grant on PostgreSQL)."""
    if db.session.registry.has():
        db.session.commit()
