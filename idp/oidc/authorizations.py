"""Authorization requests that wait for the login they asked for, kept server-side (as
node-oidc-provider keeps an "interaction"): every detour of the login (a PIN step that ended, an
expired link, a language switch, the back button) can lead back to the relying party with the
request's own parameters, its `state` included.

A row grants nothing by itself. It is bound to the browser that /authorize sent to log in (the
flow cookie holds a random handle, the row its digest), satisfied only by a login after the
moment it asked for one, used once, and it expires."""

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from idp.accounts.models import User
from idp.authn.models import TransactionState
from idp.oidc.models import Client, PendingAuthorization
from idp.platform.extensions import db
from idp.platform.secrets import digest, new_token

# The request parameter (OpenID Connect for Identity Assurance 1.0) by which a relying party
# says why it asks, and the one value whose own, translated wording the login page shows. The
# relying party's free text is never shown: it could put any words on our page.
PURPOSE_PARAMETER = "purpose"
BOOKING = "booking"
# Each new request clears up to this many expired ones, so the table holds about one lifetime's
# requests however many come (anybody can make /authorize ask for a login).
PURGE_BATCH = 100


def start(
    client: Client,
    params: list[tuple[str, str]],
    fingerprint: str,
    now: datetime,
    *,
    step_up_user: User | None = None,
) -> tuple[PendingAuthorization, str]:
    """A new pending request and the handle that the browser keeps for it."""
    _purge_expired(now)
    handle = new_token()
    bound_user_id = _bound_user_id(client, fingerprint, now)
    if bound_user_id is None and step_up_user is not None:
        bound_user_id = step_up_user.id
    row = PendingAuthorization(
        handle_digest=digest(handle),
        client_id=client.id,
        fingerprint=fingerprint,
        params=[list(pair) for pair in params],
        login_asked_at=now,
        user_id=bound_user_id,
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["PENDING_AUTHORIZATION_LIFETIME"]),
    )
    db.session.add(row)
    db.session.flush()
    return row, handle


def _bound_user_id(client: Client, fingerprint: str, now: datetime) -> int | None:
    """The account that an earlier row of this very request was bound to. A step-up asked of
    anna stays hers when the request comes again without its handle (pushed out of the flow
    cookie by newer requests, or the cookie deleted): nobody else signed in at her browser can
    complete it. PKCE makes every request of a relying party its own, so this binds no other
    request; and a binding only ever narrows who may complete a request."""
    return db.session.scalar(
        select(PendingAuthorization.user_id)
        .where(
            PendingAuthorization.fingerprint == fingerprint,
            PendingAuthorization.client_id == client.id,
            PendingAuthorization.user_id.is_not(None),
            PendingAuthorization.expires_at > now,
        )
        .order_by(PendingAuthorization.id)
        .limit(1)
    )


def _purge_expired(now: datetime) -> None:
    # SKIP LOCKED (PostgreSQL): parallel purges take different rows instead of waiting for, or
    # deadlocking on, each other's.
    expired = (
        select(PendingAuthorization.id)
        .where(PendingAuthorization.expires_at <= now)
        .order_by(PendingAuthorization.expires_at)
        .limit(PURGE_BATCH)
        .with_for_update(skip_locked=True)
    )
    db.session.execute(delete(PendingAuthorization).where(PendingAuthorization.id.in_(expired)))


def _of_browser(handles: list[str], now: datetime):
    return select(PendingAuthorization).where(
        PendingAuthorization.handle_digest.in_([digest(handle) for handle in handles]),
        PendingAuthorization.expires_at > now,
    )


def find(handle: str, handles: list[str], now: datetime) -> PendingAuthorization | None:
    """The unexpired request of this handle, if the browser holds it; in any state."""
    if handle not in handles:
        return None
    return db.session.scalar(_of_browser([handle], now))


def newest(handles: list[str], now: datetime, *, pending_only: bool):
    """The browser's newest unexpired request (only a pending one, if asked)."""
    if not handles:
        return None
    query = _of_browser(handles, now)
    if pending_only:
        query = query.where(PendingAuthorization.state == TransactionState.PENDING)
    return db.session.scalar(query.order_by(PendingAuthorization.id.desc()).limit(1))


def claim(handles: list[str], fingerprint: str, now: datetime) -> PendingAuthorization | None:
    """The browser's pending row for this very request, ended in one conditional UPDATE so
    that of parallel requests only one gets it: the request either completes now (see
    `complete`) or asks for a new login."""
    if not handles:
        return None  # most requests: single sign-on, or a first visit
    row = db.session.scalar(
        _of_browser(handles, now).where(
            PendingAuthorization.fingerprint == fingerprint,
            PendingAuthorization.state == TransactionState.PENDING,
        )
    )
    if row is None:
        return None
    claimed = _end_if_pending(row, now)
    db.session.refresh(row)
    return row if claimed else None


def cancel(row: PendingAuthorization, now: datetime) -> bool:
    """The person cancelled the login this request waits for; True for the one of parallel
    cancels (and resumes) that ended it."""
    return _end_if_pending(row, now)


def _end_if_pending(row: PendingAuthorization, now: datetime) -> bool:
    """Ends the row in one conditional UPDATE, so that of parallel requests only one does."""
    ended = db.session.execute(
        update(PendingAuthorization)
        .where(
            PendingAuthorization.id == row.id,
            PendingAuthorization.state == TransactionState.PENDING,
        )
        .values(state=TransactionState.FAILED, ended_at=now)
    ).rowcount
    return ended == 1


def complete(row: PendingAuthorization) -> None:
    """A code went back for it: the back button then leads to the relying party's page."""
    row.state = TransactionState.COMPLETED


def purpose(row: PendingAuthorization) -> str | None:
    """BOOKING when the relying party said so, else None."""
    said = [value for name, value in row.params if name == PURPOSE_PARAMETER]
    return BOOKING if said == [BOOKING] else None
