"""The accounts' tables: people and the invitations that activate them."""

import enum
import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.platform.columns import UTCDateTime, utcnow
from idp.platform.extensions import db


def new_subject() -> str:
    return str(uuid.uuid4())


class UserState(enum.StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    DISABLED = "disabled"


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Opaque and stable: the OIDC `sub`. Never the username, which a person may want changed.
    subject: Mapped[str] = mapped_column(String(36), unique=True, default=new_subject)
    username: Mapped[str] = mapped_column(String(64))
    # NFKC + casefold of the username: "Anna" and "anna" are one account.
    username_key: Mapped[str] = mapped_column(String(64), unique=True)
    # The display name; and the parts of the person's name, as provisioning (SCIM `name`) sends.
    name: Mapped[str | None] = mapped_column(String(200))
    formatted_name: Mapped[str | None] = mapped_column(String(200))
    given_name: Mapped[str | None] = mapped_column(String(200))
    family_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    phone: Mapped[str] = mapped_column(String(20))  # E.164
    # None: none chosen (provisioning may leave it out); mails and SMS use the default language.
    locale: Mapped[str | None] = mapped_column(String(8), default="de")
    state: Mapped[str] = mapped_column(String(16), default=UserState.INVITED)
    # Of a disabled account: when, by whom ("cli:<os user>", "client:<client_id>") and why.
    # Only the side that disabled it enables it again: provisioning never lifts an operator's.
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_by: Mapped[str | None] = mapped_column(String(128))
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_passwords: Mapped[int] = mapped_column(default=0)
    failed_pins: Mapped[int] = mapped_column(default=0)
    # Wrong passwords lock the password step, wrong PINs the PIN step: apart, so that strangers
    # guessing passwords cannot stop the owner's PIN, and each page can say which lock holds.
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pins_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the account's last PIN SMS went out, for whichever of its logins or activations: the
    # wait before the next one runs from it, so that starting over is no way around it. Cleared
    # when a PIN is confirmed.
    last_pin_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # The ordering system's own id of the account (SCIM externalId). Unique, so that a retried
    # or concurrent provisioning request cannot create the account twice.
    external_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    customer_number: Mapped[str | None] = mapped_column(String(64))
    # Products under contract ("cloud.phone"): the `entitlements` claim and client policies.
    entitlements: Mapped[list] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    # Deprovisioned by the ordering system: gone for SCIM, kept (disabled) for the audit trail.
    deprovisioned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When name, addresses and contracts of a deprovisioned account were erased.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InvitationPurpose(enum.StrEnum):
    ACTIVATION = "activation"
    RESET = "reset"


class InvitationState(enum.StrEnum):
    CREATED = "created"
    SENT = "sent"
    OPENED = "opened"
    ACTIVATED = "activated"
    EXPIRED = "expired"
    REVOKED = "revoked"


class Invitation(db.Model):
    """A personal set-password link (activation or reset); its nonce makes it single-use."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    nonce_hash: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=InvitationState.CREATED)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()
