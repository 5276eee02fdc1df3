"""Accounts created and kept up to date by the ordering system (SCIM provisioning): a creation
invites the person and sends the activation mail, once, however often the request arrives; a
deactivation ends every session; a deprovisioning disables the account for good and erases its
personal data after the retention period. The row itself stays: the audit trail refers to it."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.accounts import entitlements, events, invitations, lifecycle, users
from idp.accounts.models import InvitationPurpose, User, UserState
from idp.errors import UserError
from idp.platform import hooks
from idp.platform.extensions import db
from idp.platform.hooks import AfterCommit

MAX_EXTERNAL_ID = 255
MAX_CUSTOMER_NUMBER = 64
# The actor of a provisioning client in the audit trail and in `User.disabled_by`.
ACTOR_PREFIX = "client:"
DEACTIVATED = "deactivated by provisioning (active: false)"
DEPROVISIONED = "deprovisioned by provisioning (DELETE)"


class Conflict(UserError):
    """A value that must be unique belongs to another account."""


class DisabledByOperator(UserError):
    """Provisioning asked to enable an account that an operator disabled."""


@dataclass
class AccountData:
    """What the ordering system asks an account to be."""

    username: str
    email: str
    phone: str
    name: str | None = None
    formatted_name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    locale: str | None = None
    entitlements: list[str] = field(default_factory=list)
    customer_number: str | None = None
    external_id: str | None = None
    active: bool | None = None


def find(subject: str) -> User | None:
    """A provisioned-or-not account that is not deprovisioned, locked for the change to come."""
    if not subject or len(subject) > 36:
        return None
    return db.session.scalar(
        select(User)
        .where(User.subject == subject, User.deprovisioned_at.is_(None))
        .with_for_update()
    )


def visible():
    """The query of the accounts SCIM shows: every one that is not deprovisioned."""
    return select(User).where(User.deprovisioned_at.is_(None))


def _find_by_external_id(external_id: str) -> User | None:
    return db.session.scalar(select(User).where(User.external_id == external_id))


def _checked(data: AccountData) -> AccountData:
    if data.external_id is not None and not 0 < len(data.external_id) <= MAX_EXTERNAL_ID:
        raise UserError(f"externalId must have 1 to {MAX_EXTERNAL_ID} characters")
    number = (data.customer_number or "").strip() or None
    if number is not None and len(number) > MAX_CUSTOMER_NUMBER:
        raise UserError(f"customerNumber must have at most {MAX_CUSTOMER_NUMBER} characters")
    users.check_username(data.username)
    return AccountData(
        username=data.username.strip(),
        email=users.check_email(data.email),
        phone=users.check_phone(data.phone),
        name=users.check_line(data.name, "displayName"),
        formatted_name=users.check_line(data.formatted_name, "name.formatted"),
        given_name=users.check_line(data.given_name, "name.givenName"),
        family_name=users.check_line(data.family_name, "name.familyName"),
        locale=data.locale,
        entitlements=entitlements.check_known(data.entitlements),
        customer_number=number,
        external_id=data.external_id,
        active=data.active,
    )


def current(user: User) -> AccountData:
    return AccountData(
        username=user.username,
        email=user.email,
        phone=user.phone,
        name=user.name,
        formatted_name=user.formatted_name,
        given_name=user.given_name,
        family_name=user.family_name,
        locale=user.locale,
        entitlements=entitlements.of(user),
        customer_number=user.customer_number,
        external_id=user.external_id,
        active=user.state != UserState.DISABLED,
    )


def create(data: AccountData, *, actor: str, now: datetime) -> tuple[User, bool]:
    """The invited account, its activation mail sent, and True; or, for an externalId that
    exists with the same data (a retried or concurrent request), that account and False.

    The caller commits. A mail that cannot be sent raises SendError: roll back, nothing stays."""
    data = _checked(data)
    if data.external_id is not None:
        existing = _find_by_external_id(data.external_id)
        if existing is not None:
            return _same_request(existing, data), False
    try:
        user = users.create_user(
            data.username, email=data.email, phone=data.phone, name=data.name, now=now
        )
        _assign(user, data)
        db.session.flush()
    except (users.UsernameTaken, IntegrityError):
        # The username is taken: by another account, or by a parallel request with the same
        # order that committed after the lookup above (seen by create_user's own lookup, or
        # by the unique index, whose violation waits for that request's commit).
        db.session.rollback()
        winner = _find_by_external_id(data.external_id) if data.external_id else None
        if winner is None:
            raise Conflict(f"userName {data.username!r} is taken") from None
        return _same_request(winner, data), False
    invitation, url = invitations.issue(user, InvitationPurpose.ACTIVATION, now)
    if data.active is not False:
        # The mail before the audit event: recording it locks the audit chain head until the
        # commit, and every audited action of the cluster would wait for the mail server.
        invitations.send(invitation, url, now)
    audit.record(
        "user.provisioned",
        now=now,
        actor=actor,
        user=user,
        entitlements=user.entitlements,
    )
    if data.active is False:
        _deactivate(user, actor, now)
    return user, True


def _assign(user: User, data: AccountData) -> None:
    """What provisioning sets beyond what an operator's invitation has."""
    user.formatted_name = data.formatted_name
    user.given_name = data.given_name
    user.family_name = data.family_name
    user.locale = data.locale
    user.entitlements = data.entitlements
    user.customer_number = data.customer_number
    user.external_id = data.external_id


