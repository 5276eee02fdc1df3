"""The login's tables: steps that wait for a PIN, the PINs, and the sessions they open."""

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.accounts.models import Invitation, User
from idp.platform.columns import UTCDateTime, utcnow
from idp.platform.extensions import db


class TransactionPurpose(enum.StrEnum):
    ACTIVATION = "activation"
    LOGIN = "login"
    # A new login within a live session that a relying party asked for to confirm an action
    # (a booking): the same steps as a login, its SMS says what it confirms.
    STEP_UP = "step_up"
    # A new mobile number chosen on the account page: first a PIN to the number on record
    # proves the owner, then a PIN to the new number proves it (its `pending_phone`).
    PHONE_CURRENT = "phone_current"
    PHONE_NEW = "phone_new"
    # A new password chosen on the account page, confirmed by a PIN to the phone on record.
    PASSWORD_CHANGE = "password_change"  # noqa: S105 (a purpose, no password)


class TransactionState(enum.StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


class AuthTransaction(db.Model):
    """A login or activation whose first step passed and whose second factor is pending. Bound
    to one browser: the flow cookie holds a random token, this row its hash."""

    __tablename__ = "auth_transactions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    purpose: Mapped[str] = mapped_column(String(16))
    # The second factor that confirms it (idp.authn.factors): only that factor's page may.
    factor: Mapped[str] = mapped_column(String(32), default="sms", server_default="sms")
    state: Mapped[str] = mapped_column(String(16), default=TransactionState.PENDING)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    invitation_id: Mapped[int | None] = mapped_column(
        ForeignKey("invitations.id", ondelete="CASCADE")
    )
    # Activation: the new password's hash, stored only once the PIN is confirmed.
    pending_password_hash: Mapped[str | None] = mapped_column(String(255))
    # A phone change: the new number (E.164), taken on only when both of its PINs are confirmed.
    pending_phone: Mapped[str | None] = mapped_column(String(20))
    # Where the browser goes when the login completes (a path on this server).
    return_to: Mapped[str | None] = mapped_column(Text)
    # The factor's tries (PINs typed, for the SMS factor); the SMS factor's own counters follow.
    pin_attempts: Mapped[int] = mapped_column(default=0)
    pins_sent: Mapped[int] = mapped_column(default=0)
    last_pin_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()
    invitation: Mapped[Invitation | None] = relationship()


class Session(db.Model):
    """A login session (single sign-on). The cookie holds a random token, this row its hash."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Public session id for OIDC (`sid` claim, back-channel logout); not a credential.
    sid: Mapped[str] = mapped_column(String(43), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime)
    amr: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    user: Mapped[User] = relationship()
