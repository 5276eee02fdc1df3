"""The SMS PIN, the default second factor (the leaflet: every login is confirmed by a PIN sent
by SMS to the phone on record): `challenges` sends and checks the PINs, `pins` makes and words
them, `views` is the PIN page."""

from collections.abc import Mapping
from datetime import datetime

from idp.accounts.models import User
from idp.authn.factors.sms import challenges
from idp.authn.factors.sms.challenges import PinResult
from idp.authn.models import AuthTransaction


class SmsPin:
    name = "sms"
    amr = ("sms",)
    step_endpoint = "pin.form"
    paid_per_challenge = True

    def usable_by(self, user: User) -> bool:
        return bool(user.phone)

    def start(self, transaction: AuthTransaction, now: datetime, ip: str | None) -> None:
        challenges.send_first_pin(transaction, now, ip)

    def verify(
        self, transaction: AuthTransaction, answer: Mapping[str, str], now: datetime
    ) -> PinResult:
        return challenges.verify(transaction, answer.get("pin", ""), now)


SMS_PIN = SmsPin()
