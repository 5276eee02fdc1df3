"""The second step of a login or an activation: a transaction bound to one browser, an SMS PIN
sent for it, and a bounded number of tries. Nothing is granted until `verify` says OK and the
caller completes the transaction in the same database transaction."""

import enum
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from idp import metrics
from idp.extensions import db
from idp.models import AuthTransaction, PinChallenge, TransactionState, User
from idp.senders import SendError, Sms, send_sms
from idp.services import lockout, pins, sms_guard
from idp.services.secrets import digest, new_token, same


class PinResult(enum.Enum):
    OK = "ok"
    WRONG = "wrong"  # wrong PIN, tries left
    EXPIRED = "expired"  # the PIN is too old; a new one can be requested
    ENDED = "ended"  # no tries left, or the transaction is over: start again


class ResendRefused(Exception):
    def __init__(self, reason: str, wait_seconds: int = 0):
        super().__init__(reason)
        self.reason = reason  # "cooldown" or "limit"
        self.wait_seconds = wait_seconds


def start(
    user: User,
    purpose: str,
    now: datetime,
    *,
    invitation_id: int | None = None,
    pending_password_hash: str | None = None,
    return_to: str | None = None,
) -> tuple[AuthTransaction, str]:
    token = new_token()
    transaction = AuthTransaction(
        token_hash=digest(token),
        purpose=purpose,
        user_id=user.id,
        invitation_id=invitation_id,
        pending_password_hash=pending_password_hash,
        return_to=return_to,
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["TRANSACTION_LIFETIME"]),
    )
    db.session.add(transaction)
    db.session.flush()
    return transaction, token


def load(token: str | None, now: datetime) -> AuthTransaction | None:
    """The pending, unexpired transaction for the browser's token, or None."""
    if not token:
        return None
    transaction = db.session.scalar(
        select(AuthTransaction).where(AuthTransaction.token_hash == digest(token))
    )
    if (
        transaction is None
        or transaction.state != TransactionState.PENDING
        or transaction.expires_at <= now
    ):
        return None
    return transaction


def send_pin(transaction: AuthTransaction, now: datetime) -> None:
    """Creates a new PIN (older ones stop counting) and sends it; raises SendError, and then
    the caller rolls back: no PIN exists that was not sent."""
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
    transaction.pins_sent += 1
    transaction.last_pin_sent_at = now
    # Raises SmsRefused (a SendError) before the provider is called: pumping costs us nothing.
    sms_guard.guard().reserve(transaction.user.phone, transaction.user.subject)
    try:
        receipt = send_sms(
            Sms(
                to=transaction.user.phone,
                text=pins.sms_text(transaction.user, pin, transaction.purpose),
            )
        )
    except SendError:
        metrics.PIN_SEND_FAILURES.labels(purpose=transaction.purpose).inc()
        raise
    metrics.PINS_SENT.labels(purpose=transaction.purpose).inc()
    metrics.record_sms_cost(receipt.price)
    sms_guard.guard().record_cost(receipt.price)


def resend_wait(transaction: AuthTransaction, now: datetime) -> int:
    """Seconds until a new PIN may be requested (0: now)."""
    if transaction.last_pin_sent_at is None:
        return 0
    ready = transaction.last_pin_sent_at + timedelta(
        seconds=current_app.config["PIN_RESEND_COOLDOWN"]
    )
    return max(0, int((ready - now).total_seconds() + 0.999))


def check_resend(transaction: AuthTransaction, now: datetime) -> None:
    # The PINs of a locked account are refused anyway; sending more would only cost money.
    if lockout.locked_by_pins(transaction.user_id, now):
        raise ResendRefused("limit")
    if transaction.pins_sent > current_app.config["PIN_MAX_RESENDS"]:
        raise ResendRefused("limit")
    wait = resend_wait(transaction, now)
    if wait:
        raise ResendRefused("cooldown", wait)


