"""What a change of an account (idp.accounts.events) ends of its logins."""

from datetime import datetime

from idp.accounts.models import User
from idp.authn import sessions, transactions
from idp.platform.hooks import AfterCommit


def signed_out_everywhere(user: User, now: datetime) -> AfterCommit:
    """Disabled, or its password reset: no login at its PIN step may complete into a session
    (one that `enable` would revive), and every session ends."""
    transactions.end_pending(user, now)
    return sessions.end_all(user, now)


def phone_changed(user: User, now: datetime) -> None:
    transactions.end_pending(user, now)
