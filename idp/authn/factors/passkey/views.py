"""The login's passkey step: the browser signs the challenge with one of the account's
passkeys (idp/static/passkey.js), or asks for the SMS PIN instead, on the same page."""

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from idp import audit
from idp.authn import confirmations, lockout, transactions, way_back
from idp.authn.factors.passkey import PASSKEY, allowed, ceremonies
from idp.authn.factors.sms import SMS_PIN
from idp.authn.step_ended import ended_by_failures, ended_flow_page, step_gone
from idp.authn.web import sms_error
from idp.errors import PinsLocked, SendError
from idp.platform import clock
from idp.platform.extensions import db
from idp.platform.ratelimit import limit_posts
from idp.platform.web import client_ip, flow_transaction_token

bp = Blueprint("passkey", __name__)


@bp.before_request
def only_when_allowed():
    if not allowed():
        abort(404)


def step_page(transaction, *, error=None, status=200):
    options = ceremonies.authentication_options(transaction.user, transaction.id, clock.now())
    db.session.commit()
    return (
        render_template(
            "passkey/login.html",
            purpose=transaction.purpose,
            options=options,
            error=error,
            cancel=way_back.cancellable(way_back.of(transaction.return_to)),
        ),
        status,
    )


def pending():
    return transactions.load(flow_transaction_token(), clock.now(), factor=PASSKEY.name)


@bp.get("/login/passkey")
def form():
    transaction = pending()
    if transaction is None:
        return step_gone()
    return step_page(transaction)


@bp.post("/login/passkey")
@limit_posts(per_ip="RATELIMIT_PIN_PER_IP")
def submit():
    transaction = pending()
    if transaction is None:
        return ended_flow_page()
    if "sms" in request.form:
        return switch_to_sms(transaction)
    if not request.form.get("credential"):
        # No answer: a browser without WebAuthn, or the person cancelled the dialog.
        return step_page(transaction, error="no_answer", status=422)
    now = clock.now()
    # A passkey answer is a try at the second factor like a PIN: counted against the account's
    # PIN lock before it is checked, so that answers from many logins cannot outrun the lock.
    try:
        lockout.claim_pin_attempt(transaction.user_id, now)
    except PinsLocked:
        db.session.rollback()
        return ended_by_failures(transaction, "confirmations")
    db.session.commit()
    verdict = PASSKEY.verify(transaction, request.form, now)
    if verdict.ok:
        return confirmations.finish(transaction)  # the login resets the account's failures
    db.session.rollback()
    audit.record(
        "passkey.refused",
        now=now,
        actor="user",
        user=transaction.user,
        ip=client_ip(),
        purpose=transaction.purpose,
        reason=verdict.reason,
    )
    db.session.commit()
    if lockout.pins_locked_until(transaction.user_id, now):
        return ended_by_failures(transaction, "confirmations")
    return step_page(transaction, error="refused", status=422)


def switch_to_sms(transaction):
    """She asked for the PIN: the transaction goes to the SMS factor, and the PIN is sent (or
    held back by the cooldown of the account's last one, as at any login)."""
    now = clock.now()
    transaction.factor = SMS_PIN.name
    try:
        SMS_PIN.start(transaction, now, client_ip())
    except SendError as error:
        db.session.rollback()
        current_app.logger.warning("PIN SMS after the passkey step not sent: %s", error)
        key, status = sms_error(error)
        return step_page(transaction, error=key, status=status)
    db.session.commit()
    return redirect(url_for(SMS_PIN.step_endpoint), code=303)
