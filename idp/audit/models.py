"""The audit trail's tables: the events and the head of their chain."""

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.platform.columns import UTCDateTime, utcnow
from idp.platform.extensions import db


class AuditEvent(db.Model):
    """What happened, to whom, by whom, from where. Rows are only ever added."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # Who acted: "user", "cli:<os user>", "client:<client_id>", "system".
    actor: Mapped[str] = mapped_column(String(128))
    ip: Mapped[str | None] = mapped_column(String(45))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    # Hash chain: each row holds the hash of the one before, so that a changed, removed or
    # inserted row shows (`idp audit verify`). Users are never deleted, so user_id stays put.
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(db.Model):
    """The one row that ends the audit chain. Appending locks it, so appends are serialized
    and the chain has no forks; it also shows when the newest rows were cut off."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    events: Mapped[int] = mapped_column(default=0)
    last_event_id: Mapped[int | None] = mapped_column()
    last_hash: Mapped[str | None] = mapped_column(String(64))
    # The first event whose hash is an HMAC under AUDIT_KEY; those before it (written before
    # the chain was keyed) carry plain SHA-256. Anchors record it, so it cannot be moved.
    keyed_from: Mapped[int | None] = mapped_column()
