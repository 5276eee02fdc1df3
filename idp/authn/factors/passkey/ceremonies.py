"""WebAuthn with py_webauthn: the options a browser gets and the checks of what it answers.
The relying party is the issuer: its host is the RP ID, its origin the only one accepted.
User verification is required (the passkey is a second factor only with its PIN or
biometric), attestation is not asked for, and discoverable credentials are preferred."""

import json
from datetime import datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlsplit

import webauthn
from flask import current_app
from sqlalchemy import select, update
from webauthn.helpers import bytes_to_base64url, parse_authenticator_data, parse_backup_flags
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidJSONStructure,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from idp.accounts.models import User
from idp.authn.factors.passkey.models import Passkey, PasskeyChallenge
from idp.platform.extensions import db

# How long a browser has to answer a challenge (the WebAuthn timeout hint too).
CHALLENGE_SECONDS = 120
LOGIN = "login"
REGISTER = "register"


def rp_id() -> str:
    return urlsplit(current_app.config["ISSUER"]).hostname


def origin() -> str:
    parts = urlsplit(current_app.config["ISSUER"])
    return f"{parts.scheme}://{parts.netloc}"


def passkeys_of(user: User) -> list[Passkey]:
    return list(
        db.session.scalars(
            select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.created_at)
        )
    )


def _descriptors(passkeys: list[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    transports = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            id=passkey.credential_id,
            transports=[AuthenticatorTransport(t) for t in passkey.transports if t in transports],
        )
        for passkey in passkeys
    ]


def _new_challenge(purpose: str, now: datetime, **bound) -> PasskeyChallenge:
    challenge = PasskeyChallenge(
        purpose=purpose,
        challenge=webauthn.helpers.generate_challenge(),
        created_at=now,
        expires_at=now + timedelta(seconds=CHALLENGE_SECONDS),
        **bound,
    )
    db.session.add(challenge)
    db.session.flush()
    return challenge


def _embeddable(options_json: str) -> str:
    """JSON that may stand inside a <script type="application/json">: no "<", ">" or "&"
    that could end it (a name is part of the options)."""
    return options_json.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def registration_options(user: User, session_id: int, now: datetime) -> str:
    """The options for navigator.credentials.create(), as JSON; its challenge is bound to the
    login session."""
    challenge = _new_challenge(REGISTER, now, session_id=session_id)
    options = webauthn.generate_registration_options(
        rp_id=rp_id(),
        rp_name=current_app.config["PRODUCT_NAME"],
        user_name=user.username,
        user_id=f"idp-user-{user.id}".encode(),
        user_display_name=user.name or user.username,
        challenge=challenge.challenge,
        timeout=CHALLENGE_SECONDS * 1000,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(passkeys_of(user)),
    )
    return _embeddable(webauthn.options_to_json(options))


