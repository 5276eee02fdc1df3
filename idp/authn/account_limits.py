"""What holds an account back, told and lifted for support (`idp users show`, `idp users
unlock`): the locks after wrong passwords and after wrong PINs, the password attempts refused
per network, the wait before its next PIN, and the daily SMS caps of the account and of its
phone number."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app

from idp.accounts.models import User
from idp.authn import lockout
from idp.platform import ratelimit
from idp.senders import sms_guard

# The limits whose counts live in the shared counters (Redis when IDP_REDIS_URL is set); the
# others are columns of the account.
SHARED_LIMITS = ("login_attempts", "sms_per_account", "sms_per_number")


@dataclass(frozen=True)
class Limit:
    # password_lock, login_attempts, pin_lock, pin_wait, sms_per_account or sms_per_number
    name: str
    # None: unknown, as the shared counters could not be read (see `unreadable`).
    active: bool | None
    # When an active limit ends; for an SMS cap, when the day's count starts again.
    until: datetime | None
    # The counts behind it: "failures", "refused", or "sent" and "cap".
    counts: dict = field(default_factory=dict)
    # Why the shared counters could not be read.
    unreadable: Exception | None = None

    @property
    def hard(self) -> bool:
        """A lock after LOCKOUT_HARD_LIMIT failures: it lasts until it is lifted."""
        return lockout.is_hard_lock(self.until)

    def as_json(self) -> dict:
        until = self.until.isoformat(timespec="seconds") if self.until and not self.hard else None
        hard = {"hard": True} if self.hard else {}
        return {"active": self.active, "until": until, **hard, **self.counts}


def _until(name: str, until: datetime | None, now: datetime, **counts) -> Limit:
    active = until is not None and until > now
    return Limit(name, active, until if active else None, counts)


def _lock(name: str, until: datetime | None, failures: int, now: datetime) -> Limit:
    """A lock after failures; past LOCKOUT_HARD_LIMIT of them a hard one, whatever the column
    says (the count alone bars further attempts, see lockout)."""
    if failures >= current_app.config["LOCKOUT_HARD_LIMIT"]:
        until = lockout.HARD_LOCK
    return _until(name, until, now, failures=failures)


def of(user: User, now: datetime) -> list[Limit]:
    """Every limit of the account, in the order support reads them, active or not. Those in
    the shared counters are unknown (active None) while their storage cannot be reached:
    support still sees what the database holds."""
    pin_wait_until = None
    if user.last_pin_sent_at is not None:
        cooldown = timedelta(seconds=current_app.config["PIN_RESEND_COOLDOWN"])
        pin_wait_until = user.last_pin_sent_at + cooldown
    login_attempts, *sms_caps = _shared(user, now)
    return [
        _lock("password_lock", user.locked_until, user.failed_passwords, now),
        login_attempts,
        _lock("pin_lock", user.pins_locked_until, user.failed_pins, now),
        _until("pin_wait", pin_wait_until, now),
        *sms_caps,
    ]


def _shared(user: User, now: datetime) -> list[Limit]:
    """The limits of SHARED_LIMITS, in that order."""
    try:
        caps = sms_guard.guard().personal_caps(user.phone, user.subject)
        refused, refused_until = ratelimit.login_attempts_blocked(user.username_key)
    except ratelimit.STORAGE_ERRORS as error:
        return [Limit(name, None, None, unreadable=error) for name in SHARED_LIMITS]
    return [
        _until("login_attempts", refused_until, now, refused=refused),
        *(
            Limit(name, cap.reached, cap.resets_at, {"sent": cap.sent, "cap": cap.limit})
            for name, cap in (
                ("sms_per_account", caps["account"]),
                ("sms_per_number", caps["number"]),
            )
        ),
    ]


@dataclass(frozen=True)
class Lifted:
    # The limits that were active and are lifted now.
    limits: list[Limit]
    # Why the limits in the shared counters could not be lifted (then they are as they were).
    shared_not_lifted: Exception | None = None


def lift(user: User, now: datetime) -> Lifted:
    """Lifts every lock, the wait and the day's SMS counts. The ones in the database are lifted
    even when the shared counters cannot be reached: an account locked by wrong passwords can
    then sign in again from every network that has attempts left. The caller commits."""
    limits = of(user, now)
    lockout.reset(user)
    try:
        ratelimit.lift_login_attempt_limits(user.username_key)
        sms_guard.guard().lift_personal_caps(user.phone, user.subject)
    except ratelimit.STORAGE_ERRORS as error:
        in_database = [limit for limit in limits if limit.name not in SHARED_LIMITS]
        return Lifted([limit for limit in in_database if limit.active], shared_not_lifted=error)
    return Lifted([limit for limit in limits if limit.active])
