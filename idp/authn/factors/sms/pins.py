"""SMS PINs: six digits from `secrets`, stored as a keyed digest, sent as a GSM-7 text whose last
line lets the browser fill the PIN in (WebOTP)."""

import re
import secrets
import unicodedata
from urllib.parse import urlsplit

from flask import current_app, has_request_context, render_template
from flask_babel import force_locale, get_locale

from idp.accounts import users
from idp.accounts.models import User
from idp.platform.secrets import keyed_digest
from idp.policy import PIN_LENGTH

# What people put between the digits: spaces (as when copying "123 456") and hyphens.
PIN_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015]")
PIN_DIGITS = re.compile(rf"[0-9]{{{PIN_LENGTH}}}")
# Longer input is no PIN, however many separators it holds.
PIN_MAX_TYPED = 32

# The GSM 03.38 basic character set: a text made only of these is one 160-character SMS.
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def new_pin() -> str:
    return f"{secrets.randbelow(10**PIN_LENGTH):0{PIN_LENGTH}d}"


def normalize(typed: str) -> str | None:
    """The PIN in what was typed, or None when it is not one: "123 456", " 123456 " and
    "123-456" are the PIN 123456 (digits of other keyboards too, by NFKC); letters or a wrong
    number of digits are none, and the caller refuses them without counting a try."""
    if len(typed) > PIN_MAX_TYPED:
        return None
    digits = PIN_SEPARATORS.sub("", unicodedata.normalize("NFKC", typed))
    return digits if PIN_DIGITS.fullmatch(digits) else None


def pin_digest(challenge_scope: str, pin: str) -> str:
    return keyed_digest("idp.pin", f"{challenge_scope}:{pin}")


def sms_language(user: User) -> str:
    """A PIN asked for on a page is read with that page in front of the person: the SMS speaks
    the page's language (her switch, the relying party's ui_locales, her browser). Outside a
    request (an operator's command) the account's language."""
    if has_request_context():
        return str(get_locale())
    return users.language(user)


def sms_text(user: User, pin: str, purpose: str) -> str:
    config = current_app.config
    with force_locale(sms_language(user)):
        body = render_template(
            "sms/pin.txt",
            pin=pin,
            purpose=purpose,
            product=config["PRODUCT_NAME"],
            minutes=max(1, config["PIN_LIFETIME"] // 60),
        ).strip()
    host = urlsplit(config["ISSUER"]).hostname
    return f"{body}\n\n@{host} #{pin}"


def is_gsm7(text: str) -> bool:
    return set(text) <= GSM7_BASIC
