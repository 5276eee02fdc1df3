"""Signing keys for ID and access tokens, kept in the database so that every worker signs with
the same keys, the private halves encrypted under a key derived from the server secret.

A new key is published in JWKS at once but signs only after KEY_PUBLISH_LEAD_TIME, so that
relying parties that cache JWKS know it before they meet it. A retired key stays published until
everything it signed has expired.

Every process keeps what it read of the keys (the signing key, decrypted; the published keys,
parsed; the JWKS document) until the next change it knows of, and reads them again once it has
used them for KEY_RECHECK_INTERVAL: a key that another process adds is published in JWKS at once
and signs only after the lead time, so every worker switches on time; a key that an operator
revokes in another process is out of use everywhere one interval after the commit, which is what
`idp keys revoke` waits before it says so. One second keeps that wait short and costs a busy
worker three small queries a second; without the cache each token would cost a query, a
decryption and a key import."""

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import func, or_, select

from idp.errors import UserError
from idp.oidc.models import SigningKey
from idp.platform import clock
from idp.platform.database import one_at_a_time
from idp.platform.extensions import db
from idp.platform.health import NotReady
from idp.policy import ALGORITHMS, DEFAULT_ALG

KEY_TYPES = {"ES256": (ECKey, "P-256"), "RS256": (RSAKey, 2048)}

# Loading a PEM and decrypting it on every signature would cost more than the signature.
# Keyed by the encryption key too: an app with another secret (a test's second app, a changed
# setting) must not sign with what this one decrypted.
_private_keys: dict[tuple[bytes, str], ECKey | RSAKey] = {}
KEY_RECHECK_INTERVAL = timedelta(seconds=1)
# A token with a kid we do not know makes us read the published keys again (another process may
# have just added one), but not more often than this: anyone can send such tokens, unsigned.
UNKNOWN_KID_RELOAD_INTERVAL = timedelta(seconds=5)
_CACHE = "idp.keys"
_UNKNOWN_KID_RELOAD = "idp.keys.unknown-kid-reload"
_unknown_kid_lock = threading.Lock()
_first_key_lock = threading.Lock()


@dataclass(frozen=True)
class _Signer:
    kid: str
    alg: str
    key: ECKey | RSAKey
    loaded_at: datetime
    until: datetime
    read_at: float  # time.monotonic() when read


@dataclass(frozen=True)
class _Published:
    keys: dict[str, tuple[str, ECKey | RSAKey]]  # kid -> (alg, public key)
    jwks: bytes
    loaded_at: datetime
    until: datetime
    read_at: float  # time.monotonic() when read


class UndecryptableKeys(RuntimeError):
    """The stored private keys do not decrypt with this process's secret; the message says
    what to do, and carries nothing of the configuration."""


class InvalidJWT(Exception):
    """Not a token this server signed, or not one it accepts (alg none, HMAC, unknown kid)."""


def _encryption_key() -> bytes:
    secret = current_app.config.get("KEY_ENCRYPTION_SECRET") or current_app.config["SECRET_KEY"]
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"idp.signing-keys").derive(
        str(secret).encode()
    )
    return base64.urlsafe_b64encode(key)


def _fernet() -> Fernet:
    return Fernet(_encryption_key())


def _encryption_setting() -> str:
    if current_app.config.get("KEY_ENCRYPTION_SECRET"):
        return "IDP_KEY_ENCRYPTION_SECRET"
    return "IDP_SECRET_KEY"


def undecryptable_message() -> str:
    return (
        f"the signing keys cannot be decrypted with this {_encryption_setting()}: was it "
        "changed? Set the old one back, or `idp keys rotate`"
    )


def decrypts(row: SigningKey) -> bool:
    """Whether this process's secret decrypts the key (read again, not from the cache)."""
    try:
        _fernet().decrypt(row.private_key_encrypted.encode())
    except InvalidToken:
        return False
    return True


def _max_signed_lifetime() -> timedelta:
    config = current_app.config
    return timedelta(seconds=max(config["ID_TOKEN_LIFETIME"], config["ACCESS_TOKEN_LIFETIME"]))


