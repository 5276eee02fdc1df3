"""Setting a password through a personal link: the new password takes effect only when the SMS
PIN sent to the phone on record is confirmed, so that a leaked e-mail alone yields nothing."""

from datetime import datetime
from typing import NamedTuple

from idp import audit
from idp.accounts import events, invitations, notifications
from idp.accounts.models import Invitation, InvitationPurpose, User, UserState
from idp.accounts.passwords import PolicyViolation, check_policy, hashing
from idp.authn import lockout, transactions
from idp.authn.factors.sms import challenges
from idp.authn.models import AuthTransaction, TransactionPurpose
from idp.errors import LinkProblem
from idp.platform import hooks
from idp.platform.hooks import AfterCommit


class Completed(NamedTuple):
    """The user whose password took effect, and what to do once the change is committed
    (tell the relying parties of the sessions that the old password opened)."""

    user: User
    after_commit: AfterCommit


def begin(
    invitation: Invitation, password: str, confirmation: str, now: datetime, ip: str | None
) -> tuple[AuthTransaction, str] | PolicyViolation:
    """Checks the password and sends the PIN (as challenges.send_first_pin). Raises
    PinsLocked while wrong PINs lock the account, SendError when the SMS fails; the caller
    rolls back. Returns the transaction and the token for the browser."""
    user = invitation.user
    violation = check_policy(password, confirmation, username=user.username, email=user.email)
    if violation is not None:
        return violation
    transaction, token = transactions.start(
        user,
        TransactionPurpose.ACTIVATION,
        now,
        invitation_id=invitation.id,
        pending_password_hash=hashing().hash(password),
    )
    invitations.mark_opened(invitation, now)
    challenges.send_first_pin(transaction, now, ip)
    return transaction, token


def complete(transaction: AuthTransaction, now: datetime, ip: str | None) -> Completed:
    """After the right PIN: the password takes effect and the link dies. LinkProblem when the
    link was used, revoked or expired in the meantime (the caller rolls back). After a reset,
    every session and every token the old password opened ends: the caller commits, then
    sends the returned back-channel logouts."""
    user = transaction.user
    invitation = transaction.invitation
    if invitation is None:
        raise LinkProblem("used")
    invitations.consume(invitation.id, now)
    # The account's own row is written after the rows of its logins, sessions and tokens: a
    # login confirmed meanwhile holds its transaction's row and then writes the account's
    # (login.complete); taking the two the other way round here would deadlock with it on
    # PostgreSQL. Logins begun with the old password must not complete after the change.
    transactions.end_pending(user, now)
    reset = invitation.purpose == InvitationPurpose.RESET
    after_commit = AfterCommit()
    if reset:
        # A new password ends every session that the old one opened, the access and refresh
        # tokens its relying parties hold, and tells those relying parties (back-channel).
        after_commit = hooks.fire(events.PASSWORD_RESET, user, now)
    user.password_hash = transaction.pending_password_hash
    user.password_changed_at = now
    lockout.reset(user)
    if user.state == UserState.INVITED:
        user.state = UserState.ACTIVE
    if reset:
        after_commit.append(notifications.after_commit(user, "password_reset", now=now, ip=ip))
        audit.record("password.reset", now=now, actor="user", user=user, ip=ip)
    else:
        audit.record("user.activated", now=now, actor="user", user=user, ip=ip)
    audit.record("password.set", now=now, actor="user", user=user, ip=ip)
    return Completed(user, after_commit)
