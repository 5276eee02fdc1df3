"""The SMS PIN page, shared by activation and login: confirm, or ask for a new PIN."""

from flask import Blueprint, current_app, render_template, request

from idp import audit
from idp.accounts.users import masked_phone
from idp.authn import confirmations, lockout, transactions, way_back
from idp.authn.factors.sms import SMS_PIN, challenges
from idp.authn.factors.sms.challenges import PinResult, ResendRefused
from idp.authn.step_ended import ended_by_failures, ended_flow_page, step_gone
from idp.authn.web import sms_error
from idp.errors import SendError
from idp.platform import clock
from idp.platform.extensions import db
from idp.platform.ratelimit import limit_posts
from idp.platform.web import client_ip, flow_transaction_token

bp = Blueprint("pin", __name__)


def pin_page(transaction, *, error=None, notice=None, status=200):
    now = clock.now()
    return (
        render_template(
            "pin/pin.html",
            purpose=transaction.purpose,
            phone=masked_phone(challenges.recipient(transaction)),
            pin_sent=transaction.pins_sent > 0,
            unconfirmed=challenges.delivery_unconfirmed(transaction),
            resend_wait=challenges.resend_wait(transaction, now),
            error=error,
            notice=notice,
            tries_left=challenges.tries_left(transaction, now),
            all_tries=current_app.config["PIN_MAX_ATTEMPTS"],
            locked_until=lockout.pins_locked_until(transaction.user_id, now),
            cancel=way_back.cancellable(way_back.of(transaction.return_to)),
        ),
        status,
    )


# The PIN page's message and status for a try that did not complete the step.
TRY_ANSWERS = {
    PinResult.WRONG: ("wrong", 422),
    PinResult.EXPIRED: ("expired", 422),
    PinResult.MALFORMED: ("malformed", 422),
    PinResult.NOT_SENT: ("not_sent", 422),
    PinResult.LOCKED: ("locked", 429),
}
# Input that was no try at all: nothing to put on record.
NO_TRY = (PinResult.MALFORMED, PinResult.NOT_SENT)


@bp.get("/pin")
def form():
    transaction = transactions.load(flow_transaction_token(), clock.now(), factor=SMS_PIN.name)
    if transaction is None:
        return step_gone()
    return pin_page(transaction)


@bp.post("/pin")
@limit_posts(per_ip="RATELIMIT_PIN_PER_IP")
def submit():
    transaction = transactions.load(flow_transaction_token(), clock.now(), factor=SMS_PIN.name)
    if transaction is None:
        return ended_flow_page()
    if "resend" in request.form:
        return resend(transaction)
    result = SMS_PIN.verify(transaction, request.form, clock.now())
    if result is PinResult.OK:
        return confirmations.finish(transaction)
    if result not in NO_TRY:
        audit.record(
            "pin.failed",
            now=clock.now(),
            actor="user",
            user=transaction.user,
            ip=client_ip(),
            purpose=transaction.purpose,
            result=result.value,
        )
        db.session.commit()
    if result is PinResult.ENDED:
        return ended_by_failures(transaction, "attempts")
    error, status = TRY_ANSWERS[result]
    return pin_page(transaction, error=error, status=status)


def resend(transaction):
    try:
        confirmed = challenges.resend_pin(transaction, clock.now())
    except ResendRefused as refused:
        db.session.rollback()
        return pin_page(transaction, error=f"resend_{refused.reason}", status=429)
    except SendError as error:
        db.session.rollback()
        current_app.logger.warning("PIN SMS not re-sent: %s", error)
        key, status = sms_error(error)
        return pin_page(transaction, error=key, status=status)
    audit.record(
        "pin.sent",
        now=clock.now(),
        actor="user",
        user=transaction.user,
        ip=client_ip(),
        purpose=transaction.purpose,
        resend=True,
        **({} if confirmed else {"unconfirmed": True}),
    )
    db.session.commit()
    return pin_page(transaction, notice="resent")