def create(alg: str, now: datetime, active_at: datetime) -> SigningKey:
    if alg not in KEY_TYPES:
        raise UserError(f"unsupported algorithm {alg!r}: use one of {', '.join(ALGORITHMS)}")
    key_type, parameter = KEY_TYPES[alg]
    key = key_type.generate_key(parameter)
    public = key.as_dict(private=False)
    kid = key.thumbprint()
    public.update(kid=kid, alg=alg, use="sig")
    pem = key.as_pem(private=True)
    row = SigningKey(
        kid=kid,
        alg=alg,
        public_jwk=public,
        private_key_encrypted=_fernet().encrypt(pem).decode(),
        created_at=now,
        active_at=active_at,
    )
    db.session.add(row)
    db.session.flush()
    return row


def rotate(alg: str, now: datetime) -> tuple[SigningKey, str | None]:
    """Adds a key that signs after the lead time; the current key of the algorithm retires
    then, and stays published until what it signed has expired. When no stored key of the
    algorithm can sign now (there is none, or it does not decrypt with this secret), the new
    key signs at once: there is nothing to wait for, and waiting would leave the service
    unable to sign for the lead time. Returns the key and, then, why it signs at once."""
    current = _current_signing_key(alg, now)
    if current is None:
        at_once = f"no {alg} key signed yet"
    elif not decrypts(current):
        at_once = f"no stored {alg} key can sign: {undecryptable_message()}"
    else:
        at_once = None
    lead = timedelta(seconds=0 if at_once else current_app.config["KEY_PUBLISH_LEAD_TIME"])
    new = create(alg, now, active_at=now + lead)
    forget_cached_keys()
    for old in db.session.scalars(
        select(SigningKey).where(
            SigningKey.alg == alg, SigningKey.retired_at.is_(None), SigningKey.id != new.id
        )
    ):
        old.retired_at = new.active_at
    return new, at_once


def revoke(kid: str, now: datetime) -> tuple[SigningKey, SigningKey | None]:
    """Withdraws a key at once (a leaked one): it neither signs nor is published any more, so
    what it signed no longer verifies. The row goes, private half and all; the audit trail
    keeps its kid. The key that signs for its algorithm now cannot go before a successor is
    there (`idp keys rotate`), and that successor then signs at once instead of after the lead
    time: a relying party that has not fetched it yet refetches JWKS for an unknown kid, a
    leaked key that keeps signing is worse. Returns the key and that successor, if any.

    This process forgets its cached keys now; every other one within KEY_RECHECK_INTERVAL of
    the commit."""
    row = db.session.scalar(select(SigningKey).where(SigningKey.kid == kid))
    if row is None:
        raise UserError(f"no signing key {kid!r}: `idp keys list` shows them")
    current = _current_signing_key(row.alg, now)
    successor = None
    if current is not None and current.id == row.id:
        successor = db.session.scalar(
            select(SigningKey)
            .where(SigningKey.alg == row.alg, SigningKey.active_at > now)
            .order_by(SigningKey.active_at, SigningKey.id)
            .limit(1)
        )
        if successor is None:
            raise UserError(
                f"{kid} is the only {row.alg} key that signs: add its successor first with "
                f"`idp keys rotate --alg {row.alg}`, then revoke it"
            )
        successor.active_at = now
    elif row.active_at > now:
        _hand_over_past(row)
    db.session.delete(row)
    db.session.flush()
    for cached in [cached for cached in _private_keys if cached[1] == kid]:
        _private_keys.pop(cached, None)
    forget_cached_keys()
    return row, successor


def _hand_over_past(pending: SigningKey) -> None:
    """A key revoked before it signs: the key it was to replace signs on until the pending
    key's own successor takes over (or for good), rather than retiring into a moment with no
    key, which would leave the first request after it to make one without a lead time."""
    predecessor = db.session.scalar(
        select(SigningKey)
        .where(SigningKey.alg == pending.alg, SigningKey.active_at < pending.active_at)
        .order_by(SigningKey.active_at.desc(), SigningKey.id.desc())
        .limit(1)
    )
    if predecessor is not None:
        predecessor.retired_at = pending.retired_at


