"""Products under contract (entitlements such as "cloud.phone"): which exist, who has them, and
whether a relying party that serves only one product admits a person."""

from collections.abc import Iterable

from flask import current_app

from idp.accounts.models import User
from idp.errors import UserError


def known() -> list[str]:
    return list(current_app.config["ENTITLEMENTS"])


def check_known(values: Iterable[str]) -> list[str]:
    """The values without duplicates, in order; UserError for a product we do not know."""
    allowed = known()
    checked = list(dict.fromkeys(values))
    for value in checked:
        if value not in allowed:
            raise UserError(f"unknown entitlement {value!r}: use one of {', '.join(allowed)}")
    return checked


def of(user: User) -> list[str]:
    return list(user.entitlements or [])


def admits(required: str | None, user: User) -> bool:
    """Whether a relying party that serves only the product `required` (None: any) admits the
    person."""
    return required is None or required in of(user)