def authentication_options(user: User, transaction_id: int, now: datetime) -> str:
    """The options for navigator.credentials.get(): the account's own passkeys only; the
    challenge is bound to the login's transaction."""
    challenge = _new_challenge(LOGIN, now, transaction_id=transaction_id)
    options = webauthn.generate_authentication_options(
        rp_id=rp_id(),
        challenge=challenge.challenge,
        timeout=CHALLENGE_SECONDS * 1000,
        allow_credentials=_descriptors(passkeys_of(user)),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return _embeddable(webauthn.options_to_json(options))


class Refused(Exception):
    """The browser's answer was not accepted; `reason` says why (for the audit trail)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _client_challenge(credential: dict) -> bytes:
    try:
        client_data = webauthn.base64url_to_bytes(credential["response"]["clientDataJSON"])
        return webauthn.base64url_to_bytes(json.loads(client_data)["challenge"])
    except (KeyError, TypeError, ValueError) as error:
        raise Refused("malformed") from error


def _take_challenge(credential: dict, purpose: str, now: datetime, **bound) -> PasskeyChallenge:
    """The unused, unexpired challenge of this ceremony that the answer signed, marked used in
    one conditional UPDATE (a replayed answer finds it used). Not committed."""
    challenge = db.session.scalar(
        select(PasskeyChallenge).where(
            PasskeyChallenge.purpose == purpose,
            PasskeyChallenge.challenge == _client_challenge(credential),
            *[getattr(PasskeyChallenge, key) == value for key, value in bound.items()],
        )
    )
    if challenge is None:
        raise Refused("unknown_challenge")
    taken = db.session.execute(
        update(PasskeyChallenge)
        .where(
            PasskeyChallenge.id == challenge.id,
            PasskeyChallenge.used_at.is_(None),
            PasskeyChallenge.expires_at > now,
        )
        .values(used_at=now)
    ).rowcount
    if taken != 1:
        raise Refused("challenge_used_or_expired")
    return challenge


def _parse(credential_json: str) -> dict:
    try:
        credential = json.loads(credential_json)
    except ValueError as error:
        raise Refused("malformed") from error
    if not isinstance(credential, dict):
        raise Refused("malformed")
    return credential


def register(user: User, session_id: int, credential_json: str, name: str, now: datetime):
    """Checks the answer to the registration challenge and stores the new passkey (flushed,
    not committed). Raises Refused."""
    credential = _parse(credential_json)
    challenge = _take_challenge(credential, REGISTER, now, session_id=session_id)
    try:
        verified = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=challenge.challenge,
            expected_rp_id=rp_id(),
            expected_origin=origin(),
            require_user_verification=True,
        )
    except (InvalidRegistrationResponse, InvalidJSONStructure, KeyError, ValueError) as error:
        raise Refused("invalid", str(error)) from error
    if db.session.scalar(select(Passkey.id).where(Passkey.credential_id == verified.credential_id)):
        raise Refused("known_credential")
    transports = credential.get("response", {}).get("transports") or []
    passkey = Passkey(
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        backup_eligible=verified.credential_device_type == "multi_device",
        backed_up=verified.credential_backed_up,
        transports=[t for t in transports if isinstance(t, str)][:8],
        name=name,
        created_at=now,
    )
    db.session.add(passkey)
    db.session.flush()
    return passkey


class Assertion(NamedTuple):
    passkey: Passkey
    challenge: PasskeyChallenge


def authenticate(user: User, transaction_id: int, credential_json: str, now: datetime):
    """Checks the answer to the login's challenge with the account's own passkey; updates its
    counter, flags and last use (flushed, not committed). Raises Refused; a counter that did
    not go up on a correctly signed answer (a cloned authenticator) as reason "counter"."""
    credential = _parse(credential_json)
    challenge = _take_challenge(credential, LOGIN, now, transaction_id=transaction_id)
    try:
        raw_id = webauthn.base64url_to_bytes(credential["rawId"])
    except (KeyError, TypeError, ValueError) as error:
        raise Refused("malformed") from error
    passkey = db.session.scalar(
        select(Passkey).where(Passkey.credential_id == raw_id, Passkey.user_id == user.id)
    )
    if passkey is None:
        raise Refused("not_this_account")
    try:
        # The counter is checked below, once the signature is known to be right.
        verified = webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=challenge.challenge,
            expected_rp_id=rp_id(),
            expected_origin=origin(),
            credential_public_key=passkey.public_key,
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except (InvalidAuthenticationResponse, InvalidJSONStructure, KeyError, ValueError) as error:
        raise Refused("invalid", str(error)) from error
    new_count = verified.new_sign_count
    if (new_count or passkey.sign_count) and new_count <= passkey.sign_count:
        raise Refused("counter", f"{new_count} after {passkey.sign_count}")
    flags = parse_backup_flags(
        parse_authenticator_data(
            webauthn.base64url_to_bytes(credential["response"]["authenticatorData"])
        ).flags
    )
    passkey.sign_count = new_count
    passkey.backed_up = flags.credential_backed_up
    passkey.last_used_at = now
    challenge.passkey_id = passkey.id
    return Assertion(passkey, challenge)


def credential_label(passkey: Passkey) -> str:
    """A short public handle of a passkey for pages, mails and the CLI."""
    return bytes_to_base64url(passkey.credential_id)[:12]