def _current_signing_key(alg: str, now: datetime) -> SigningKey | None:
    return db.session.scalar(
        select(SigningKey)
        .where(
            SigningKey.alg == alg,
            SigningKey.active_at <= now,
            or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > now),
        )
        .order_by(SigningKey.active_at.desc(), SigningKey.id.desc())
        .limit(1)
    )


def signing_key(alg: str, now: datetime) -> SigningKey:
    """The newest active key of the algorithm. The very first one is made on demand: nothing
    can have cached a JWKS without it, so it needs no lead time."""
    row = _current_signing_key(alg, now)
    if row is None:
        row = _first_signing_key(alg, now)
    return row


def _first_signing_key(alg: str, now: datetime) -> SigningKey:
    """Made once, by whoever asks first; the others wait and take it. The instances of a fresh
    installation ask at once (their first readiness checks): each making its own would leave
    one signing with a key that a relying party's cached JWKS, read from another, lacks."""
    with _first_key_lock:  # this process's threads
        one_at_a_time(db.session, f"first signing key {alg}")  # the other instances
        # With the clock read again: a key made meanwhile became active after `now`.
        row = _current_signing_key(alg, max(now, clock.now()))
        if row is None:
            row = create(alg, now, active_at=now)
        db.session.commit()
    forget_cached_keys()
    return row


def published(now: datetime) -> list[SigningKey]:
    keep_after = now - _max_signed_lifetime()
    return list(
        db.session.scalars(
            select(SigningKey)
            .where(or_(SigningKey.retired_at.is_(None), SigningKey.retired_at > keep_after))
            .order_by(SigningKey.id)
        )
    )


def jwks(now: datetime) -> dict:
    return {"keys": [row.public_jwk for row in published(now)]}


def _private_key(row: SigningKey) -> ECKey | RSAKey:
    cached = (_encryption_key(), row.kid)
    key = _private_keys.get(cached)
    if key is None:
        try:
            pem = Fernet(cached[0]).decrypt(row.private_key_encrypted.encode())
        except InvalidToken:
            raise UndecryptableKeys(undecryptable_message()) from None
        key = KEY_TYPES[row.alg][0].import_key(pem)
        _private_keys[cached] = key
    return key


def _cache() -> dict:
    return current_app.extensions.setdefault(_CACHE, {})


def forget_cached_keys() -> None:
    """This process reads the keys again on next use (the others within the recheck interval)."""
    current_app.extensions.pop(_CACHE, None)


def _may_reload_for_unknown_kid(now: datetime) -> bool:
    """Whether an unknown kid may make this process read the published keys again now: once per
    UNKNOWN_KID_RELOAD_INTERVAL (a clock that went back allows it)."""
    extensions = current_app.extensions
    with _unknown_kid_lock:
        last = extensions.get(_UNKNOWN_KID_RELOAD)
        if last is not None and last <= now < last + UNKNOWN_KID_RELOAD_INTERVAL:
            return False
        extensions[_UNKNOWN_KID_RELOAD] = now
        return True


def _recheck_at(now: datetime, *moments: datetime | None) -> datetime:
    # Half the lead time at most: a worker must learn of a new key well before it signs.
    lead = timedelta(seconds=current_app.config["KEY_PUBLISH_LEAD_TIME"])
    recheck = min(KEY_RECHECK_INTERVAL, lead / 2)
    return min([now + recheck, *(moment for moment in moments if moment and moment > now)])


def _fresh(entry, now: datetime) -> bool:
    """Usable at `now` (which decides the key: a successor's start, a retired key's end) and
    read less than KEY_RECHECK_INTERVAL ago by the monotonic clock: a caller with an older `now`
    (a loop that signs many tokens at one moment) or a wall clock set back must not stretch
    what `idp keys revoke` waits for."""
    if entry is None or not entry.loaded_at <= now < entry.until:
        return False
    return time.monotonic() - entry.read_at < KEY_RECHECK_INTERVAL.total_seconds()


