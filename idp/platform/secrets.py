"""Random values and their digests. High-entropy secrets (link nonces, session tokens, codes)
are stored as SHA-256 digests: a database leak yields nothing usable, and a lookup by digest
needs no slow hash."""

import hashlib
import hmac
import secrets

from flask import current_app


def new_token() -> str:
    """A random value with 256 bits of entropy, URL-safe."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_digest(purpose: str, value: str) -> str:
    """HMAC under a key derived from SECRET_KEY and a purpose: for low-entropy values (PINs)
    whose plain digest could be reversed by trying every value."""
    key = hmac.new(
        str(current_app.config["SECRET_KEY"]).encode(), purpose.encode(), hashlib.sha256
    ).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
