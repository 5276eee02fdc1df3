"""Per-account failure counters with a temporary lock that doubles with every further failure:
one counter and lock for passwords, one for PINs. Each try is counted in the database in one
conditional statement before it is checked, so that parallel requests cannot slip extra guesses
between a read and a write. The owner is spared: from a network where the account signed in
lately, a password lock set by guesses from elsewhere does not apply."""

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, or_, select, update

from idp.accounts.models import User
from idp.authn.models import Session
from idp.errors import PinsLocked
from idp.platform.extensions import db
from idp.platform.network import network_of


def is_locked(user: User, now: datetime) -> bool:
    """Whether the password or the PIN step is locked."""
    locks = (user.locked_until, user.pins_locked_until)
    return any(until is not None and until > now for until in locks)


def lock_duration(failures: int) -> timedelta | None:
    config = current_app.config
    over = failures - config["LOCKOUT_THRESHOLD"]
    if over < 0:
        return None
    seconds = min(
        config["LOCKOUT_BASE_SECONDS"] * 2 ** min(over, 20), config["LOCKOUT_MAX_SECONDS"]
    )
    return timedelta(seconds=seconds)


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
    """After the check: a right password gives the attempt back and lifts the password lock
    (a PIN lock stays); a wrong one keeps it and lengthens the lock with every further failure."""
    if ok:
        db.session.refresh(user)
        user.failed_passwords = 0
        user.locked_until = None
        return
    failures = db.session.scalar(select(User.failed_passwords).where(User.id == user.id))
    duration = lock_duration(failures)
    if duration is not None:
        db.session.execute(
            update(User).where(User.id == user.id).values(locked_until=now + duration)
        )


def claim_pin_attempt(user_id: int, now: datetime) -> datetime | None:
    """Counts a PIN try against the account before the PIN is compared, in one conditional
    UPDATE; raises PinsLocked while wrong PINs lock the account. The try that reaches the
    threshold sets the lock at once (every further one doubles it), so that parallel tries on
    the account's other open logins find it locked. Returns when the lock this try set ends
    (None: it set none); a right PIN lifts it again (reset). The caller commits."""
    failures = db.session.execute(
        update(User)
        .where(
            User.id == user_id,
            or_(User.pins_locked_until.is_(None), User.pins_locked_until <= now),
        )
        .values(failed_pins=User.failed_pins + 1)
        .returning(User.failed_pins)
    ).scalar_one_or_none()
    if failures is None:
        raise PinsLocked(pins_locked_until(user_id, now) or now)
    duration = lock_duration(failures)
    if duration is None:
        return None
    # The row stays locked by the UPDATE above until the commit: no try slips in between.
    db.session.execute(
        update(User).where(User.id == user_id).values(pins_locked_until=now + duration)
    )
    return now + duration


def pins_locked_until(user_id: int, now: datetime) -> datetime | None:
    """When the PIN lock ends, or None when there is none. Read from the database, not the
    session: another open login or activation of the same account may have just set it."""
    until = db.session.scalar(select(User.pins_locked_until).where(User.id == user_id))
    return until if until is not None and until > now else None


def pin_tries_before_lock(user_id: int, now: datetime) -> int:
    """How many wrong PINs the account takes before they lock it: after a lock has run out,
    the next wrong one locks it again (for twice as long)."""
    failed_pins, until = db.session.execute(
        select(User.failed_pins, User.pins_locked_until).where(User.id == user_id)
    ).one()
    if until is not None and until > now:
        return 0
    return max(1, current_app.config["LOCKOUT_THRESHOLD"] - failed_pins)


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
    """After a confirmed PIN (or an operator's unlock): no lock, no failures, and no wait
    before the next PIN."""
    user.failed_passwords = 0
    user.failed_pins = 0
    user.locked_until = None
    user.pins_locked_until = None
    user.last_pin_sent_at = None
