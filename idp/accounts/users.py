"""Accounts of portal administrators: creation, lookup by username, state changes."""

import unicodedata
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address

import phonenumbers
from flask import current_app
from sqlalchemy import select

from idp.accounts.models import User, UserState
from idp.errors import UserError, UsernameTaken
from idp.platform.extensions import db
from idp.senders.sms_guard import number_problem

USERNAME_ALLOWED = set("abcdefghijklmnopqrstuvwxyz0123456789._-@")
MAX_USERNAME = 64
MAX_EMAIL = 254
MAX_NAME = 200
# Characters that change how text around them is laid out (bidirectional embeddings,
# overrides and isolates): in a name, they would make a mail say something else than it seems.
BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def username_key(username: str) -> str:
    return unicodedata.normalize("NFKC", username).casefold().strip()


def check_username(username: str) -> str:
    key = username_key(username)
    if not key or len(key) > MAX_USERNAME or not set(key) <= USERNAME_ALLOWED:
        raise UserError(
            f"invalid username {username!r}: use 1 to {MAX_USERNAME} of a-z 0-9 . _ - @"
        )
    return key


def check_email(email: str) -> str:
    email = email.strip()
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain
        or len(email) > MAX_EMAIL
        or any(c.isspace() or c in '<>,;"' for c in email)
        or not is_the_address_mailed_to(email)
    ):
        raise UserError(f"invalid e-mail address {email!r}")
    return email


def is_the_address_mailed_to(email: str) -> bool:
    """Whether the mail's own header parser reads exactly this address: it drops comments
    (x@evil.example(@victim.de) goes to x@evil.example) and refuses what RFC 5322 does not
    allow (a..b@example.de would fail the invitation's mail, not its command)."""
    try:
        return str(Address(addr_spec=email)) == email
    except (HeaderParseError, ValueError):  # the parser's defects are ValueErrors
        return False


def check_line(text: str | None, what: str) -> str | None:
    """One line of text such as a name, stripped; None for none. Line breaks and other
    control characters are refused: a name goes verbatim into the text of a mail."""
    text = (text or "").strip() or None
    if text is None:
        return None
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in BIDI_CONTROLS for c in text):
        raise UserError(f"{what} must not contain line breaks or other control characters")
    if len(text) > MAX_NAME:
        raise UserError(f"{what} must have at most {MAX_NAME} characters")
    return text


def full_name(user: User) -> str | None:
    """The name to greet the person by: the display name, or else the one made of its parts."""
    parts = " ".join(part for part in (user.given_name, user.family_name) if part)
    return user.name or user.formatted_name or parts or None


def language(user: User) -> str:
    """The language of the person's mails and SMS: the chosen one, or the default."""
    return user.locale or current_app.config["BABEL_DEFAULT_LOCALE"]


def phone_problem(phone: str) -> str | None:
    """Why a number cannot be the one that receives the PINs ("format": not international,
    "invalid", "country": not an allowed one, "number_type": no mobile), or None."""
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return "format"
    if not phonenumbers.is_valid_number(parsed):
        return "invalid"
    return number_problem(phone, current_app.config["SMS_ALLOWED_COUNTRIES"])


def check_phone(phone: str) -> str:
    """The number in E.164 form, or UserError. Numbers must be given internationally (+49...)."""
    problem = phone_problem(phone)
    if problem == "format":
        raise UserError(f"invalid phone number {phone!r}: give it as +<country code>...")
    if problem == "invalid":
        raise UserError(f"invalid phone number {phone!r}")
    if problem == "country":
        allowed = current_app.config["SMS_ALLOWED_COUNTRIES"]
        raise UserError(
            f"phone number {phone!r} is not in an allowed country ({', '.join(allowed)})"
        )
    if problem:
        raise UserError(f"phone number {phone!r} is not a mobile number: PINs go by SMS")
    return phonenumbers.format_number(
        phonenumbers.parse(phone, None), phonenumbers.PhoneNumberFormat.E164
    )


def find_by_username(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username_key == username_key(username)))


def get_by_username(username: str) -> User:
    user = find_by_username(username)
    if user is None:
        raise UserError(f"no user {username!r}")
    return user


def get_changeable(username: str) -> User:
    """The account for an operator's change. A deprovisioned one is refused: the ordering
    system ended it for good (its personal data is or will be erased), and enabling it, sending
    it a link or a new number would bring it back behind the ordering system's back."""
    user = get_by_username(username)
    if user.deprovisioned_at is not None:
        raise UserError(
            f"user {user.username!r} was deprovisioned by provisioning (SCIM) and cannot be "
            "changed; provision the customer again to give them an account"
        )
    return user


def create_user(username: str, *, email: str, phone: str, name: str | None, now: datetime) -> User:
    key = check_username(username)
    if find_by_username(username) is not None:
        raise UsernameTaken(f"user {username!r} exists already")
    user = User(
        username=username.strip(),
        username_key=key,
        email=check_email(email),
        phone=check_phone(phone),
        name=check_line(name, "name"),
        state=UserState.INVITED,
        created_at=now,
        updated_at=now,
    )
    db.session.add(user)
    db.session.flush()
    return user


def masked_phone(phone: str) -> str:
    """The number as shown on the PIN page: enough to recognise, not enough to harvest."""
    return f"{phone[:3]}\u00a0…\u00a0{phone[-2:]}"  # no-break spaces: shown as one unit
