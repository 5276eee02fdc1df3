"""The logout outbox: back-channel logouts owed to relying parties, kept in the database until
each is delivered or given up.

A row is written in the transaction that ends the session (so a logout is owed exactly when the
session ended), one per relying party and session (a unique key). Any instance delivers: a
deliverer claims due rows by moving their next try past the end of its own try (a lease), so a
second deliverer skips them, and a deliverer that dies leaves them due again once the lease ends.
On PostgreSQL the claim takes the rows with FOR UPDATE SKIP LOCKED, so that deliverers never
wait on each other; on SQLite (one host, one writer at a time) a conditional UPDATE does it.

A failed try is repeated after LOGOUT_RETRY_FIRST_DELAY seconds, doubled after each failure up to
LOGOUT_RETRY_MAX_DELAY; LOGOUT_GIVE_UP_AFTER seconds after the session ended the logout is given
up, audited and counted. The token is signed afresh for every try (a new `jti` and `iat`, a short
`exp`): a relying party that was down must not be handed a token that expired meanwhile."""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from idp import audit
from idp.accounts.models import User
from idp.authn.models import Session
from idp.oidc import keys
from idp.oidc.logout_post import post
from idp.oidc.models import Client, LogoutDelivery, LogoutDeliveryState
from idp.oidc.token_claims import epoch
from idp.platform import metrics, network
from idp.platform.extensions import db
from idp.policy import LOGOUT_TOKEN_LIFETIME_SECONDS

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# Rows one deliverer claims at a time: a few, so that others share a long queue.
CLAIM_BATCH = 20
# Delivered and given-up rows are kept this long (to answer "was it sent?"), then removed, so
# that the table holds about a week of logouts rather than every one ever.
FINISHED_KEPT = timedelta(days=7)


@dataclass(frozen=True)
class Claim:
    """A due delivery this deliverer holds until `lease_until`, at its `attempt`-th try."""

    id: int
    attempt: int
    created_at: datetime
    client: Client
    sid: str
    subject: str
    user_id: int | None


def enqueue(session: Session, clients: list[Client], now: datetime) -> list[int]:
    """Adds a delivery for each relying party of the session that asked for back-channel
    logout, to the caller's unit of work; one that is already owed stays as it is. Returns the
    ids of the rows added."""
    rows = [
        {
            "client_id": client.id,
            "sid": session.sid,
            "subject": session.user.subject,
            "user_id": session.user_id,
            "state": LogoutDeliveryState.PENDING,
            "created_at": now,
            "next_attempt_at": now,
            "attempts": 0,
        }
        for client in clients
        if client.backchannel_logout_uri
    ]
    if not rows:
        return []
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(LogoutDelivery)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["client_id", "sid"])
        .returning(LogoutDelivery.id)
    )
    return list(db.session.scalars(statement))


def deliver_due(now: datetime, *, only: list[int] | None = None) -> tuple[int, int]:
    """Claims the deliveries that are due (of `only`, when given) and tries each once; returns
    how many it tried and how many were delivered. Commits: call it outside any other unit of
    work."""
    delivered = 0
    claims = claim_due(now, only=only)
    if not claims:
        return 0, 0
    timeout = current_app.config["BACKCHANNEL_LOGOUT_TIMEOUT"]
    with network.guarded_session() as http:
        for claim in claims:
            problem = post(
                http,
                claim.client.backchannel_logout_uri,
                logout_token(claim, now),
                timeout,
                current_app.logger,
            )
            if problem is None:
                delivered += 1
            _record_try(claim, problem, now)
    return len(claims), delivered


