"""Changing the password while signed in (/account/password). The current password is counted
like a login's (idp.authn.lockout), so that a session left open is no way around the lockout;
the new one follows the rules of every password (accounts.passwords); an SMS PIN to the phone
on record confirms it. Only then does it take effect: the account's other sessions and their
tokens end (the relying parties are told), this browser's session stays with a new cookie."""

from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from idp import audit
from idp.accounts import notifications
from idp.accounts.models import User
from idp.accounts.passwords import check_policy, hashing, normalize
from idp.authn import lockout, sessions, transactions
from idp.authn.factors.sms import challenges
from idp.authn.models import AuthTransaction, Session, TransactionPurpose
from idp.errors import HashingBusy
from idp.platform.extensions import db
from idp.platform.hooks import AfterCommit


@dataclass(frozen=True)
class Refused:
    """Why the form is shown again: a key of the page's messages (or a policy's message), its
    status, and until when a lock holds."""

    reason: str
    status: int = 422
    until: datetime | None = None


def begin(
    user: User,
    current: str,
    password: str,
    confirmation: str,
    now: datetime,
    ip: str | None,
) -> tuple[AuthTransaction, str] | Refused:
    """Checks the new password, then the current one, and sends the PIN. Raises PinsLocked
    while wrong PINs lock the account and SendError when the SMS fails (the caller rolls back);
    on Refused the caller commits (a wrong current password stays counted)."""
    violation = check_policy(password, confirmation, username=user.username, email=user.email)
    if violation is not None:
        return Refused(str(violation.message))
    refused = check_current_password(user, current, now, ip)
    if refused is not None:
        return refused
    if normalize(password) == normalize(current):
        return Refused("same")
    transaction, token = transactions.start(
        user,
        TransactionPurpose.PASSWORD_CHANGE,
        now,
        pending_password_hash=hashing().hash(password),
    )
    challenges.send_first_pin(transaction, now, ip)
    audit.record("password.change_requested", now=now, actor="user", user=user, ip=ip)
    return transaction, token


def check_current_password(user: User, password: str, now: datetime, ip: str | None):
    """None when the current password is right; Refused when it is wrong or the account's
    password step is locked. Counted before it is checked (lockout.claim_password_attempt, one
    conditional UPDATE, committed), so that parallel requests get no extra guesses. Unlike at
    the login, the home network spares nobody here: whoever holds this session signed in from
    it, and a stolen session must not guess on without end."""
    if not lockout.claim_password_attempt(user.id, now):
        until = db.session.scalar(select(User.locked_until).where(User.id == user.id))
        _refused(user, now, ip, "locked")
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
    _refused(user, now, ip, "password")
    return Refused("current")


def _refused(user: User, now: datetime, ip: str | None, reason: str) -> None:
    audit.record("password.change_failed", now=now, actor="user", user=user, ip=ip, reason=reason)


def complete(
    transaction: AuthTransaction, session: Session, now: datetime, ip: str | None
) -> tuple[str, AfterCommit]:
    """After the right PIN, in the browser whose session `session` is (the account's own): the
    new password takes effect, every other session of the account and its tokens end, and this
    session gets a new cookie token, returned. The caller commits, then runs the AfterCommit
    (logout tokens to the relying parties, the notification mail)."""
    user = transaction.user
    # The account's open steps first, its own row after: a PIN try on another of its logins
    # takes them in that order, so the two wait for each other instead of deadlocking. None of
    # the logins begun with the old password may complete after the change.
    transactions.end_pending(user, now)
    after_commit = sessions.end_others(user, session, now)
    user.password_hash = transaction.pending_password_hash
    user.password_changed_at = now
    lockout.reset(user)
    token = sessions.renew(session)
    audit.record("password.changed", now=now, actor="user", user=user, ip=ip, sid=session.sid)
    after_commit.append(notifications.after_commit(user, "password_changed", now=now, ip=ip))
    return token, after_commit