def _same_request(existing: User, data: AccountData) -> User:
    if existing.deprovisioned_at is not None or current(existing) != _with_defaults(data):
        raise Conflict(f"externalId {data.external_id!r} belongs to another account")
    return existing


def _deactivate(user: User, actor: str, now: datetime) -> AfterCommit:
    return lifecycle.disable(user, now, actor=actor, reason=DEACTIVATED)


def _refuse_to_undo_an_operator(user: User, only_an_operator_can: str) -> None:
    """DisabledByOperator while an operator's disable holds the account."""
    if user.state == UserState.DISABLED and not (user.disabled_by or "").startswith(ACTOR_PREFIX):
        raise DisabledByOperator(
            f"the account was disabled by an operator ({user.disabled_by or 'unknown'}), and "
            f"only an operator can {only_an_operator_can}; provisioning does not undo an operator"
        )


def _reactivate(user: User, actor: str, now: datetime) -> None:
    """Lifts provisioning's own deactivation; an operator's stays (DisabledByOperator)."""
    _refuse_to_undo_an_operator(user, "enable it again")
    lifecycle.enable(user, now, actor=actor)


def _with_defaults(data: AccountData) -> AccountData:
    return AccountData(**{**data.__dict__, "active": True if data.active is None else data.active})


def replace(user: User, data: AccountData, *, actor: str, now: datetime) -> AfterCommit:
    """Makes the account what `data` says. Returns what to do once the change is committed
    (tell relying parties of ended sessions). The caller commits."""
    data = _checked(data)
    after_commit = AfterCommit()
    before = current(user)
    if users.username_key(data.username) != user.username_key:
        if users.find_by_username(data.username) is not None:
            raise Conflict(f"userName {data.username!r} is taken")
        user.username_key = users.username_key(data.username)
    taken = data.external_id not in (None, user.external_id) and _find_by_external_id(
        data.external_id
    )
    if taken:
        raise Conflict(f"externalId {data.external_id!r} belongs to another account")
    user.username = data.username
    if data.email.lower() != user.email.lower():
        # A set-password link mailed to the old address must not outlive the change: the
        # address may have been changed because that mailbox is no longer the person's.
        invitations.revoke_open_invitations(user, now)
    user.email = data.email
    user.name = data.name
    _assign(user, data)
    if data.phone != user.phone:
        user.phone = data.phone
        after_commit += hooks.fire(events.PHONE_CHANGED, user, now)
    changed = sorted(
        name for name, value in current(user).__dict__.items() if before.__dict__[name] != value
    )
    if data.active is False and user.state != UserState.DISABLED:
        after_commit += _deactivate(user, actor, now)
    elif data.active is True and user.state == UserState.DISABLED:
        _reactivate(user, actor, now)
    if changed:
        # Which attributes changed, not their values: the audit trail holds no contact data.
        audit.record("user.provisioning_updated", now=now, actor=actor, user=user, changed=changed)
    return after_commit


def deprovision(user: User, *, actor: str, now: datetime) -> AfterCommit:
    """SCIM DELETE: disabled for good and gone for the ordering system, which may create the
    username and externalId anew. Returns what to do once the change is committed.

    Refused (DisabledByOperator) while an operator's disable holds the account: releasing
    username and externalId would let the next POST of the same order make the same person a
    fresh, active account with a new activation mail. The account stays as it is, visible to
    the ordering system as inactive, until the operator enables it (then the DELETE goes
    through)."""
    _refuse_to_undo_an_operator(user, "release it (idp users enable; then DELETE again)")
    after_commit = AfterCommit()
    if user.state != UserState.DISABLED:
        after_commit = lifecycle.disable(user, now, actor=actor, reason=DEPROVISIONED)
    user.deprovisioned_at = now
    user.external_id = None
    # The username is released; the subject stays, so that relying parties never see it reused.
    user.username = user.username_key = f"deleted.{user.subject}"
    audit.record("user.deprovisioned", now=now, actor=actor, user=user)
    if current_app.config["DEPROVISIONED_RETENTION_DAYS"] <= 0:
        _erase(user, now)
    return after_commit


def erase_expired(now: datetime, *, actor: str = "system", batch: int = 100) -> int:
    """Erases the personal data of at most `batch` accounts deprovisioned longer ago than the
    retention period. The caller commits."""
    cutoff = now - timedelta(days=current_app.config["DEPROVISIONED_RETENTION_DAYS"])
    due = db.session.scalars(
        select(User)
        .where(User.deprovisioned_at <= cutoff, User.erased_at.is_(None))
        .order_by(User.id)
        .limit(batch)
    ).all()
    for user in due:
        _erase(user, now, actor)
    return len(due)


def _erase(user: User, now: datetime, actor: str = "system") -> None:
    user.name = user.formatted_name = user.given_name = user.family_name = None
    user.disabled_reason = None
    user.email = ""
    user.phone = ""
    user.customer_number = None
    user.entitlements = []
    user.password_hash = None
    user.erased_at = now
    audit.record("user.erased", now=now, actor=actor, user=user)
