"""What the sessions page shows and does: the account's live sessions (which browser, from which
network, since when), ending one or all of them, and the account's recent sign-ins and
security events from the audit trail, in the visitor's language and the site's time zone.

A session is named on the page by a handle, a keyed digest of its row id: neither the cookie's
token nor the `sid` that relying parties see, and worth nothing anywhere else. It is looked up
among the account's own sessions only, so that a changed value can reach no other account's."""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import ua_parser
from flask import current_app
from flask_babel import format_date, format_time, gettext
from flask_babel import lazy_gettext as _l
from sqlalchemy import case, func, select, update

from idp import audit
from idp.accounts.models import User
from idp.audit.models import AuditEvent
from idp.authn import sessions
from idp.authn.models import Session
from idp.platform.extensions import db
from idp.platform.hooks import AfterCommit
from idp.platform.i18n import zone_name
from idp.platform.network import network_of
from idp.platform.secrets import keyed_digest, same

HANDLE_PURPOSE = "account-session"
HANDLE_LENGTH = 32
# More live sessions than this are not listed one by one (each needs a PIN, but a script could
# collect many); "end all" ends them all the same.
MAX_LISTED = 50
RECENT_EVENTS = 20
# Rows read for the list, per line it shows: runs of one event make one line.
ROWS_READ_PER_ENTRY = 10


# --- Sessions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionEntry:
    handle: str
    agent: str
    network: str
    started: datetime
    last_used: datetime
    current: bool


def handle_of(session: Session) -> str:
    return keyed_digest(HANDLE_PURPOSE, str(session.id))[:HANDLE_LENGTH]


def is_handle(value: str) -> bool:
    """Whether the value has the form of a handle (checked before any lookup)."""
    return len(value) == HANDLE_LENGTH and all(c in "0123456789abcdef" for c in value)


def _live(user: User, now: datetime):
    idle = timedelta(seconds=current_app.config["SESSION_IDLE_TIMEOUT"])
    return select(Session).where(
        Session.user_id == user.id,
        Session.revoked_at.is_(None),
        Session.expires_at > now,
        Session.last_seen_at > now - idle,
    )


def live_sessions(current: Session, now: datetime) -> tuple[list[SessionEntry], int]:
    """The account's live sessions, this browser's first, then the most recently used; and
    how many more there are than are listed."""
    live = _live(current.user, now)
    rows = db.session.scalars(
        live.order_by(
            case((Session.id == current.id, 0), else_=1),
            Session.last_seen_at.desc(),
            Session.id.desc(),
        ).limit(MAX_LISTED)
    ).all()
    count = db.session.scalar(select(func.count()).select_from(live.subquery()))
    entries = [
        SessionEntry(
            handle=handle_of(row),
            agent=describe_agent(row.user_agent),
            network=network_of(row.ip) if row.ip else gettext("unknown"),
            started=row.created_at,
            last_used=row.last_seen_at,
            current=row.id == current.id,
        )
        for row in rows
    ]
    return entries, max(0, count - len(rows))


def find_own(user: User, handle: str, now: datetime) -> Session | None:
    """The account's live session with that handle, or None (ended, expired, another
    account's, or no session at all)."""
    found = None
    for row in db.session.scalars(_live(user, now)):
        if same(handle_of(row), handle):
            found = row
    return found


