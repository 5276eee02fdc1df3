"""A login's or an activation's step after the password: a transaction bound to one browser,
which the second factor (idp.authn.factors) confirms. Nothing is granted until the factor says
so and the caller completes the transaction in the same database transaction."""

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from idp.accounts.models import User
from idp.authn import lockout
from idp.authn.models import AuthTransaction, TransactionState
from idp.errors import PinsLocked
from idp.platform.extensions import db
from idp.platform.secrets import digest, new_token


def start(
    user: User,
    purpose: str,
    now: datetime,
    *,
    invitation_id: int | None = None,
    pending_password_hash: str | None = None,
    pending_phone: str | None = None,
    return_to: str | None = None,
    factor: str = "sms",
) -> tuple[AuthTransaction, str]:
    """A new pending transaction, to be confirmed by `factor`; raises PinsLocked first when
    wrong answers lock the account, whose answer could not be accepted (and whose SMS would be
    paid for nothing)."""
    locked_until = lockout.pins_locked_until(user.id, now)
    if locked_until is not None:
        raise PinsLocked(locked_until)
    token = new_token()
    transaction = AuthTransaction(
        token_hash=digest(token),
        purpose=purpose,
        factor=factor,
        user_id=user.id,
        invitation_id=invitation_id,
        pending_password_hash=pending_password_hash,
        pending_phone=pending_phone,
        return_to=return_to,
        created_at=now,
        expires_at=now + timedelta(seconds=current_app.config["TRANSACTION_LIFETIME"]),
    )
    db.session.add(transaction)
    db.session.flush()
    return transaction, token


def load(token: str | None, now: datetime, *, factor: str) -> AuthTransaction | None:
    """The pending, unexpired transaction for the browser's token that `factor` confirms, or
    None: one factor's page never confirms a transaction that another factor was to."""
    if not token:
        return None
    transaction = db.session.scalar(
        select(AuthTransaction).where(AuthTransaction.token_hash == digest(token))
    )
    if (
        transaction is None
        or transaction.state != TransactionState.PENDING
        or transaction.expires_at <= now
        or transaction.factor != factor
    ):
        return None
    return transaction


def return_to_of(token: str | None) -> str | None:
    """Where the browser's transaction was to go on to, in any state and expired too: the page
    that says it ended leads to a new login with the same way back."""
    if not token:
        return None
    return db.session.scalar(
        select(AuthTransaction.return_to).where(AuthTransaction.token_hash == digest(token))
    )


def claim(transaction: AuthTransaction, now: datetime) -> bool:
    """Marks the transaction completed, in one conditional UPDATE: of parallel confirmations
    only one gets True. Not committed: the caller completes what it confirms, then commits."""
    return (
        db.session.execute(
            update(AuthTransaction)
            .where(
                AuthTransaction.id == transaction.id,
                AuthTransaction.state == TransactionState.PENDING,
            )
            .values(state=TransactionState.COMPLETED, ended_at=now)
        ).rowcount
        == 1
    )


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
