"""Signed links: itsdangerous signs (with a salt per purpose) what the database makes
single-use (a nonce whose digest is stored)."""

import re

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SET_PASSWORD_SALT = "idp.link.set-password"  # noqa: S105 (a salt, not a secret)
# What itsdangerous's URL-safe tokens are made of: base64url parts joined by dots.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)+")


class LinkInvalid(Exception):
    """Tampered, truncated or signed for another purpose."""


class LinkExpired(Exception):
    """Signed by us, but too old."""


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt)


def sign(salt: str, payload: list) -> str:
    return _serializer(salt).dumps(payload)


def unsign(salt: str, token: str, max_age: int) -> list:
    # Base64 decoding skips characters outside its alphabet: a link with junk appended would
    # pass as the link itself. Only the link exactly as we sent it is one.
    if not TOKEN_SHAPE.fullmatch(token):
        raise LinkInvalid()
    try:
        payload = _serializer(salt).loads(token, max_age=max_age)
    except SignatureExpired:
        raise LinkExpired() from None
    except BadSignature:
        raise LinkInvalid() from None
    if not isinstance(payload, list):
        raise LinkInvalid()
    return payload


def absolute_url(path: str) -> str:
    """Links in mails are built from the configured issuer, never from a request's Host."""
    return current_app.config["ISSUER"] + path
