"""Second factors: what confirms a login after the password.

A factor is a module under idp/authn/factors/ (its views, templates and, when it stores
something, its tables and migration) with an object that meets `Factor`; `create_app`
registers it, and IDP_SECOND_FACTORS says which registered factors are offered, in order of
preference. The login takes the first offered factor that the account can use, names it on
the transaction, and sends the browser to the factor's page; only that page can confirm the
transaction, and it hands the confirmed transaction to `idp.authn.confirmations`, which
completes the login (or whatever the transaction's purpose is). The session's `amr` says
`pwd`, then the factor's values, then `mfa`.

The SMS PIN (idp.authn.factors.sms) is the first factor and the default."""

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from flask import Flask, current_app

from idp.accounts.models import User
from idp.authn.models import AuthTransaction
from idp.errors import ConfigurationError
from idp.policy import AMR_MULTIPLE_FACTORS, AMR_PASSWORD


class Verdict(Protocol):
    """A factor's answer to one try: `ok` confirms the transaction (claimed, not committed)."""

    @property
    def ok(self) -> bool: ...


class Factor(Protocol):
    # As in IDP_SECOND_FACTORS and on the transactions that the factor confirms.
    name: str
    # What a login with it adds to the session's amr after "pwd" (RFC 8176 values).
    amr: tuple[str, ...]
    # The page (endpoint) where the person answers the challenge.
    step_endpoint: str
    # Every challenge costs money (an SMS): its sends are capped, and a login with a factor
    # that does not is counted as a challenge saved.
    paid_per_challenge: bool

    def usable_by(self, user: User) -> bool:
        """The account can confirm a login with this factor (it has what the factor needs)."""

    def start(self, transaction: AuthTransaction, now: datetime, ip: str | None) -> None:
        """Starts the challenge of a new transaction (sends the PIN). May raise PinsLocked or
        SendError; the caller rolls back."""

    def verify(self, transaction: AuthTransaction, answer: Mapping[str, str], now: datetime):
        """One try with the form the person sent; returns a Verdict. A right answer claims the
        transaction (transactions.claim), so that parallel tries confirm it once."""


def register(app: Flask, factor: Factor) -> None:
    app.extensions.setdefault("idp.factors", {})[factor.name] = factor


def registered(app: Flask) -> dict[str, Factor]:
    return app.extensions.get("idp.factors", {})


def check_offered(app: Flask) -> None:
    """IDP_SECOND_FACTORS names registered factors, at least one."""
    names = app.config["SECOND_FACTORS"]
    known = registered(app)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigurationError(
            f"IDP_SECOND_FACTORS must be a non-empty JSON list of factor names, as "
            f'["sms"]; use some of: {", ".join(known)}'
        )
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigurationError(
            f"IDP_SECOND_FACTORS names unknown factor {unknown[0]!r}: use some of: "
            f"{', '.join(known)}"
        )


def offered() -> list[Factor]:
    factors = registered(current_app)
    return [factors[name] for name in current_app.config["SECOND_FACTORS"] if name in factors]


def for_login(user: User) -> Factor:
    """The offered factor the account's login goes to: the first it can use, one that costs
    nothing per challenge (a passkey) before one that does (the SMS PIN, which then stays the
    fallback on the factor's page). The SMS PIN is the last resort of every account (each one
    has a number); without it, the first."""
    choices = offered()
    usable = [factor for factor in choices if factor.usable_by(user)]
    usable.sort(key=lambda factor: factor.paid_per_challenge)
    return (usable or choices)[0]


def of(transaction: AuthTransaction) -> Factor:
    """The factor that confirms the transaction (offered when it started)."""
    return registered(current_app)[transaction.factor]


def amr(factor: Factor, transaction: AuthTransaction | None = None) -> list[str]:
    """What the login adds to the session's amr: the factor's `amr`, or, when the factor has
    `amr_for(transaction)`, what the confirmed transaction used (a passkey's values depend on
    the passkey)."""
    amr_for = getattr(factor, "amr_for", None)
    values = amr_for(transaction) if amr_for is not None and transaction is not None else factor.amr
    return [AMR_PASSWORD, *values, AMR_MULTIPLE_FACTORS]


def amr_values_supported(app: Flask) -> list[str]:
    """Every amr value that a login with an offered factor can carry (discovery): "pwd", each
    factor's values (`amr_values` when they depend on what confirmed it, as a passkey's do,
    else `amr`), "mfa"."""
    found = registered(app)
    values = [AMR_PASSWORD]
    for name in app.config["SECOND_FACTORS"]:
        factor = found.get(name)
        for value in getattr(factor, "amr_values", None) or getattr(factor, "amr", ()):
            if value not in values:
                values.append(value)
    return [*values, AMR_MULTIPLE_FACTORS]
