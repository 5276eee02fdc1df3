"""Posting one logout token to one relying party's back-channel logout endpoint (Back-Channel
Logout 1.0, section 2.5), bounded by BACKCHANNEL_LOGOUT_TIMEOUT. Only to addresses that are not
link-local or a cloud metadata service (network.GuardedConnection), whatever the URI's name
resolves to by then. The token is never logged: it is a credential until it expires."""

import logging

import requests

from idp.platform import network


def post(http: requests.Session, uri: str, token: str, timeout: float, logger: logging.Logger):
    """None when the relying party took the token, else why not (for the log and the row)."""
    try:
        # stream: the body is never read (it means nothing here), so that an endpoint sending
        # a large one costs neither time nor memory.
        response = http.post(
            uri, data={"logout_token": token}, timeout=timeout, allow_redirects=False, stream=True
        )
    except requests.RequestException as error:
        refusal = network.refusal_of(error)
        if refusal is not None:
            logger.warning("back-channel logout to %s refused: %s", uri, refusal)
            return f"refused: {refusal}"[:120]
        problem = type(error).__name__
    else:
        response.close()
        if response.status_code in (200, 204):
            return None
        problem = f"HTTP {response.status_code}"
    logger.warning("back-channel logout to %s failed: %s", uri, problem)
    return problem