def claim_resend(transaction: AuthTransaction, now: datetime) -> None:
    """Reserves the resend atomically: of parallel requests, only one passes the cooldown."""
    check_resend(transaction, now)
    cooldown_start = now - timedelta(seconds=current_app.config["PIN_RESEND_COOLDOWN"])
    claimed = db.session.execute(
        update(AuthTransaction)
        .where(
            AuthTransaction.id == transaction.id,
            AuthTransaction.state == TransactionState.PENDING,
            AuthTransaction.last_pin_sent_at <= cooldown_start,
            AuthTransaction.pins_sent <= current_app.config["PIN_MAX_RESENDS"],
        )
        .values(last_pin_sent_at=now)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        raise ResendRefused("cooldown", current_app.config["PIN_RESEND_COOLDOWN"])
    db.session.refresh(transaction)


def verify(transaction: AuthTransaction, pin: str, now: datetime) -> PinResult:
    """Checks one PIN try. The try is counted and committed before the PIN is compared, in one
    conditional UPDATE, so that parallel requests never get more tries than allowed. On OK the
    transaction is claimed but not committed: the caller completes it and commits."""
    max_attempts = current_app.config["PIN_MAX_ATTEMPTS"]
    # Wrong PINs lock the account. Without this check every other open login or activation of
    # the account (one SMS each) would still take its own five tries, lock or not.
    if lockout.locked_by_pins(transaction.user_id, now):
        end(transaction, now)
        db.session.commit()
        return PinResult.ENDED
    attempts = db.session.execute(
        update(AuthTransaction)
        .where(
            AuthTransaction.id == transaction.id,
            AuthTransaction.state == TransactionState.PENDING,
            AuthTransaction.expires_at > now,
            AuthTransaction.pin_attempts < max_attempts,
        )
        .values(pin_attempts=AuthTransaction.pin_attempts + 1)
        .returning(AuthTransaction.pin_attempts)
    ).scalar_one_or_none()
    db.session.commit()
    if attempts is None:
        return PinResult.ENDED

    challenge = db.session.scalar(
        select(PinChallenge)
        .where(PinChallenge.transaction_id == transaction.id)
        .order_by(PinChallenge.id.desc())
        .limit(1)
    )
    pin = pin.strip()
    if challenge is None or challenge.expires_at <= now:
        result = PinResult.EXPIRED
    elif len(pin) == pins.PIN_LENGTH and same(
        challenge.pin_digest, pins.pin_digest(str(challenge.id), pin)
    ):
        claimed = db.session.execute(
            update(AuthTransaction)
            .where(
                AuthTransaction.id == transaction.id,
                AuthTransaction.state == TransactionState.PENDING,
            )
            .values(state=TransactionState.COMPLETED, ended_at=now)
        ).rowcount
        result = PinResult.OK if claimed == 1 else PinResult.ENDED
        metrics.PIN_CHECKS.labels(purpose=transaction.purpose, result=result.value).inc()
        return result
    else:
        lockout.register_failure(transaction.user_id, "failed_pins", now)
        result = PinResult.WRONG

    if attempts >= max_attempts:
        end(transaction, now)
        result = PinResult.ENDED
    db.session.commit()
    metrics.PIN_CHECKS.labels(purpose=transaction.purpose, result=result.value).inc()
    return result


def end_pending(user: User, now: datetime) -> None:
    """Ends the user's open logins and activations: after the account changes (disabled, new
    phone, new password) none that began before the change may complete."""
    db.session.execute(
        update(AuthTransaction)
        .where(
            AuthTransaction.user_id == user.id,
            AuthTransaction.state == TransactionState.PENDING,
        )
        .values(state=TransactionState.FAILED, ended_at=now)
    )


def end(transaction: AuthTransaction, now: datetime) -> None:
    db.session.execute(
        update(AuthTransaction)
        .where(
            AuthTransaction.id == transaction.id,
            AuthTransaction.state == TransactionState.PENDING,
        )
        .values(state=TransactionState.FAILED, ended_at=now)
    )


def tries_left(transaction: AuthTransaction) -> int:
    db.session.refresh(transaction)
    return max(0, current_app.config["PIN_MAX_ATTEMPTS"] - transaction.pin_attempts)
