"""The SMS PIN of a transaction: sent (within the account's cooldown and the SMS caps), sent
again on request, and tried a bounded number of times. Nothing is granted until `verify` says
OK and the caller completes the transaction in the same database transaction."""

import enum
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import or_, select, update

from idp import audit
from idp.accounts.models import User
from idp.authn import lockout, transactions
from idp.authn.factors.sms import pins
from idp.authn.factors.sms.models import PinChallenge
from idp.authn.models import AuthTransaction, TransactionPurpose, TransactionState
from idp.errors import PinsLocked, SendError, SendUnconfirmed
from idp.platform import metrics
from idp.platform.extensions import db
from idp.platform.secrets import same
from idp.senders import Sms, SmsReceipt, send_sms, sms_guard


class PinResult(enum.Enum):
    OK = "ok"
    WRONG = "wrong"  # wrong PIN, tries left (or a lock that this try set: wait for its end)
    EXPIRED = "expired"  # the PIN is too old; a new one can be requested
    ENDED = "ended"  # no tries left, or the transaction is over: start again
    # Not compared, no try counted:
    MALFORMED = "malformed"  # not six digits
    NOT_SENT = "not_sent"  # no PIN was sent for this transaction yet (see PinCooldown)
    LOCKED = "locked"  # wrong PINs lock the account for now

    @property
    def ok(self) -> bool:
        return self is PinResult.OK


class ResendRefused(Exception):
    def __init__(self, reason: str, wait_seconds: int = 0):
        super().__init__(reason)
        self.reason = reason  # "cooldown", "limit" or "locked"
        self.wait_seconds = wait_seconds


class PinCooldown(ResendRefused):
    """The account's last PIN went out less than PIN_RESEND_COOLDOWN ago, for this or another
    of its logins or activations: none is sent now."""

    def __init__(self, wait_seconds: int):
        super().__init__("cooldown", wait_seconds)


def recipient(transaction: AuthTransaction) -> str:
    """Where the transaction's PINs go: the number on record, which proves the account's owner;
    for the step that proves a new number (a phone change), that number, held server-side on
    the transaction and never taken from the browser."""
    if transaction.purpose == TransactionPurpose.PHONE_NEW:
        return transaction.pending_phone
    return transaction.user.phone


def send_pin(transaction: AuthTransaction, now: datetime) -> bool:
    """Creates a new PIN (older ones stop counting) and sends it. Raises PinCooldown within
    the cooldown of the account's last PIN, having sent nothing; raises SendError, and then the
    caller rolls back: no PIN exists that was not sent (and no cooldown runs). Returns False
    when the provider took the SMS without confirming it in time: it may still arrive, so its
    PIN stays valid and the cooldown runs (asking again at once would send and bill a second
    SMS before the first could come)."""
    claim_pin_slot(transaction, now)
    pin = pins.new_pin()
    challenge = PinChallenge(
        transaction_id=transaction.id,
        purpose=transaction.purpose,
        pin_digest="",
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["PIN_LIFETIME"]),
    )
    db.session.add(challenge)
    db.session.flush()
    challenge.pin_digest = pins.pin_digest(str(challenge.id), pin)
    transaction.pins_sent = AuthTransaction.pins_sent + 1  # in SQL: no lost update
    transaction.last_pin_sent_at = now
    # Raises SmsRefused (a SendError) before the provider is called: pumping costs us nothing.
    to = recipient(transaction)
    guard = sms_guard.guard()
    # Each number's caps count its own PINs, a new number's too (pumping through phone changes).
    guard.reserve(to, transaction.user.subject, new_number=to != transaction.user.phone)
    try:
        receipt = send_sms(
            Sms(
                to=to,
                text=pins.sms_text(transaction.user, pin, transaction.purpose),
            )
        )
    except SendUnconfirmed as unconfirmed:
        metrics.PINS_UNCONFIRMED.labels(purpose=transaction.purpose).inc()
        challenge.unconfirmed = True
        unconfirmed.when_answered(lambda late: _count_cost(guard, late))
        return False
    except SendError:
        metrics.PIN_SEND_FAILURES.labels(purpose=transaction.purpose).inc()
        raise
    metrics.PINS_SENT.labels(purpose=transaction.purpose).inc()
    _count_cost(guard, receipt)
    return True


def _count_cost(guard: sms_guard.SmsGuard, receipt: SmsReceipt) -> None:
    """What the provider charged, in the metric and in the hourly money budget."""
    metrics.record_sms_cost(receipt.price)
    guard.record_cost(receipt.price)


def delivery_unconfirmed(transaction: AuthTransaction) -> bool:
    """The transaction's newest PIN went to the provider unconfirmed: it may come late."""
    return bool(
        db.session.scalar(
            select(PinChallenge.unconfirmed)
            .where(PinChallenge.transaction_id == transaction.id)
            .order_by(PinChallenge.id.desc())
            .limit(1)
        )
    )


def send_first_pin(transaction: AuthTransaction, now: datetime, ip: str | None) -> None:
    """The PIN of a new login or activation, unless the cooldown of the account's last PIN
    holds it back (restarting is no way around the wait)."""
    try:
        confirmed = send_pin(transaction, now)
    except PinCooldown as cooldown:
        audit.record(
            "pin.held",
            now=now,
            actor="user",
            user=transaction.user,
            ip=ip,
            purpose=str(transaction.purpose),
            wait_seconds=cooldown.wait_seconds,
        )
        return
    audit.record(
        "pin.sent",
        now=now,
        actor="user",
        user=transaction.user,
        ip=ip,
        purpose=str(transaction.purpose),
        **({} if confirmed else {"unconfirmed": True}),
    )


