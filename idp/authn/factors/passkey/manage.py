"""Adding and removing an account's passkeys, by herself or by an operator: each on the
audit trail, each told to her by mail once committed."""

from datetime import datetime

from sqlalchemy import select

from idp import audit
from idp.accounts import notifications
from idp.accounts.models import User
from idp.authn.factors.passkey import ceremonies
from idp.authn.factors.passkey.models import Passkey
from idp.platform.extensions import db
from idp.platform.hooks import AfterCommit

NAME_LENGTH = 64


def clean_name(name: str | None, default: str) -> str:
    name = " ".join((name or "").split())[:NAME_LENGTH]
    return name or default


def add(user: User, session_id: int, credential_json: str, name: str, now: datetime, ip):
    """Registers the browser's new passkey (ceremonies.Refused when its answer is refused).
    Returns it and the mail to send once committed."""
    passkey = ceremonies.register(user, session_id, credential_json, name, now)
    audit.record(
        "passkey.added",
        now=now,
        actor="user",
        user=user,
        ip=ip,
        passkey=ceremonies.credential_label(passkey),
        name=passkey.name,
        synced=passkey.synced,
    )
    after_commit = AfterCommit()
    after_commit.append(
        notifications.after_commit(user, "passkey_added", now=now, ip=ip, passkey=passkey.name)
    )
    return passkey, after_commit


def find(user: User, passkey_id: int) -> Passkey | None:
    return db.session.scalar(
        select(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user.id)
    )


def remove(user: User, passkeys: list[Passkey], now: datetime, *, actor: str, ip) -> AfterCommit:
    """Removes the account's passkeys named (a lost device); the caller commits, then runs
    what is returned (one mail per passkey)."""
    after_commit = AfterCommit()
    for passkey in passkeys:
        audit.record(
            "passkey.removed",
            now=now,
            actor=actor,
            user=user,
            ip=ip,
            passkey=ceremonies.credential_label(passkey),
            name=passkey.name,
        )
        after_commit.append(
            notifications.after_commit(
                user, "passkey_removed", now=now, ip=ip, passkey=passkey.name
            )
        )
        db.session.delete(passkey)
    db.session.flush()
    return after_commit
