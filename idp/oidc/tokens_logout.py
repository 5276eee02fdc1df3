"""Ending a login session everywhere: the session, the tokens its relying parties hold, and a
Back-Channel Logout 1.0 logout token to every one of them that asked for it.

The logout tokens go through the logout outbox (idp.oidc.logout_outbox): written with the end of
the session, tried once in the background as soon as that is committed, and again by the
pollers (idp.oidc.logout_poller) or `idp logout deliver` until the relying party takes them. A
relying party that is down never holds up the person who is logging out."""

from concurrent.futures import Future
from datetime import datetime

from flask import Flask, current_app

from idp.accounts.models import User
from idp.authn.models import Session
from idp.oidc import logout_outbox, token_store
from idp.platform import background, clock


def session_ended(session: Session, now: datetime) -> list:
    """On authn's SESSION_ENDED, in the transaction that ends the session: revokes its grants
    and writes the logouts its relying parties are owed; once that is committed, tries them."""
    token_store.revoke_session_grants(session, now)
    owed = logout_outbox.enqueue(session, token_store.clients_of_session(session), now)
    if not owed:
        return []
    app = current_app._get_current_object()
    return [lambda: deliver_soon(app, owed)]


def account_signed_out(user: User, now: datetime) -> None:
    """On accounts' DISABLED and PASSWORD_RESET: every grant ends, also those of sessions
    that ended before."""
    token_store.revoke_user_grants(user, now)


def deliver_soon(app: Flask, ids: list[int]) -> Future | None:
    """Tries the deliveries at once, in the process's small background pool (a burst of
    logouts waits there instead of starting a thread each; a command line run waits for it at
    exit). Whatever fails or finds the pool full stays due for the pollers."""
    return background.of(app).submit(lambda: _deliver(app, ids), "backchannel-logout")


def _deliver(app: Flask, ids: list[int]) -> None:
    with app.app_context():
        try:
            logout_outbox.deliver_due(clock.now(), only=ids)
        except Exception:  # the rows stay due: a poller takes them
            app.logger.exception("back-channel logout delivery failed")
