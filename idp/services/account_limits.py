"""What holds an account back, told and lifted for support (`idp users show`, `idp users
unlock`): the locks after wrong passwords and after wrong PINs, the password attempts refused
per network, the wait before its next PIN, and the daily SMS caps of the account and of its
phone number."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app

from idp import ratelimit
from idp.models import User
from idp.services import lockout, sms_guard


@dataclass(frozen=True)
class Limit:
    # password_lock, login_attempts, pin_lock, pin_wait, sms_per_account or sms_per_number
    name: str
    active: bool
    # When an active limit ends; for an SMS cap, when the day's count starts again.
    until: datetime | None
    # The counts behind it: "failures", "refused", or "sent" and "cap".
    counts: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        until = self.until.isoformat(timespec="seconds") if self.until else None
        return {"active": self.active, "until": until, **self.counts}


def _until(name: str, until: datetime | None, now: datetime, **counts) -> Limit:
    active = until is not None and until > now
    return Limit(name, active, until if active else None, counts)


def of(user: User, now: datetime) -> list[Limit]:
    """Every limit of the account, in the order support reads them, active or not."""
    pin_wait_until = None
    if user.last_pin_sent_at is not None:
        cooldown = timedelta(seconds=current_app.config["PIN_RESEND_COOLDOWN"])
        pin_wait_until = user.last_pin_sent_at + cooldown
    caps = sms_guard.guard().personal_caps(user.phone, user.subject)
    refused, refused_until = ratelimit.login_attempts_blocked(user.username_key)
    return [
        _until("password_lock", user.locked_until, now, failures=user.failed_passwords),
        _until("login_attempts", refused_until, now, refused=refused),
        _until("pin_lock", user.pins_locked_until, now, failures=user.failed_pins),
        _until("pin_wait", pin_wait_until, now),
        *(
            Limit(name, cap.reached, cap.resets_at, {"sent": cap.sent, "cap": cap.limit})
            for name, cap in (
                ("sms_per_account", caps["account"]),
                ("sms_per_number", caps["number"]),
            )
        ),
    ]


def lift(user: User, now: datetime) -> list[Limit]:
    """Lifts every lock, the wait and the day's SMS counts; returns the limits that were active.
    The caller commits."""
    active = [limit for limit in of(user, now) if limit.active]
    lockout.reset(user)
    ratelimit.lift_login_attempt_limits(user.username_key)
    sms_guard.guard().lift_personal_caps(user.phone, user.subject)
    return active
