"""Changing the password while signed in (/account/password). The current password is counted
like a login's (idp.authn.lockout), so that a session left open is no way around the lockout;
the new one follows the rules of every password (accounts.passwords); an SMS PIN to the phone
on record confirms it. Only then does it take effect: the account's other sessions and their
tokens end (the relying parties are told), this browser's session stays with a new cookie."""

from datetime import datetime

from idp import audit
from idp.accounts import notifications
from idp.accounts.models import User
from idp.accounts.passwords import check_policy, hashing, normalize
from idp.authn import lockout, sessions, transactions
from idp.authn.factors.sms import challenges
from idp.authn.models import AuthTransaction, Session, TransactionPurpose
from idp.platform.hooks import AfterCommit
from idp.selfservice.current_password import Refused, check_current_password


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
    refused = check_current_password(
        user, current, now, ip, failed_event="password.change_failed", wrong="current"
    )
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
