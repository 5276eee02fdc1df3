"""The personal set-password link from the activation (or reset) mail."""

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from idp import audit
from idp.accounts import invitations
from idp.accounts.models import InvitationPurpose
from idp.accounts.passwords import PolicyViolation
from idp.activation import service as activation
from idp.authn import way_back
from idp.authn.web import sms_error
from idp.errors import LinkProblem, PinsLocked, SendError
from idp.platform import clock
from idp.platform.extensions import db
from idp.platform.ratelimit import limit_posts
from idp.platform.web import client_ip, end_flow, start_flow

bp = Blueprint("activation", __name__)

LINK_PROBLEM_STATUS = {"invalid": 400, "expired": 410, "used": 410}


def link_problem_page(problem: LinkProblem):
    return (
        render_template("activation/link_problem.html", reason=problem.reason),
        LINK_PROBLEM_STATUS[problem.reason],
    )


def form_page(invitation, token, error=None, status=200, until=None):
    return (
        render_template(
            "activation/set_password.html",
            user=invitation.user,
            purpose=invitation.purpose,
            token=token,
            error=error,
            until=until,
            min_length=current_app.config["PASSWORD_MIN_LENGTH"],
        ),
        status,
    )


@bp.get("/activate/<token>")
def set_password_form(token):
    # GET never consumes the link: mail scanners and link previews open it too.
    try:
        invitation = invitations.resolve(token, clock.now())
    except LinkProblem as problem:
        return link_problem_page(problem)
    invitations.mark_opened(invitation, clock.now())
    db.session.commit()
    return form_page(invitation, token)


@bp.post("/activate/<token>")
@limit_posts(per_ip="RATELIMIT_ACTIVATION_PER_IP")
def set_password(token):
    try:
        invitation = invitations.resolve(token, clock.now())
    except LinkProblem as problem:
        return link_problem_page(problem)
    try:
        result = activation.begin(
            invitation,
            request.form.get("password", ""),
            request.form.get("password_confirm", ""),
            clock.now(),
            client_ip(),
        )
    except PinsLocked as locked:
        db.session.rollback()
        return form_page(invitation, token, error="pins_locked", status=429, until=locked.until)
    except SendError as error:
        db.session.rollback()
        current_app.logger.warning("PIN SMS for activation not sent: %s", error)
        audit.record(
            "pin.send_failed", now=clock.now(), actor="user", user=invitation.user, ip=client_ip()
        )
        db.session.commit()
        key, status = sms_error(error)
        return form_page(invitation, token, error=key, status=status)
    if isinstance(result, PolicyViolation):
        db.session.rollback()
        return form_page(invitation, token, error=result.message, status=422)
    _, transaction_token = result
    db.session.commit()
    start_flow(transaction_token)
    return redirect(url_for("pin.form"), code=303)


def finish_activation(transaction):
    """The PIN confirmed the new password (idp.authn.confirmations)."""
    reset = transaction.invitation is not None and (
        transaction.invitation.purpose == InvitationPurpose.RESET
    )
    try:
        completed = activation.complete(transaction, clock.now(), client_ip())
    except LinkProblem as problem:
        db.session.rollback()
        end_flow()
        return link_problem_page(problem)
    db.session.commit()
    completed.after_commit.run()
    end_flow()
    return render_template(
        "activation/done.html",
        user=completed.user,
        reset=reset,
        # She came from a relying party that still waits (the login page's "Forgot
        # password?"): the way on is back to it, through a login with the new password.
        waiting=way_back.waiting(),
        portal_url=current_app.config["PORTAL_URL"],
    )
