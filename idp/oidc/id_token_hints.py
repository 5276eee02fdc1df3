"""id_token_hint (OIDC Core 3.1.2.1, RP-Initiated Logout 1.0): an ID token that we issued,
expired or not, naming who the relying party expects and which client it is."""

from flask import current_app

from idp.oidc import clients, keys
from idp.platform import clock

# Header types of the tokens we sign that are not ID tokens: never an id_token_hint.
NOT_ID_TOKEN_TYPES = ("at+jwt", "logout+jwt")


def verified_claims(id_token: str) -> dict | None:
    """The claims of an ID token that we signed (expired or not: it is only a hint). Access and
    logout tokens are ours too, but no ID tokens: they must not speak for a session."""
    try:
        if keys.token_type(id_token) in NOT_ID_TOKEN_TYPES:
            return None
        claims = keys.verify(id_token, clock.now())
    except keys.InvalidJWT:
        return None
    return claims if claims.get("iss") == current_app.config["ISSUER"] else None


def hinted_client(hint: str | None):
    """The client and claims of a valid id_token_hint, else (None, None)."""
    claims = verified_claims(hint) if hint else None
    if claims is None or not isinstance(claims.get("aud"), str):
        return None, None
    return clients.find(claims["aud"]), claims
