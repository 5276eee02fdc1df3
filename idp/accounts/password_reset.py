"""The forgotten password (/password/forgot): a set-password link by mail, to an active account
only. Whoever asks learns nothing from it, neither whether the name is an account nor its
state: the page has answered before this runs (idp.platform.background), the same for every
name. What was decided is in the audit trail."""

from datetime import datetime

from flask import current_app

from idp import audit
from idp.accounts import lifecycle, users
from idp.accounts.models import User, UserState
from idp.errors import SendError
from idp.platform import ratelimit
from idp.platform.extensions import db
from idp.platform.secrets import keyed_digest


def request_link(username: str, now: datetime, ip: str | None) -> None:
    """Mails a reset link (valid PASSWORD_RESET_LIFETIME; older links die) when the name is an
    active account that has requests left; audits a refusal of a known account."""
    key = users.username_key(username)
    # Every name counts, known or not: if only accounts were counted, the name whose requests
    # never run out would be no account. The keyed digest keeps typed names (and passwords
    # typed into the wrong field) out of the counters, also from whoever reads Redis.
    allowed = ratelimit.take_password_reset(keyed_digest("password-reset", key), ip)
    user = _find(key)
    if user is None:
        return
    if not allowed:
        _refuse(user, now, ip, "rate_limited")
    elif user.state != UserState.ACTIVE:
        # Invited: the invitation mail is the way in, and it comes from the operator.
        _refuse(user, now, ip, user.state)
    else:
        _send(user, now, ip)


def _find(key: str) -> User | None:
    # Nothing that cannot be a username reaches the database (a NUL byte would fail there).
    if not key or len(key) > users.MAX_USERNAME or not set(key) <= users.USERNAME_ALLOWED:
        return None
    return users.find_by_username(key)


def _refuse(user: User, now: datetime, ip: str | None, reason: str) -> None:
    audit.record("password.reset_refused", now=now, actor="user", user=user, ip=ip, reason=reason)
    db.session.commit()


def _send(user: User, now: datetime, ip: str | None) -> None:
    try:
        lifecycle.send_password_link(
            user,
            now,
            actor="user",
            lifetime=current_app.config["PASSWORD_RESET_LIFETIME"],
            ip=ip,
        )
    except SendError as error:
        db.session.rollback()
        current_app.logger.warning("password reset mail not sent: %s", error)
        return
    db.session.commit()
