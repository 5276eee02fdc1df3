"""Passkeys (WebAuthn), the phishing-resistant alternative to the SMS PIN: allowed when
IDP_SECOND_FACTORS names "passkey"; an account that registered one confirms its login with it
instead of the PIN, and may still ask for the PIN on the same page. `ceremonies` holds the
WebAuthn checks, `views` the login step."""

from collections.abc import Mapping
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from idp.accounts.models import User
from idp.authn import transactions
from idp.authn.factors.passkey import ceremonies
from idp.authn.factors.passkey.models import Passkey, PasskeyChallenge
from idp.authn.models import AuthTransaction
from idp.platform.extensions import db

NAME = "passkey"
# RFC 8176: hwk, a key bound to hardware; swk, a key in software (a synced passkey).
AMR_HARDWARE_KEY = "hwk"
AMR_SOFTWARE_KEY = "swk"


class PasskeyVerdict:
    def __init__(self, ok: bool, reason: str | None = None, passkey: Passkey | None = None):
        self.ok = ok
        self.reason = reason
        self.passkey = passkey


def allowed() -> bool:
    return NAME in current_app.config["SECOND_FACTORS"]


class PasskeyFactor:
    name = NAME
    amr = (AMR_HARDWARE_KEY,)
    # What amr_for may say instead (discovery lists both).
    amr_values = (AMR_HARDWARE_KEY, AMR_SOFTWARE_KEY)
    step_endpoint = "passkey.form"
    paid_per_challenge = False

    def usable_by(self, user: User) -> bool:
        return (
            db.session.scalar(select(Passkey.id).where(Passkey.user_id == user.id).limit(1))
            is not None
        )

    def start(self, transaction: AuthTransaction, now: datetime, ip: str | None) -> None:
        """Nothing to send: the step's page hands its browser a fresh challenge."""

    def verify(
        self, transaction: AuthTransaction, answer: Mapping[str, str], now: datetime
    ) -> PasskeyVerdict:
        try:
            assertion = ceremonies.authenticate(
                transaction.user, transaction.id, answer.get("credential", ""), now
            )
        except ceremonies.Refused as refused:
            return PasskeyVerdict(False, refused.reason)
        if not transactions.claim(transaction, now):
            return PasskeyVerdict(False, "claimed")
        return PasskeyVerdict(True, passkey=assertion.passkey)

    def amr_for(self, transaction: AuthTransaction) -> tuple[str, ...]:
        """hwk for a device-bound passkey, swk for a synced one (its backup flags)."""
        passkey = db.session.scalar(
            select(Passkey)
            .join(PasskeyChallenge, PasskeyChallenge.passkey_id == Passkey.id)
            .where(PasskeyChallenge.transaction_id == transaction.id)
        )
        if passkey is not None and passkey.synced:
            return (AMR_SOFTWARE_KEY,)
        return self.amr


PASSKEY = PasskeyFactor()
