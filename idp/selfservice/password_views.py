"""{ISSUER}/account/password: the current password, the new one twice, then the SMS PIN page
(idp.authn.factors.sms), whose confirmation lands in `finish_password_change`."""

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from idp.authn.step_ended import ended_page
from idp.authn.web import current_session, set_session_cookie
from idp.platform import clock
from idp.platform.extensions import db
from idp.platform.ratelimit import limit_posts
from idp.platform.web import client_ip, end_flow
from idp.selfservice import password_change
from idp.selfservice.change_start import start_change
from idp.selfservice.password_change import Refused

bp = Blueprint("account_password", __name__)
PAGE = "/account/password"
DONE_NOTICE = "password-changed"


def to_login():
    return redirect(url_for("login.form", next=PAGE), code=303)


def form_page(session, refused: Refused | None = None):
    return (
        render_template(
            "account/password.html",
            user=session.user,
            error=refused.reason if refused else None,
            until=refused.until if refused else None,
            min_length=current_app.config["PASSWORD_MIN_LENGTH"],
        ),
        refused.status if refused else 200,
    )


@bp.get(PAGE)
def form():
    session = current_session()
    if session is None:
        return to_login()
    return form_page(session)


@bp.post(PAGE)
@limit_posts(per_ip="RATELIMIT_ACCOUNT_PASSWORD_PER_IP")
def submit():
    session = current_session()
    if session is None:
        return to_login()
    return start_change(
        "password change",
        session.user,
        lambda: password_change.begin(
            session.user,
            request.form.get("current_password", ""),
            request.form.get("password", ""),
            request.form.get("password_confirm", ""),
            clock.now(),
            client_ip(),
        ),
        lambda refused: form_page(session, refused),
    )


def finish_password_change(transaction):
    """The PIN confirmed the new password (idp.authn.confirmations). Only in a browser that is
    signed in to the same account: the step is bound to the browser by its flow cookie, and a
    session of another account (or none, once it ended) must not complete it."""
    session = current_session(touch=False)
    now = clock.now()
    if session is None or session.user_id != transaction.user_id:
        # The claim is kept, so the step ends here for good.
        db.session.commit()
        end_flow()
        return ended_page(transaction.purpose, "expired", return_to=None)
    token, after_commit = password_change.complete(transaction, session, now, client_ip())
    db.session.commit()
    after_commit.run()
    end_flow()
    flash(DONE_NOTICE)
    response = redirect(url_for("account.home"), code=303)
    set_session_cookie(response, token)
    return response
