"""Audit events: every security-relevant step, with who did it and from where, in an
append-only table chained by an HMAC under AUDIT_KEY (idp.audit.keyed)."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import insert, select, update

from idp.audit import keyed
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
        .returning(AuditChainHead.last_hash, AuditChainHead.keyed_from)
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
    values = {"last_hash": entry.hash, "last_event_id": entry.id}
    if previous is None or previous[1] is None:  # a new chain: keyed from its first event
        values["keyed_from"] = entry.id
    db.session.execute(update(AuditChainHead).where(AuditChainHead.id == HEAD_ID).values(values))
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


def chain_hash(entry: AuditEvent, *, unkeyed: bool = False) -> str:
    """HMAC of the row's content and its predecessor's hash. The id is left out (it is assigned
    on insert); the order is fixed by the chain itself. Unkeyed: plain SHA-256, as events were
    chained before the key (only those before the head's keyed_from)."""
    content = as_record(entry)
    del content["hash"], content["id"]
    return keyed.plain_hash(content) if unkeyed else keyed.event_mac(content)


@dataclass(frozen=True)
class ChainCheck:
    checked: int
    broken_at: int | None = None
    problem: str | None = None
    last_event_id: int | None = None
    head: str | None = None
    keyed_from: int | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify_chain(batch: int = 1000, anchor: keyed.Anchor | None = None) -> ChainCheck:
    """Recomputes the chain; with an anchor (idp.audit.keyed) also refuses a trail that is
    shorter than it, differs at its event, or was keyed from elsewhere."""
    head = db.session.get(AuditChainHead, HEAD_ID)
    # No head, or one without a start: every event must carry the keyed HMAC.
    keyed_from = head.keyed_from if head is not None else None
    anchored = anchor.last_event_id if anchor is not None else None
    if anchor is not None and anchor.events and anchor.keyed_from != keyed_from:
        return ChainCheck(
            0,
            anchor.keyed_from or keyed_from or 0,
            f"the chain's keyed start was moved (the anchor has event {anchor.keyed_from})",
        )
    previous_hash, checked, last_id, head_hash = None, 0, None, None
    head_event = head.last_event_id if head is not None else None
    for entry in _all_events(batch):
        if anchored is not None and (last_id or 0) < anchored < entry.id:
            return ChainCheck(checked, anchored, "the anchored event is missing")
        unkeyed = keyed_from is not None and entry.id < keyed_from
        if entry.hash != chain_hash(entry, unkeyed=unkeyed):
            problem = "the row was changed" if unkeyed else "the row was changed or re-chained"
            return ChainCheck(checked, entry.id, problem)
        if entry.prev_hash != previous_hash:
            return ChainCheck(checked, entry.id, "a row before it was removed or inserted")
        previous_hash, last_id = entry.hash, entry.id
        checked += 1
        if entry.id == head_event:
            head_hash = entry.hash
        if entry.id == anchored and (problem := _against_anchor(entry, checked, anchor)):
            return ChainCheck(checked, entry.id, problem)
    if anchored is not None and (last_id or 0) < anchored:
        return ChainCheck(
            checked,
            (last_id or 0) + 1,
            f"the trail ends before the anchor's event {anchored} "
            f"({checked} events, the anchor has {anchor.events})",
        )
    # The head was read first: events appended since are newer than its event, not missing.
    if head_event is not None and head_hash != head.last_hash:
        return ChainCheck(checked, head_event, "the newest rows were removed")
    return ChainCheck(checked, last_event_id=last_id, head=previous_hash, keyed_from=keyed_from)


def _against_anchor(entry: AuditEvent, checked: int, anchor: keyed.Anchor) -> str | None:
    if entry.hash != anchor.head:
        return "the event differs from the anchor"
    if checked != anchor.events:
        return "events before it differ from the anchor"
    return None


def anchor_of(check: ChainCheck) -> keyed.Anchor:
    """The head of an intact chain as verify_chain walked it, for `idp audit anchor`."""
    return keyed.Anchor(check.last_event_id, check.checked, check.head, check.keyed_from)


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
