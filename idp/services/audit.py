"""Audit events: every security-relevant step, with who did it and from where."""

from datetime import datetime

from idp.extensions import db
from idp.models import AuditEvent, User


def record(
    event: str,
    *,
    now: datetime,
    actor: str,
    user: User | None = None,
    ip: str | None = None,
    **details,
) -> AuditEvent:
    """Adds the event to the current unit of work: it is stored with the change it describes,
    or not at all."""
    entry = AuditEvent(
        event=event,
        created_at=now,
        actor=actor,
        user_id=user.id if user is not None else None,
        ip=ip,
        details=details,
    )
    db.session.add(entry)
    return entry
