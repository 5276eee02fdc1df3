"""Changing the mobile number while signed in (/account/phone), as NIST SP 800-63B-4 binds a
new authenticator: the current password (counted like a login's, idp.authn.lockout), then a PIN
to the number on record (the owner), then a PIN to the new number (it is hers and receives
SMS). Only then the number changes. The new number waits server-side on the transactions
(`pending_phone`), so that no browser can swap it between the steps."""

from dataclasses import dataclass
from datetime import datetime

from flask import current_app, render_template
from flask_babel import force_locale
from sqlalchemy import select, update

from idp import audit
from idp.accounts import lifecycle, users
from idp.accounts.models import User
from idp.accounts.passwords import hashing
from idp.authn import lockout, transactions
from idp.authn.factors.sms import challenges
from idp.authn.models import AuthTransaction, TransactionPurpose, TransactionState
from idp.errors import HashingBusy, SendError
from idp.platform.extensions import db
from idp.platform.hooks import AfterCommit
from idp.senders import Sms, send_sms, sms_guard

PURPOSES = (TransactionPurpose.PHONE_CURRENT, TransactionPurpose.PHONE_NEW)
# Longer input is no phone number, and is not parsed.
MAX_TYPED = 64
NUMBER_CHARACTERS = set("+0123456789 ()-./")


@dataclass(frozen=True)
class Refused:
    """Why the form is shown again: a key of the page's messages, its status, and until when a
    lock holds."""

    reason: str
    status: int = 422
    until: datetime | None = None


def begin(
    user: User, phone: str, password: str, now: datetime, ip: str | None
) -> tuple[AuthTransaction, str] | Refused:
    """Checks the new number (as at the invitation: international, mobile, an allowed
        country, not the present one), then the current password, and sends the PIN to the number
        on record. Raises PinsLocked while wrong PINs lock the account and SendError when the SMS
        fails (the caller rolls back); on Refused the caller commits (a wrong password stays
        counted). Another phone change of the account that is still open ends: one at a time, so
    that no two can complete at once."""
    new = checked_number(phone)
    if isinstance(new, Refused):
        return new
    if new == user.phone:
        return Refused("same")
    # Before the password's check writes the account's row: a PIN try on an open change takes
    # its step's row, then the account's, and the other order would wait on it forever. A new
    # request replaces the open one even when its password turns out wrong.
    end_open_changes(user, now)
    refused = check_current_password(user, password, now, ip)
    if refused is not None:
        return refused
    transaction, token = transactions.start(
        user, TransactionPurpose.PHONE_CURRENT, now, pending_phone=new
    )
    challenges.send_first_pin(transaction, now, ip)
    audit.record(
        "phone.change_requested",
        now=now,
        actor="user",
        user=user,
        ip=ip,
        new=users.masked_phone(new),
    )
    return transaction, token


def checked_number(phone: str) -> str | Refused:
    """The number in E.164 form, or why it cannot receive the PINs."""
    phone = phone.strip()
    # What a number is written with, and nothing else (no control characters, which the
    # parser would skip over).
    if not phone or len(phone) > MAX_TYPED or not set(phone) <= NUMBER_CHARACTERS:
        return Refused("format")
    problem = users.phone_problem(phone)
    if problem is not None:
        return Refused(problem)
    return users.check_phone(phone)


def check_current_password(user: User, password: str, now: datetime, ip: str | None):
    """None when the current password is right; Refused when it is wrong or the account's
    password step is locked. Counted before it is checked (lockout.claim_password_attempt, one
    conditional UPDATE, committed), so that parallel requests get no extra guesses. Unlike at
    the login, the home network spares nobody: whoever holds this session signed in from it,
    and a session left open must not guess on without end."""
    if not lockout.claim_password_attempt(user.id, now):
        until = db.session.scalar(select(User.locked_until).where(User.id == user.id))
        _failed(user, now, ip, "locked")
        return Refused("locked", status=429, until=until)
    too_long = (
        len(password.encode("utf-8", "surrogatepass")) > current_app.config["PASSWORD_MAX_BYTES"]
    )
    try:
        # Too long to be any password set here: wrong, without hashing it.
        ok = not too_long and hashing().verify(user.password_hash, password)
    except HashingBusy:
        # Not checked (no argon2 slot in time), so not a try.
        lockout.give_back_password_attempt(user.id, now)
        raise
    lockout.settle_password_attempt(user, ok, now)
    if ok:
        return None
    _failed(user, now, ip, "password")
    return Refused("password")


def _failed(user: User, now: datetime, ip: str | None, reason: str) -> None:
    audit.record("phone.change_failed", now=now, actor="user", user=user, ip=ip, reason=reason)


def end_open_changes(user: User, now: datetime) -> None:
    db.session.execute(
        update(AuthTransaction)
        .where(
            AuthTransaction.user_id == user.id,
            AuthTransaction.state == TransactionState.PENDING,
            AuthTransaction.purpose.in_([str(purpose) for purpose in PURPOSES]),
        )
        .values(state=TransactionState.FAILED, ended_at=now)
    )


def confirm_current(
    transaction: AuthTransaction, now: datetime, ip: str | None
) -> tuple[AuthTransaction, str]:
    """The PIN to the number on record was right (the transaction claimed, not committed):
    the step that proves the new number, whose PIN goes out now. She has just proved password
    and phone, as at a login: no wait for the next PIN, no failures held against her. Raises
    SendError (the caller rolls back, the first step stays open)."""
    user = transaction.user
    lockout.reset(user)
    audit.record("phone.current_confirmed", now=now, actor="user", user=user, ip=ip)
    new, token = transactions.start(
        user, TransactionPurpose.PHONE_NEW, now, pending_phone=transaction.pending_phone
    )
    challenges.send_first_pin(new, now, ip)
    return new, token


def complete(transaction: AuthTransaction, now: datetime, ip: str | None) -> AfterCommit:
    """The PIN to the new number was right (claimed, not committed): the number changes
    (lifecycle.change_phone: the account's pending logins end, audited, a mail tells her), and
    an SMS to the old number tells of it once committed. UserError when the number is refused
    now or was changed meanwhile (the caller rolls back)."""
    user = transaction.user
    old = user.phone
    after_commit = lifecycle.change_phone(user, transaction.pending_phone, now, actor="user", ip=ip)
    lockout.reset(user)
    after_commit.append(_tell_old_number(user, old))
    return after_commit


def _tell_old_number(user: User, old: str):
    """The SMS to the old number: whoever holds that phone learns that it no longer receives
    the PINs (a stolen session and password would otherwise take the account unnoticed). Under
    the SMS caps like any other; sent once committed, and a failure is only logged."""
    config = current_app.config
    with force_locale(users.language(user)):
        text = render_template(
            "sms/phone_changed.txt",
            product=config["PRODUCT_NAME"],
            phone=plain_masked(user.phone),
        ).strip()
    logger = current_app.logger
    guard = sms_guard.guard()

    def send() -> None:
        try:
            guard.reserve(old, user.subject)
            guard.record_cost(send_sms(Sms(to=old, text=text)).price)
        except SendError as error:
            logger.warning("SMS about the phone change not sent to the old number: %s", error)

    return send


def plain_masked(phone: str) -> str:
    """The masked number in the GSM 03.38 alphabet (one SMS): no ellipsis, no no-break space."""
    return f"{phone[:3]} ... {phone[-2:]}"