def end_one(
    session: Session, now: datetime, *, ip: str | None, current: bool
) -> AfterCommit | None:
    """Ends the session and its tokens (sessions.end); the relying parties are told once the
    caller has committed. Claimed by a conditional UPDATE first, so that of two requests that
    end the same session only one does (one audit event, one logout token per relying party).
    None when another request ended it first."""
    claimed = db.session.execute(
        update(Session)
        .where(Session.id == session.id, Session.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    if claimed != 1:
        return None
    after_commit = sessions.end(session, now)
    audit.record(
        "session.ended",
        now=now,
        actor="user",
        user=session.user,
        ip=ip,
        sid=session.sid,
        current=current,
    )
    return after_commit


def end_all(user: User, now: datetime, *, ip: str | None) -> AfterCommit:
    """Ends every session of the account, this one included, and their tokens; the relying
    parties of each are told once the caller has committed."""
    ended = db.session.scalars(
        select(Session).where(Session.user_id == user.id, Session.revoked_at.is_(None))
    ).all()
    after_commit = sessions.end_all(user, now)
    for session in ended:
        audit.record(
            "session.ended",
            now=now,
            actor="user",
            user=user,
            ip=ip,
            sid=session.sid,
            everywhere=True,
        )
    return after_commit


def describe_agent(user_agent: str | None) -> str:
    """The browser and the system, as the user agent names them ("Firefox 125 on Windows 10")."""
    result = ua_parser.parser(user_agent or "", ua_parser.Domain.USER_AGENT | ua_parser.Domain.OS)
    browser, system = result.user_agent, result.os
    if browser is None or browser.family == "Other":
        name = gettext("Unknown browser")
    else:
        name = " ".join(filter(None, (browser.family, browser.major)))
    if system is None or system.family == "Other":
        return name
    os_name = " ".join(filter(None, (system.family, system.major)))
    return gettext("%(browser)s on %(system)s", browser=name, system=os_name)


def local_datetime(moment: datetime) -> str:
    """Date and time to the minute in the visitor's language and the site's time zone, with the
    zone named ("14.05.2026, 09:30 Uhr (MESZ)", "May 14, 2026, 9:30 AM CEST")."""
    return gettext(
        "%(date)s, %(time)s",
        date=format_date(moment, format="medium"),
        time=gettext(
            "%(time)s %(zone)s", time=format_time(moment, format="short"), zone=zone_name(moment)
        ),
    )


# --- The account's recent events --------------------------------------------------------------


@dataclass(frozen=True)
class ActivityEntry:
    what: str
    when: datetime  # the newest, when it happened several times in a row
    network: str | None
    by: str | None
    failed: bool
    times: int = 1


LOGIN_FAILURES = {
    "password": _l("Sign-in failed: wrong password"),
    "throttled": _l("Sign-in refused: too many attempts from this network"),
    "unusable-account": _l("Sign-in refused: locked after wrong passwords"),
}
PIN_FAILURES = {
    "wrong": _l("Wrong SMS PIN"),
    "expired": _l("SMS PIN no longer valid"),
}


def _login_failed(details: dict) -> str:
    return str(LOGIN_FAILURES.get(details.get("reason"), _l("Sign-in failed")))


def _pin_failed(details: dict) -> str:
    return str(PIN_FAILURES.get(details.get("result"), _l("SMS PIN not accepted")))


def _password_change_failed(details: dict) -> str:
    if details.get("reason") == "locked":
        return str(_l("Password change refused: locked after wrong passwords"))
    return str(_l("Password change refused: wrong current password"))


def _phone_change_failed(details: dict) -> str:
    reason = details.get("reason")
    if reason == "locked":
        return str(_l("Mobile number change refused: locked after wrong passwords"))
    if reason == "password":
        return str(_l("Mobile number change refused: wrong current password"))
    return str(_l("Mobile number change refused: confirmed in a browser not signed in"))


def _password_reset_refused(details: dict) -> str:
    if details.get("reason") == "rate_limited":
        return str(_l("Password reset refused: requested too often"))
    return str(_l("Password reset refused"))


def _hard_locked(details: dict) -> str:
    failures = details.get("failures") or "…"
    if details.get("step") == "pin":
        return gettext(
            "Locked after %(failures)s wrong SMS PINs in a row, until support lifts it",
            failures=failures,
        )
    return gettext(
        "Locked after %(failures)s wrong passwords in a row, until support lifts it or the "
        "password is reset",
        failures=failures,
    )


def _phone_changed(details: dict) -> str:
    return gettext("Mobile number changed to %(phone)s", phone=details.get("new") or "…")


def _fixed(text) -> Callable[[dict], str]:
    return lambda _details: str(text)


# The events of the account that it shows, each with its text; (text, failed).
SHOWN: dict[str, tuple[Callable[[dict], str], bool]] = {
    "login.succeeded": (_fixed(_l("Signed in")), False),
    "login.failed": (_login_failed, True),
    "pin.failed": (_pin_failed, True),
    "logout": (_fixed(_l("Signed out")), False),
    "session.ended": (_fixed(_l("Session ended")), False),
    "password.changed": (_fixed(_l("Password changed")), False),
    "password.change_failed": (_password_change_failed, True),
    "password.reset_requested": (_fixed(_l("Password reset requested")), False),
    "password.reset_refused": (_password_reset_refused, True),
    "password.reset": (_fixed(_l("Password reset")), False),
    "user.phone_changed": (_phone_changed, False),
    "phone.change_failed": (_phone_change_failed, True),
    "lockout.hard_locked": (_hard_locked, True),
    "user.activated": (_fixed(_l("Access activated")), False),
    "user.disabled": (_fixed(_l("Access disabled")), False),
    "user.enabled": (_fixed(_l("Access enabled again")), False),
    "user.unlocked": (_fixed(_l("Sign-in locks lifted")), False),
}


def _by(actor: str) -> str | None:
    """Who acted, when it was not the person herself (never the operator's own name)."""
    if actor == "user":
        return None
    if actor.startswith("cli:"):
        return gettext("by support")
    if actor.startswith("client:"):
        return gettext("by your organisation's user management")
    return gettext("by the system")


def recent_events(user: User, limit: int = RECENT_EVENTS) -> list[ActivityEntry]:
    """The account's newest sign-ins and security events, newest first; of no other account,
    and with the network of each, never the address."""
    rows = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.user_id == user.id, AuditEvent.event.in_(list(SHOWN)))
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
        .limit(limit * ROWS_READ_PER_ENTRY)
    ).all()
    entries: list[ActivityEntry] = []
    for row in rows:
        text, failed = SHOWN[row.event]
        entry = ActivityEntry(
            what=text(row.details or {}),
            when=row.created_at,
            network=network_of(row.ip) if row.ip else None,
            by=_by(row.actor),
            failed=failed,
        )
        # Anyone can make refused events for her name (a reset asked for again and again): a
        # run of the same one is one line, so that it cannot push the others off the list.
        if entries and _line(entries[-1]) == _line(entry):
            entries[-1] = replace(entries[-1], times=entries[-1].times + 1)
        elif len(entries) == limit:
            break
        else:
            entries.append(entry)
    return entries


def _line(entry: ActivityEntry) -> tuple:
    return entry.what, entry.network, entry.by, entry.failed