def claim_due(now: datetime, *, only: list[int] | None = None) -> list[Claim]:
    due = select(LogoutDelivery.id, LogoutDelivery.attempts).where(
        LogoutDelivery.state == LogoutDeliveryState.PENDING,
        LogoutDelivery.next_attempt_at <= now,
    )
    if only is not None:
        due = due.where(LogoutDelivery.id.in_(only))
    due = due.order_by(LogoutDelivery.next_attempt_at).limit(CLAIM_BATCH)
    if db.session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    lease_until = now + lease()
    claimed = []
    for row_id, attempts in db.session.execute(due).all():
        # Conditional: on SQLite another deliverer may have claimed the row since the SELECT
        # (on PostgreSQL the row lock rules that out, and the condition costs nothing).
        taken = db.session.execute(
            update(LogoutDelivery)
            .where(LogoutDelivery.id == row_id, LogoutDelivery.attempts == attempts)
            .values(attempts=attempts + 1, next_attempt_at=lease_until)
        ).rowcount
        if taken:
            claimed.append(row_id)
    db.session.commit()
    return _claims(claimed)


def _claims(ids: list[int]) -> list[Claim]:
    if not ids:
        return []
    rows = db.session.scalars(select(LogoutDelivery).where(LogoutDelivery.id.in_(ids)))
    return [
        Claim(row.id, row.attempts, row.created_at, row.client, row.sid, row.subject, row.user_id)
        for row in rows
    ]


def forget_finished(now: datetime) -> int:
    """Removes the rows that ended more than FINISHED_KEPT ago; commits."""
    removed = db.session.execute(
        delete(LogoutDelivery).where(
            LogoutDelivery.state != LogoutDeliveryState.PENDING,
            LogoutDelivery.ended_at < now - FINISHED_KEPT,
        )
    ).rowcount
    db.session.commit()
    return removed


def pending_count() -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(LogoutDelivery)
        .where(LogoutDelivery.state == LogoutDeliveryState.PENDING)
    )


def lease() -> timedelta:
    """Longer than a try can take (the HTTP call is bounded by its timeout, the signing by the
    database), so that a live deliverer's row is never taken by a second one."""
    return timedelta(seconds=max(60, 10 * current_app.config["BACKCHANNEL_LOGOUT_TIMEOUT"]))


def retry_delay(attempt: int) -> timedelta:
    """The pause after the `attempt`-th failed try: doubling from the first delay, capped."""
    config = current_app.config
    first, largest = config["LOGOUT_RETRY_FIRST_DELAY"], config["LOGOUT_RETRY_MAX_DELAY"]
    return timedelta(seconds=min(largest, first * 2 ** min(attempt - 1, 32)))


def logout_token(claim: Claim, now: datetime) -> str:
    client = claim.client
    claims = {
        "iss": current_app.config["ISSUER"],
        "sub": claim.subject,
        "aud": client.client_id,
        "iat": epoch(now),
        "exp": epoch(now) + LOGOUT_TOKEN_LIFETIME_SECONDS,
        "jti": secrets.token_urlsafe(16),
        "sid": claim.sid,
        "events": {BACKCHANNEL_EVENT: {}},
    }
    return keys.sign(claims, alg=client.id_token_signed_response_alg, now=now, typ="logout+jwt")


def _record_try(claim: Claim, problem: str | None, now: datetime) -> None:
    give_up_at = claim.created_at + timedelta(seconds=current_app.config["LOGOUT_GIVE_UP_AFTER"])
    if problem is None:
        values, result = {"state": LogoutDeliveryState.DELIVERED, "ended_at": now}, "delivered"
    elif now >= give_up_at:
        values, result = {"state": LogoutDeliveryState.GIVEN_UP, "ended_at": now}, "given_up"
    else:
        # The last try falls on the deadline rather than a pause after it.
        next_try = min(now + retry_delay(claim.attempt), give_up_at)
        values, result = {"next_attempt_at": next_try}, "failed"
    # Only while the claim holds (the row was not taken again after the lease ran out).
    db.session.execute(
        update(LogoutDelivery)
        .where(LogoutDelivery.id == claim.id, LogoutDelivery.attempts == claim.attempt)
        .values(last_problem=problem, **values)
    )
    if result == "given_up":
        audit.record(
            "logout.given_up",
            now=now,
            actor="idp",
            user=db.session.get(User, claim.user_id) if claim.user_id else None,
            client_id=claim.client.client_id,
            sid=claim.sid,
            attempts=claim.attempt,
            problem=problem,
        )
    db.session.commit()
    metrics.LOGOUT_DELIVERIES.labels(result=result).inc()