def claim_pin_slot(transaction: AuthTransaction, now: datetime) -> None:
    """Reserves the account's next PIN in one conditional UPDATE of its row: of parallel
    requests only one passes, and a new login or activation within the cooldown of the
    account's last PIN gets none, so that starting over is no way around the wait."""
    cooldown_start = now - timedelta(seconds=current_app.config["PIN_RESEND_COOLDOWN"])
    claimed = db.session.execute(
        update(User)
        .where(
            User.id == transaction.user_id,
            or_(User.last_pin_sent_at.is_(None), User.last_pin_sent_at <= cooldown_start),
        )
        .values(last_pin_sent_at=now)
    ).rowcount
    if claimed != 1:
        raise PinCooldown(resend_wait(transaction, now))


def resend_wait(transaction: AuthTransaction, now: datetime) -> int:
    """Seconds until a new PIN may be sent (0: now), counted from the account's last PIN."""
    last_sent = db.session.scalar(
        select(User.last_pin_sent_at).where(User.id == transaction.user_id)
    )
    if last_sent is None:
        return 0
    ready = last_sent + timedelta(seconds=current_app.config["PIN_RESEND_COOLDOWN"])
    return max(0, int((ready - now).total_seconds() + 0.999))


def resend_pin(transaction: AuthTransaction, now: datetime) -> bool:
    """A new PIN on request. Raises ResendRefused: once the transaction is over, while wrong
    PINs lock the account (its PINs are refused anyway: sending more would only cost money),
    past PIN_MAX_RESENDS, or within the cooldown; SendError, and returns, as send_pin."""
    # The transaction's row before the account's, as a PIN try and its completion take them:
    # a resend and a try at once then wait for each other instead of deadlocking.
    state, pins_sent = db.session.execute(
        select(AuthTransaction.state, AuthTransaction.pins_sent)
        .where(AuthTransaction.id == transaction.id)
        .with_for_update()
    ).one()
    if state != TransactionState.PENDING:
        raise ResendRefused("limit")
    if lockout.pins_locked_until(transaction.user_id, now) is not None:
        raise ResendRefused("locked")
    if pins_sent > current_app.config["PIN_MAX_RESENDS"]:
        raise ResendRefused("limit")
    return send_pin(transaction, now)


def verify(transaction: AuthTransaction, typed: str, now: datetime) -> PinResult:
    """Checks one PIN try. The try is counted against the transaction and against the account
    and committed before the PIN is compared, in conditional UPDATEs, so that parallel requests
    never get more tries than allowed, on one open login or over all of them. Input that is no
    PIN, and tries while wrong PINs lock the account, cost nothing. On OK the transaction is
    claimed but not committed: the caller completes it and commits."""
    pin = pins.normalize(typed)
    if pin is None:
        return PinResult.MALFORMED
    challenge = db.session.scalar(
        select(PinChallenge)
        .where(PinChallenge.transaction_id == transaction.id)
        .order_by(PinChallenge.id.desc())
        .limit(1)
    )
    if challenge is None:
        return PinResult.NOT_SENT
    if challenge.expires_at <= now:
        return _counted(transaction, PinResult.EXPIRED)

    attempts = _claim_try(transaction, now)
    if attempts is None:
        return _counted(transaction, PinResult.ENDED)
    try:
        lockout.claim_pin_attempt(transaction.user_id, now)
    except PinsLocked:
        db.session.rollback()  # the transaction's try stays unused for after the lock
        return _counted(transaction, PinResult.LOCKED)
    db.session.commit()

    if same(challenge.pin_digest, pins.pin_digest(str(challenge.id), pin)):
        claimed = transactions.claim(transaction, now)
        return _counted(transaction, PinResult.OK if claimed else PinResult.ENDED)

    result = PinResult.WRONG
    if attempts >= current_app.config["PIN_MAX_ATTEMPTS"]:
        transactions.end(transaction, now)
        result = PinResult.ENDED
    db.session.commit()
    return _counted(transaction, result)


def _claim_try(transaction: AuthTransaction, now: datetime) -> int | None:
    """Counts one try of the transaction; its number, or None when none is left."""
    return db.session.execute(
        update(AuthTransaction)
        .where(
            AuthTransaction.id == transaction.id,
            AuthTransaction.state == TransactionState.PENDING,
            AuthTransaction.expires_at > now,
            AuthTransaction.pin_attempts < current_app.config["PIN_MAX_ATTEMPTS"],
        )
        .values(pin_attempts=AuthTransaction.pin_attempts + 1)
        .returning(AuthTransaction.pin_attempts)
    ).scalar_one_or_none()


def _counted(transaction: AuthTransaction, result: PinResult) -> PinResult:
    metrics.PIN_CHECKS.labels(purpose=transaction.purpose, result=result.value).inc()
    return result


def tries_left(transaction: AuthTransaction, now: datetime) -> int:
    """The PINs that may still be tried, truthfully: the transaction's own tries, but no more
    than the account takes before wrong PINs lock it."""
    db.session.refresh(transaction)
    own = max(0, current_app.config["PIN_MAX_ATTEMPTS"] - transaction.pin_attempts)
    return min(own, lockout.pin_tries_before_lock(transaction.user_id, now))
