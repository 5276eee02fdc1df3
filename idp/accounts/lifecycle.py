"""What an account goes through after its creation, whoever asks for it (an operator at the
command line, the ordering system by SCIM, the person herself): disabled and enabled again, a
new phone number, a new set-password link. Each change is audited here, and what it ends in
the capabilities above accounts is announced through idp.accounts.events."""

from datetime import datetime

from idp import audit
from idp.accounts import events, invitations, notifications, users
from idp.accounts.models import InvitationPurpose, User, UserState
from idp.errors import UserError
from idp.platform import hooks
from idp.platform.hooks import AfterCommit


def disable(user: User, now: datetime, *, actor: str, reason: str | None = None) -> AfterCommit:
    """Disables the account: every session ends, every token and open link dies. Who did it
    and why stays on the account until it is enabled: only the side that disabled an account
    decides when it comes back (provisioning.replace). Returns what to do once this is
    committed (tell the relying parties)."""
    user.state = UserState.DISABLED
    user.disabled_at = now
    user.disabled_by = actor
    user.disabled_reason = users.check_line(reason, "the reason")
    invitations.revoke_open_invitations(user, now)
    audit.record("user.disabled", now=now, actor=actor, user=user, reason=user.disabled_reason)
    return hooks.fire(events.DISABLED, user, now)


def enable(user: User, now: datetime, *, actor: str) -> None:
    """Enables a disabled account again: invited until a password is set, active after."""
    if user.state != UserState.DISABLED:
        raise UserError(f"user {user.username!r} is not disabled")
    user.state = UserState.ACTIVE if user.password_hash else UserState.INVITED
    user.disabled_at = user.disabled_by = user.disabled_reason = None
    audit.record("user.enabled", now=now, actor=actor, user=user)


def change_phone(
    user: User, phone: str, now: datetime, *, actor: str, ip: str | None = None
) -> AfterCommit:
    """The number that receives the PINs, checked as at the invitation. Logins and activations
    waiting for a PIN end: the PIN went to the old number, which may be why it changes. She is
    told by mail (ip: where she changed it herself; None: an operator did)."""
    old = user.phone
    user.phone = users.check_phone(phone)
    audit.record(
        "user.phone_changed",
        now=now,
        actor=actor,
        user=user,
        old=users.masked_phone(old),
        new=users.masked_phone(user.phone),
    )
    after_commit = hooks.fire(events.PHONE_CHANGED, user, now)
    after_commit.append(
        notifications.after_commit(
            user, "phone_changed", now=now, ip=ip, phone=users.masked_phone(user.phone)
        )
    )
    return after_commit


def send_password_link(
    user: User,
    now: datetime,
    *,
    actor: str,
    lifetime: int | None = None,
    ip: str | None = None,
) -> None:
    """A set-password link, confirmed by the SMS PIN like the activation: the activation link
    anew while the account was never activated, a reset link after; valid for `lifetime`
    seconds (INVITATION_LIFETIME unless said). SendError when the mail fails (the caller rolls
    back)."""
    if user.state == UserState.DISABLED:
        raise UserError(f"user {user.username!r} is disabled; enable it first")
    purpose = (
        InvitationPurpose.ACTIVATION if user.state == UserState.INVITED else InvitationPurpose.RESET
    )
    invitations.issue_and_send(
        user,
        purpose,
        now,
        actor=actor,
        event="password.reset_requested",
        lifetime=lifetime,
        ip=ip,
    )
