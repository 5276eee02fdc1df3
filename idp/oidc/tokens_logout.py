"""Ending a login session everywhere: the session, the tokens its relying parties hold, and a
Back-Channel Logout 1.0 logout token to every one of them that asked for it.

The logout tokens are posted in the background with a short timeout and one retry: a relying
party that is down is logged, and never holds up the person who is logging out. They go only
to addresses that are not link-local or a cloud metadata service (see network.GuardedConnection),
whatever the URI's name resolves to by then."""

import secrets
import threading
import time
from datetime import datetime

import requests
from flask import current_app

from idp.accounts.models import User
from idp.authn.models import Session
from idp.oidc import keys, token_store
from idp.oidc.models import Client
from idp.oidc.token_claims import epoch
from idp.platform import network
from idp.policy import LOGOUT_TOKEN_LIFETIME_SECONDS

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
ATTEMPTS = 2
RETRY_DELAY_SECONDS = 1


def logout_token(client: Client, session: Session, now: datetime) -> str:
    claims = {
        "iss": current_app.config["ISSUER"],
        "sub": session.user.subject,
        "aud": client.client_id,
        "iat": epoch(now),
        "exp": epoch(now) + LOGOUT_TOKEN_LIFETIME_SECONDS,
        "jti": secrets.token_urlsafe(16),
        "sid": session.sid,
        "events": {BACKCHANNEL_EVENT: {}},
    }
    return keys.sign(claims, alg=client.id_token_signed_response_alg, now=now, typ="logout+jwt")


def session_ended(session: Session, now: datetime) -> list:
    """On authn's SESSION_ENDED: revokes the session's grants; once the change is committed,
    posts a logout token to each of its relying parties that asked for one."""
    token_store.revoke_session_grants(session, now)
    deliveries = [
        (client.backchannel_logout_uri, logout_token(client, session, now))
        for client in token_store.clients_of_session(session)
        if client.backchannel_logout_uri
    ]
    return [lambda: send(deliveries)] if deliveries else []


def account_signed_out(user: User, now: datetime) -> None:
    """On accounts' DISABLED and PASSWORD_RESET: every grant ends, also those of sessions
    that ended before."""
    token_store.revoke_user_grants(user, now)


def send(deliveries: list[tuple[str, str]]) -> threading.Thread | None:
    """Posts the logout tokens in a background thread (not a daemon, so that a command line
    run waits for it). Returns the thread, or None when there is nothing to send."""
    if not deliveries:
        return None
    timeout = current_app.config["BACKCHANNEL_LOGOUT_TIMEOUT"]
    logger = current_app.logger
    thread = threading.Thread(
        target=_deliver_all, args=(deliveries, timeout, logger), name="backchannel-logout"
    )
    thread.start()
    return thread


def _deliver_all(deliveries, timeout, logger) -> None:
    with network.guarded_session() as http:
        for uri, token in deliveries:
            _deliver(http, uri, token, timeout, logger)


def _deliver(http, uri, token, timeout, logger) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            response = http.post(
                uri, data={"logout_token": token}, timeout=timeout, allow_redirects=False
            )
            if response.status_code in (200, 204):
                return
            problem = f"HTTP {response.status_code}"
        except requests.RequestException as error:
            refusal = network.refusal_of(error)
            if refusal is not None:
                logger.warning("back-channel logout to %s refused: %s", uri, refusal)
                return
            problem = type(error).__name__
        logger.warning(
            "back-channel logout to %s failed (attempt %d of %d): %s",
            uri,
            attempt,
            ATTEMPTS,
            problem,
        )
        if attempt < ATTEMPTS:
            time.sleep(RETRY_DELAY_SECONDS)
