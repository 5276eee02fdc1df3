"""{ISSUER}/account/phone: the new number and the current password, then the SMS PIN page
(idp.authn.factors.sms) twice: its confirmation of the current number lands in
`finish_phone_current`, that of the new number in `finish_phone_new`."""

from flask import (
    Blueprint,
    current_app,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)

from idp import audit
from idp.accounts import users
from idp.authn import transactions
from idp.authn.factors.sms.views import pin_page
from idp.authn.web import current_session, sms_error
from idp.errors import SendError, UserError
from idp.platform import clock
from idp.platform.extensions import db
from idp.platform.ratelimit import limit_posts
from idp.platform.web import client_ip, end_flow, start_flow
from idp.selfservice import phone_change
from idp.selfservice.change_start import start_change
from idp.selfservice.phone_change import Refused

bp = Blueprint("account_phone", __name__)
PAGE = "/account/phone"
DONE_NOTICE = "phone-changed"


def to_login():
    return redirect(url_for("login.form", next=PAGE), code=303)


def form_page(user, refused: Refused | None = None, *, phone: str = ""):
    return (
        render_template(
            "account/phone.html",
            current=users.masked_phone(user.phone),
            phone=phone,
            error=refused.reason if refused else None,
            until=refused.until if refused else None,
            allowed=current_app.config["SMS_ALLOWED_COUNTRIES"],
            done=DONE_NOTICE in get_flashed_messages(),
        ),
        refused.status if refused else 200,
    )


@bp.get(PAGE)
def form():
    session = current_session()
    if session is None:
        return to_login()
    return form_page(session.user)


@bp.post(PAGE)
@limit_posts(per_ip="RATELIMIT_ACCOUNT_PHONE_PER_IP")
def submit():
    session = current_session()
    if session is None:
        return to_login()
    # What she typed comes back in the form, shortened: never the password.
    typed = request.form.get("phone", "")[: phone_change.MAX_TYPED]
    return start_change(
        "phone change",
        session.user,
        lambda: phone_change.begin(
            session.user,
            request.form.get("phone", ""),
            request.form.get("password", ""),
            clock.now(),
            client_ip(),
        ),
        lambda refused: form_page(session.user, refused, phone=typed),
    )


def own_session(transaction):
    """The browser's session when it is the account's that began the change; else None. Read
    untouched: a touch would commit the step's claim before what it confirms."""
    session = current_session(touch=False)
    if session is None or session.user_id != transaction.user_id:
        return None
    return session


def not_own(transaction):
    """A confirmed step in a browser that is not (or no longer) signed in to its account:
    nothing happens, the step stays as it was."""
    db.session.rollback()
    audit.record(
        "phone.change_failed",
        now=clock.now(),
        actor="user",
        user=transaction.user,
        ip=client_ip(),
        reason="session",
    )
    db.session.commit()
    end_flow()  # this browser lets go of the step; its owner's browser keeps it
    session = current_session()
    if session is None:
        return to_login()
    return form_page(session.user, Refused("session", status=403))


def finish_phone_current(transaction):
    """The PIN to the number on record was right: on to the PIN to the new number."""
    if own_session(transaction) is None:
        return not_own(transaction)
    try:
        _, token = phone_change.confirm_current(transaction, clock.now(), client_ip())
    except SendError as error:
        db.session.rollback()  # the first step stays open: its PIN may be tried again
        current_app.logger.warning("PIN SMS to a new number not sent: %s", error)
        key, status = sms_error(error)
        return pin_page(transaction, error=key, status=status)
    db.session.commit()
    start_flow(token)
    return redirect(url_for("pin.form"), code=303)


def finish_phone_new(transaction):
    """The PIN to the new number was right: the number changes."""
    session = own_session(transaction)
    if session is None:
        return not_own(transaction)
    try:
        after_commit = phone_change.complete(transaction, clock.now(), client_ip())
    except UserError as error:
        db.session.rollback()
        current_app.logger.info("phone change not completed: %s", error)
        transactions.end(transaction, clock.now())
        db.session.commit()
        end_flow()
        return form_page(session.user, Refused("changed", status=409))
    db.session.commit()
    after_commit.run()
    end_flow()
    flash(DONE_NOTICE)
    return redirect(url_for("account_phone.form"), code=303)