def _signer(alg: str, now: datetime) -> _Signer:
    signer = _cache().get(("signer", alg))
    if not _fresh(signer, now):
        row = signing_key(alg, now)
        # A key of the same algorithm that starts signing later takes over then.
        successor = db.session.scalar(
            select(func.min(SigningKey.active_at)).where(
                SigningKey.alg == alg, SigningKey.active_at > now
            )
        )
        signer = _Signer(
            row.kid,
            row.alg,
            _private_key(row),
            now,
            _recheck_at(now, row.retired_at, successor),
            time.monotonic(),
        )
        _cache()[("signer", alg)] = signer
    return signer


def _published(now: datetime) -> _Published:
    cached = _cache().get("published")
    if not _fresh(cached, now):
        rows = published(now)
        lifetime = _max_signed_lifetime()
        # A retired key leaves JWKS once what it signed has expired.
        leaves = [row.retired_at + lifetime for row in rows if row.retired_at is not None]
        cached = _Published(
            keys={
                row.kid: (row.alg, KEY_TYPES[row.alg][0].import_key(row.public_jwk)) for row in rows
            },
            jwks=json.dumps({"keys": [row.public_jwk for row in rows]}).encode(),
            loaded_at=now,
            until=_recheck_at(now, *leaves),
            read_at=time.monotonic(),
        )
        _cache()["published"] = cached
    return cached


def jwks_document(now: datetime) -> bytes:
    """The JWKS as JSON bytes, with at least one key: the first is made on first use."""
    document = _published(now)
    if not document.keys:
        signing_key(DEFAULT_ALG, now)
        forget_cached_keys()
        document = _published(now)
    return document.jwks


def sign(claims: dict, *, alg: str, now: datetime, typ: str = "JWT") -> str:
    signer = _signer(alg, now)
    header = {"alg": signer.alg, "kid": signer.kid, "typ": typ}
    return jwt.encode(header, claims, signer.key, algorithms=[signer.alg])


def _header(token: str) -> dict:
    try:
        encoded = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, IndexError):
        raise InvalidJWT("malformed") from None
    if not isinstance(header, dict):
        raise InvalidJWT("malformed")
    return header


def token_type(token: str) -> str:
    """The header's typ, lower case ("" when absent), of a token not yet verified."""
    typ = _header(token).get("typ")
    return typ.lower() if isinstance(typ, str) else ""


def verify(token: str, now: datetime, *, typ: str | None = None) -> dict:
    """The claims of a token that one of our published keys signed, with the algorithm that
    key is for. Expiry is the caller's business (an expired id_token_hint is still a hint)."""
    header = _header(token)
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ALGORITHMS or not isinstance(kid, str):
        raise InvalidJWT("algorithm or key not accepted")
    if typ is not None and str(header.get("typ", "")).lower() != typ.lower():
        raise InvalidJWT("wrong token type")
    known = _published(now).keys.get(kid)
    if known is None and _may_reload_for_unknown_kid(now):
        # Perhaps a key that another process made first, after this one last looked. Only the
        # published keys are read again: the signer (a decrypted private key) stays.
        _cache().pop("published", None)
        known = _published(now).keys.get(kid)
    if known is None or known[0] != alg:
        raise InvalidJWT("unknown key")
    public = known[1]
    try:
        return dict(jwt.decode(token, public, algorithms=[alg]).claims)
    except (JoseError, ValueError):
        raise InvalidJWT("bad signature") from None


def half_hash(value: str) -> str:
    """at_hash: the left half of the token's SHA-256, the hash of both ES256 and RS256."""
    digest = hashlib.sha256(value.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def check_signing_key() -> None:
    """Readiness: a key signs. It exists (or is made now, as on first use) and decrypts with
    our secret."""
    try:
        sign({"purpose": "readiness"}, alg=DEFAULT_ALG, now=clock.now())
    except UndecryptableKeys as error:
        # Instances with another secret (one pod changed, one not) split: those that can
        # decrypt stay in traffic, this one leaves it, and its log says why.
        raise NotReady(
            f"this instance cannot sign: {error} (every instance needs the same secret)"
        ) from None
