"""Per-account failure counters with a temporary lock that doubles with every further failure:
one counter and lock for passwords, one for PINs. Each try is counted in the database in one
conditional statement before it is checked, so that parallel requests cannot slip extra guesses
between a read and a write. The owner is spared: from a network where the account signed in
lately, a password lock set by guesses from elsewhere does not apply. After LOCKOUT_HARD_LIMIT
consecutive failures (NIST SP 800-63B-4 3.2.2: at most 100) a step stays locked, on every
network, until an operator lifts it (`idp users unlock`) or, for the password, a completed
forgotten-password reset does (it proves the mailbox and the phone)."""

from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import case, or_, select, update

from idp import audit
from idp.accounts.models import User
from idp.authn.models import Session
from idp.errors import PinsLocked
from idp.platform.extensions import db
from idp.platform.network import network_of

# The lock of a step that LOCKOUT_HARD_LIMIT failures locked for good: a moment no clock
# reaches, so that every check of "locked until" keeps it locked without a case of its own.
# Pages never show it as a time (is_hard_lock): they say to contact support instead.
HARD_LOCK = datetime(9999, 12, 31, tzinfo=UTC)


def is_hard_lock(until: datetime | None) -> bool:
    return until is not None and until >= HARD_LOCK


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


def lock_until(failures: int, now: datetime) -> datetime | None:
    """When the lock after `failures` consecutive failures ends: HARD_LOCK from the hard limit
    on, None below the threshold."""
    if failures >= current_app.config["LOCKOUT_HARD_LIMIT"]:
        return HARD_LOCK
    duration = lock_duration(failures)
    return None if duration is None else now + duration


def _record_hard_lock(user_id: int, step: str, failures: int, now: datetime) -> None:
    """Support must learn why the account stays locked, and when the guessing reached it."""
    user = db.session.get(User, user_id)
    audit.record(
        "lockout.hard_locked", now=now, actor="system", user=user, step=step, failures=failures
    )


def claim_password_attempt(user_id: int, now: datetime) -> bool:
    """Counts a password attempt before the password is checked, in one conditional UPDATE:
    False when the account is locked. The attempt that reaches the threshold sets the lock at
    once, so that parallel requests cannot all pass while nobody has failed yet; the one that
    reaches the hard limit sets the hard lock at once, so that no parallel attempt is the
    limit's first one over."""
    config = current_app.config
    tries = User.failed_passwords + 1
    first_lock = now + timedelta(seconds=config["LOCKOUT_BASE_SECONDS"])
    claimed = db.session.execute(
        update(User)
        .where(
            User.id == user_id,
            or_(User.locked_until.is_(None), User.locked_until <= now),
            # The count itself bars attempts past the limit, whatever the lock column says.
            User.failed_passwords < config["LOCKOUT_HARD_LIMIT"],
        )
        .values(
            failed_passwords=tries,
            locked_until=case(
                (tries >= config["LOCKOUT_HARD_LIMIT"], HARD_LOCK),
                (tries >= config["LOCKOUT_THRESHOLD"], first_lock),
                else_=User.locked_until,
            ),
        )
        .returning(User.id)
    ).scalar_one_or_none()
    # Committed before the slow password check, which then holds no lock.
    db.session.commit()
    return claimed is not None


def give_back_password_attempt(user_id: int, now: datetime) -> None:
    """Takes back an attempt that claim_password_attempt counted but that was never checked
    (no argon2 slot in time), committed at once: the request ends with an error. A hard lock
    that it set becomes the longest short one: the limit was not reached."""
    longest = now + timedelta(seconds=current_app.config["LOCKOUT_MAX_SECONDS"])
    db.session.execute(
        update(User)
        .where(User.id == user_id, User.failed_passwords > 0)
        .values(
            failed_passwords=User.failed_passwords - 1,
            locked_until=case((User.locked_until == HARD_LOCK, longest), else_=User.locked_until),
        )
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
    until = lock_until(failures, now)
    if until is not None:
        # Never shortens a hard lock that a parallel attempt set after this one was counted.
        db.session.execute(
            update(User)
            .where(User.id == user.id, or_(User.locked_until.is_(None), User.locked_until < until))
            .values(locked_until=until)
        )
    if failures == current_app.config["LOCKOUT_HARD_LIMIT"]:
        _record_hard_lock(user.id, "password", failures, now)


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
            User.failed_pins < current_app.config["LOCKOUT_HARD_LIMIT"],
        )
        .values(failed_pins=User.failed_pins + 1)
        .returning(User.failed_pins)
    ).scalar_one_or_none()
    if failures is None:
        raise PinsLocked(pins_locked_until(user_id, now) or now)
    until = lock_until(failures, now)
    if until is None:
        return None
    # The row stays locked by the UPDATE above until the commit: no try slips in between.
    db.session.execute(update(User).where(User.id == user_id).values(pins_locked_until=until))
    if is_hard_lock(until):
        _record_hard_lock(user_id, "pin", failures, now)
    return until


def pins_locked_until(user_id: int, now: datetime) -> datetime | None:
    """When the PIN lock ends, or None when there is none. Read from the database, not the
    session: another open login or activation of the same account may have just set it."""
    failed_pins, until = db.session.execute(
        select(User.failed_pins, User.pins_locked_until).where(User.id == user_id)
    ).one()
    if failed_pins >= current_app.config["LOCKOUT_HARD_LIMIT"]:
        return HARD_LOCK
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


def password_hard_locked(user_id: int) -> bool:
    """Whether the hard limit locks the password step, read from the database: a parallel
    attempt may have just reached it."""
    failed, until = db.session.execute(
        select(User.failed_passwords, User.locked_until).where(User.id == user_id)
    ).one()
    return failed >= current_app.config["LOCKOUT_HARD_LIMIT"] or is_hard_lock(until)


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
