"""Per-account failure counters with a temporary lock that doubles with every further failure.
The counters are incremented in the database in one statement, so that parallel requests
cannot slip extra guesses between a read and a write."""

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from idp.extensions import db
from idp.models import User


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


def reset(user: User) -> None:
    user.failed_passwords = 0
    user.failed_pins = 0
    user.locked_until = None
