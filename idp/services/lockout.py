"""Per-account failure counters with a temporary lock that doubles with every further failure.
The counters are incremented in the database in one statement, so that parallel requests
cannot slip extra guesses between a read and a write. The owner is spared: from a network
where the account signed in lately, a lock set by guesses from elsewhere does not apply."""

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, or_, select, update

from idp.extensions import db
from idp.models import Session, User
from idp.network import network_of


def is_locked(user: User, now: datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


def lock_duration(failures: int) -> timedelta | None:
    config = current_app.config
    over = failures - config["LOCKOUT_THRESHOLD"]
    if over < 0:
        return None
    seconds = min(
        config["LOCKOUT_BASE_SECONDS"] * 2 ** min(over, 20), config["LOCKOUT_MAX_SECONDS"]
    )
    return timedelta(seconds=seconds)


def register_failure(user_id: int, counter: str, now: datetime) -> int:
    """Counts one failed password or PIN ("failed_passwords" or "failed_pins") and locks the
    account when the count passes the threshold. Returns the new count."""
    column = getattr(User, counter)
    failures = db.session.execute(
        update(User).where(User.id == user_id).values({column: column + 1}).returning(column)
    ).scalar_one()
    duration = lock_duration(failures)
    if duration is not None:
        db.session.execute(
            update(User).where(User.id == user_id).values(locked_until=now + duration)
        )
    return failures


def claim_password_attempt(user_id: int, now: datetime) -> bool:
    """Counts a password attempt before the password is checked, in one conditional UPDATE:
    False when the account is locked. The attempt that reaches the threshold sets the lock at
    once, so that parallel requests cannot all pass while nobody has failed yet."""
    config = current_app.config
    reaches_threshold = User.failed_passwords + 1 >= config["LOCKOUT_THRESHOLD"]
    first_lock = now + timedelta(seconds=config["LOCKOUT_BASE_SECONDS"])
    claimed = db.session.execute(
        update(User)
        .where(User.id == user_id, or_(User.locked_until.is_(None), User.locked_until <= now))
        .values(
            failed_passwords=User.failed_passwords + 1,
            locked_until=case((reaches_threshold, first_lock), else_=User.locked_until),
        )
        .returning(User.id)
    ).scalar_one_or_none()
    # Committed before the slow password check, which then holds no lock.
    db.session.commit()
    return claimed is not None


def give_back_password_attempt(user_id: int) -> None:
    """Takes back an attempt that claim_password_attempt counted but that was never checked
    (no argon2 slot in time), committed at once: the request ends with an error."""
    db.session.execute(
        update(User)
        .where(User.id == user_id, User.failed_passwords > 0)
        .values(failed_passwords=User.failed_passwords - 1)
    )
    db.session.commit()


def settle_password_attempt(user: User, ok: bool, now: datetime) -> None:
    """After the check: a right password gives the attempt back (a lock from wrong PINs
    stays); a wrong one keeps it and lengthens the lock with every further failure."""
    if ok:
        db.session.refresh(user)
        user.failed_passwords = 0
        if user.failed_pins < current_app.config["LOCKOUT_THRESHOLD"]:
            user.locked_until = None
        return
    failures = db.session.scalar(select(User.failed_passwords).where(User.id == user.id))
    duration = lock_duration(failures)
    if duration is not None:
        db.session.execute(
            update(User).where(User.id == user.id).values(locked_until=now + duration)
        )


def locked_by_pins(user_id: int, now: datetime) -> bool:
    """True while the account is locked after too many wrong PINs. Read from the database, not
    the session: another open login or activation of the same account may have just locked it."""
    failed_pins, locked_until = db.session.execute(
        select(User.failed_pins, User.locked_until).where(User.id == user_id)
    ).one()
    return (
        failed_pins >= current_app.config["LOCKOUT_THRESHOLD"]
        and locked_until is not None
        and locked_until > now
    )


def is_home_network(user: User, network: str, now: datetime) -> bool:
    """Whether the account signed in from this network within TRUSTED_NETWORK_DAYS."""
    since = now - timedelta(days=current_app.config["TRUSTED_NETWORK_DAYS"])
    addresses = db.session.scalars(
        select(Session.ip)
        .where(Session.user_id == user.id, Session.created_at >= since, Session.ip.is_not(None))
        .distinct()
    )
    return any(network_of(address) == network for address in addresses)


def reset(user: User) -> None:
    user.failed_passwords = 0
    user.failed_pins = 0
    user.locked_until = None
