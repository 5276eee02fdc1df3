"""What a confirmed second factor completes, by the transaction's purpose: a login, a step-up,
an activation, and whatever flow comes next (a password change, a new phone number). A flow
registers the function that finishes its purpose; the factor's page calls `finish` with the
transaction it confirmed (claimed, not yet committed), and answers with what that returns."""

from collections.abc import Callable

from flask import Flask, current_app
from werkzeug.wrappers import Response

from idp.authn.models import AuthTransaction

Finish = Callable[[AuthTransaction], Response | tuple]


def register(app: Flask, purpose: str, finish: Finish) -> None:
    app.extensions.setdefault("idp.confirmations", {})[purpose] = finish


def finish(transaction: AuthTransaction) -> Response | tuple:
    return current_app.extensions["idp.confirmations"][transaction.purpose](transaction)
