"""The current password, asked again before the account page changes what signs her in (the
password, the mobile number): counted like a login's password, so that a session left open is
no way around the lockout."""

from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from idp import audit
from idp.accounts.models import User
from idp.accounts.passwords import hashing
from idp.authn import lockout
from idp.errors import HashingBusy
from idp.platform.extensions import db


@dataclass(frozen=True)
class Refused:
    """Why a change's form is shown again: a key of the page's messages (or a policy's
    message), its status, and until when a lock holds."""

    reason: str
    status: int = 422
    until: datetime | None = None


def check_current_password(
    user: User, password: str, now: datetime, ip: str | None, *, failed_event: str, wrong: str
) -> Refused | None:
    """None when the current password is right; Refused(`wrong`) when it is not, Refused
    ("locked") while the account's password step is locked; each failure audited as
    `failed_event`. Counted before it is checked (lockout.claim_password_attempt, one
    conditional UPDATE, committed), so that parallel requests get no extra guesses. Unlike at
    the login, the home network spares nobody here: whoever holds this session signed in from
    it, and a stolen session must not guess on without end. Raises HashingBusy (not counted)."""
    if not lockout.claim_password_attempt(user.id, now):
        until = db.session.scalar(select(User.locked_until).where(User.id == user.id))
        audit.record(failed_event, now=now, actor="user", user=user, ip=ip, reason="locked")
        return Refused("locked", status=429, until=until)
    # Longer than any password that can be set: wrong, without hashing it.
    limit = current_app.config["PASSWORD_MAX_BYTES"]
    too_long = len(password.encode("utf-8", "surrogatepass")) > limit
    try:
        ok = not too_long and hashing().verify(user.password_hash, password)
    except HashingBusy:
        # Not checked (no argon2 slot in time), so not a try.
        lockout.give_back_password_attempt(user.id, now)
        raise
    lockout.settle_password_attempt(user, ok, now)
    if ok:
        return None
    audit.record(failed_event, now=now, actor="user", user=user, ip=ip, reason="password")
    return Refused(wrong)
