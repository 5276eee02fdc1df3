"""Login sessions, server-side: the cookie carries a random token, the row its digest. Idle and
absolute lifetimes are enforced here, not by the cookie."""

import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from idp.accounts.models import User
from idp.authn import events
from idp.authn.models import Session
from idp.platform import hooks
from idp.platform.extensions import db
from idp.platform.hooks import AfterCommit
from idp.platform.secrets import digest, new_token

# Writing last_seen_at on every request would turn every page view into a write.
TOUCH_INTERVAL = timedelta(seconds=60)


def create(
    user: User, *, amr: list[str], now: datetime, ip: str | None, user_agent: str | None
) -> tuple[Session, str]:
    token = new_token()
    session = Session(
        token_hash=digest(token),
        sid=secrets.token_urlsafe(32),
        user_id=user.id,
        auth_time=now,
        amr=amr,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=current_app.config["SESSION_ABSOLUTE_TIMEOUT"]),
        ip=ip,
        user_agent=(user_agent or "")[:255] or None,
    )
    db.session.add(session)
    db.session.flush()
    return session, token


def reauthenticate(session: Session, *, amr: list[str], now: datetime) -> str:
    """A new login within a live session: the same session (and `sid`) with a new auth_time
    and a new cookie token, so that a token seen before the login is worthless after it."""
    token = new_token()
    session.token_hash = digest(token)
    session.auth_time = now
    session.amr = amr
    session.last_seen_at = now
    return token


def is_live(session: Session, now: datetime) -> bool:
    idle = timedelta(seconds=current_app.config["SESSION_IDLE_TIMEOUT"])
    return (
        session.revoked_at is None
        and session.expires_at > now
        and session.last_seen_at + idle > now
        and session.user.state == "active"
    )


def load(token: str | None, now: datetime, *, touch: bool = True) -> Session | None:
    """The live session for a cookie value, touched; None when there is none. Untouched when
    the caller is inside a change of its own: the touch commits, and would commit that change
    half done (a confirmed step's claim before what it confirms)."""
    if not token:
        return None
    session = db.session.scalar(select(Session).where(Session.token_hash == digest(token)))
    if session is None or not is_live(session, now):
        return None
    if touch and now - session.last_seen_at >= TOUCH_INTERVAL:
        session.last_seen_at = now
        db.session.commit()
    return session


def end(session: Session, now: datetime) -> AfterCommit:
    """Ends the session, and (through SESSION_ENDED) the tokens its relying parties hold;
    returns what to do once the change is committed (tell those relying parties)."""
    if session.revoked_at is None:
        session.revoked_at = now
    return hooks.fire(events.SESSION_ENDED, session, now)


def end_all(user: User, now: datetime) -> AfterCommit:
    """Ends every live session of the user, as `end` does."""
    return _end_each(_revoke_all(user, now), now)


def end_others(user: User, keep: Session, now: datetime) -> AfterCommit:
    """Ends every live session of the user but `keep` (the browser that changed the password),
    as `end` does; `keep`'s tokens live on."""
    return _end_each(_revoke_all(user, now, keep=keep), now)


def renew(session: Session) -> str:
    """A new cookie token for the same session (and `sid`): after a change of what signs the
    account in, a token that was seen before the change is worthless (session fixation)."""
    token = new_token()
    session.token_hash = digest(token)
    return token


def _end_each(ended: list[Session], now: datetime) -> AfterCommit:
    after_commit = AfterCommit()
    for session in ended:
        after_commit += hooks.fire(events.SESSION_ENDED, session, now)
    return after_commit


def _revoke_all(user: User, now: datetime, *, keep: Session | None = None) -> list[Session]:
    conditions = [Session.user_id == user.id, Session.revoked_at.is_(None)]
    if keep is not None:
        conditions.append(Session.id != keep.id)
    sessions = db.session.scalars(select(Session).where(*conditions)).all()
    db.session.execute(update(Session).where(*conditions).values(revoked_at=now))
    return list(sessions)
