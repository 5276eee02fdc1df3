"""What the second-factor steps (the PIN page, the passkey page) show once their step is over:
expired, done, or ended by failed confirmations. One place, so that both steps lead out the
same way and keep the way back that the login had."""

from typing import NamedTuple

from flask import current_app, redirect, render_template, url_for

from idp.authn import lockout, transactions, way_back
from idp.authn.models import AuthTransaction
from idp.authn.web import current_session
from idp.platform import clock
from idp.platform.web import end_flow, flow_transaction_token


class WayOut(NamedTuple):
    url: str
    name: str


def way_out(return_to: str | None) -> WayOut:
    """Where a person goes who cannot sign in before a lock ends: the page of the relying party
    that the login was for, else the portal."""
    back = way_back.of(return_to)
    waiting = back.waiting if back else None
    if waiting is not None and waiting.landing_uri:
        return WayOut(waiting.landing_uri, waiting.client_name)
    return WayOut(current_app.config["PORTAL_URL"], current_app.config["PRODUCT_NAME"])


def ended_page(purpose: str | None, reason: str, *, return_to: str | None, locked_until=None):
    """The step ended; its "sign in" link keeps the way back that the login had. While failed
    confirmations lock the account, a sign-in can only fail: then the page says from when, and
    leads out instead."""
    return (
        render_template(
            "pin/ended.html",
            purpose=purpose,
            reason=reason,
            locked_until=locked_until,
            return_to=return_to,
            way_out=way_out(return_to) if locked_until else None,
        ),
        410,
    )


def ended_flow_page():
    """The browser's step is over (expired, or done): its way back stays."""
    return ended_page(
        None, "expired", return_to=transactions.return_to_of(flow_transaction_token())
    )


def step_gone():
    """A step's page shown again after its transaction ended: the back button after a login
    that went on to a relying party goes back there. A signed-in browser whose step ended here
    (it let go of the flow: a login, or a change on the account pages, completed) goes on to
    the account page, which shows what holds now: a "please start again" would tell her that a
    finished change failed. Anything else is told the step is over."""
    back = way_back.back_to_completed()
    if back:
        return redirect(back)
    if flow_transaction_token() is None and current_session() is not None:
        return redirect(url_for("account.home"))
    return ended_flow_page()


def ended_by_failures(transaction: AuthTransaction, reason: str):
    """Failed confirmations ended the step (or lock the account): the flow ends, and the page
    says until when the account is locked, if it is."""
    end_flow()
    return ended_page(
        transaction.purpose,
        reason,
        return_to=transaction.return_to,
        locked_until=lockout.pins_locked_until(transaction.user_id, clock.now()),
    )
