"""The first step of an account change that an SMS PIN confirms (a new password, a new
number), as its page answers it: what is kept, what is rolled back, where the browser goes."""

from collections.abc import Callable

from flask import current_app, redirect, url_for

from idp import audit
from idp.accounts.models import User
from idp.authn.web import sms_error
from idp.errors import PinsLocked, SendError
from idp.platform import clock
from idp.platform.extensions import db
from idp.platform.web import client_ip, start_flow
from idp.selfservice.current_password import Refused


def start_change(what: str, user: User, begin: Callable, form_page: Callable[[Refused], object]):
    """Runs `begin()` (it checks the current password and sends the PIN, returning the
    transaction and its token, or Refused) and sends the browser on to the PIN page; else
    answers `form_page(refused)`. `what` names the change in the log."""
    try:
        result = begin()
    except PinsLocked as locked:
        db.session.commit()  # the right password settled its attempt
        return form_page(Refused("pins_locked", status=429, until=locked.until))
    except SendError as error:
        db.session.rollback()
        current_app.logger.warning("PIN SMS for a %s not sent: %s", what, error)
        audit.record("pin.send_failed", now=clock.now(), actor="user", user=user, ip=client_ip())
        db.session.commit()
        key, status = sms_error(error)
        return form_page(Refused(key, status=status))
    if isinstance(result, Refused):
        db.session.commit()  # a wrong current password stays counted, and on record
        return form_page(result)
    _, transaction_token = result
    db.session.commit()
    start_flow(transaction_token)
    return redirect(url_for("pin.form"), code=303)
