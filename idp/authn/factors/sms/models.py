"""The SMS factor's table: the PINs sent for a transaction, stored as keyed digests."""

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column

from idp.platform.columns import UTCDateTime, utcnow
from idp.platform.extensions import db


class PinChallenge(db.Model):
    """One SMS PIN sent for a transaction; only the newest unexpired one counts."""

    __tablename__ = "pin_challenges"

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("auth_transactions.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    # HMAC of the PIN under a server key: six digits hashed plainly would fall to a table scan.
    pin_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The provider took the SMS but did not answer in time: it may arrive late, or never.
    unconfirmed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
