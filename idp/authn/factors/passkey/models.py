"""The passkey factor's tables: the passkeys (WebAuthn credentials) of the accounts, and the
challenges handed to browsers, each for one ceremony."""

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.accounts.models import User
from idp.platform.columns import UTCDateTime, utcnow
from idp.platform.extensions import db


class Passkey(db.Model):
    """A WebAuthn credential of one account: its public key, not a secret."""

    __tablename__ = "passkeys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The authenticator's id of the credential: unique among all accounts.
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # The authenticator's signature counter; 0 for those that do not count (synced passkeys).
    sign_count: Mapped[int] = mapped_column(default=0)
    # Backup eligible: a synced (multi-device) passkey; else bound to one device.
    backup_eligible: Mapped[bool] = mapped_column(default=False)
    backed_up: Mapped[bool] = mapped_column(default=False)
    transports: Mapped[list] = mapped_column(JSON, default=list)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()

    @property
    def synced(self) -> bool:
        return self.backup_eligible


class PasskeyChallenge(db.Model):
    """A challenge for one ceremony: a login step (bound to its transaction) or a registration
    (bound to the login session). Used once, and only before it expires."""

    __tablename__ = "passkey_challenges"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # "login" or "register"
    transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("auth_transactions.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    challenge: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The passkey that answered it (a login): what the login's amr says (hwk or swk).
    passkey_id: Mapped[int | None] = mapped_column(ForeignKey("passkeys.id", ondelete="SET NULL"))
