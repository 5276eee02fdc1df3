"""Audit events: every security-relevant step, with who did it and from where, in an
append-only, hash-chained table."""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import insert, select, update

from idp.audit.models import AuditChainHead, AuditEvent
from idp.platform.extensions import db

HEAD_ID = 1


class Subject(Protocol):
    """The account an event is about (an accounts.models.User): only its id is kept."""

    id: int


def record(
    event: str,
    *,
    now: datetime,
    actor: str,
    user: Subject | None = None,
    ip: str | None = None,
    **details,
) -> AuditEvent:
    """Adds the event to the current unit of work: it is stored with the change it describes,
    or not at all. Locks the chain head until the commit, so that appends never fork."""
    previous = db.session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == HEAD_ID)
        .values(events=AuditChainHead.events + 1)
        .returning(AuditChainHead.last_hash)
    ).one_or_none()
    if previous is None:  # a database emptied by hand: the chain starts again
        db.session.execute(insert(AuditChainHead).values(id=HEAD_ID, events=1))
    entry = AuditEvent(
        event=event,
        created_at=now,
        actor=actor,
        user_id=user.id if user is not None else None,
        ip=ip,
        details=details,
        prev_hash=previous[0] if previous else None,
    )
    # Hashed before the insert: the row is written once and never updated (append-only).
    entry.hash = chain_hash(entry)
    db.session.add(entry)
    db.session.flush()
    db.session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == HEAD_ID)
        .values(last_hash=entry.hash, last_event_id=entry.id)
    )
    return entry


def as_record(entry: AuditEvent) -> dict:
    return {
        "id": entry.id,
        "created_at": entry.created_at.isoformat(),
        "event": entry.event,
        "user_id": entry.user_id,
        "actor": entry.actor,
        "ip": entry.ip,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def chain_hash(entry: AuditEvent) -> str:
    """The row's content and its predecessor's hash. The id is left out (it is assigned on
    insert); the order is fixed by the chain itself."""
    content = as_record(entry)
    del content["hash"], content["id"]
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    checked: int
    broken_at: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify_chain(batch: int = 1000) -> ChainCheck:
    previous_hash, checked, last_id = None, 0, None
    for entry in _all_events(batch):
        if entry.hash != chain_hash(entry):
            return ChainCheck(checked, entry.id, "the row was changed")
        if entry.prev_hash != previous_hash:
            return ChainCheck(checked, entry.id, "a row before it was removed or inserted")
        previous_hash, last_id = entry.hash, entry.id
        checked += 1
    head = db.session.get(AuditChainHead, HEAD_ID)
    if head is not None and (head.last_hash, head.last_event_id) != (previous_hash, last_id):
        return ChainCheck(checked, head.last_event_id, "the newest rows were removed")
    return ChainCheck(checked)


def _all_events(batch: int) -> Iterator[AuditEvent]:
    after = 0
    while True:
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].id
        db.session.expunge_all()


def events_since(since: datetime | None, batch: int = 1000) -> Iterator[AuditEvent]:
    for entry in _all_events(batch):
        if since is None or entry.created_at >= since:
            yield entry
