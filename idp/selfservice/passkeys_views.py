"""{ISSUER}/account/passkeys: her passkeys (name, created, last used, synced or bound to a
device), a new one, and removing one. Adding and removing need a fresh login with password and
SMS PIN (PASSKEY_FRESH_LOGIN_SECONDS); otherwise she goes through a new login first. Only
when IDP_SECOND_FACTORS allows passkeys."""

from datetime import timedelta

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from idp.authn.factors import passkey as passkey_factor
from idp.authn.factors.passkey import ceremonies, manage
from idp.authn.web import current_session
from idp.platform import clock
from idp.platform.extensions import db
from idp.platform.web import client_ip

bp = Blueprint("passkeys", __name__)
PAGE = "/account/passkeys"


def fresh(session) -> bool:
    """Signed in with password and SMS PIN within the last minutes."""
    window = timedelta(seconds=current_app.config["PASSKEY_FRESH_LOGIN_SECONDS"])
    return "sms" in (session.amr or []) and session.auth_time >= clock.now() - window


def step_up(session):
    return redirect(url_for("login.form", next=PAGE, username=session.user.username), code=303)


def page(session, *, error=None, notice=None, status=200):
    is_fresh = fresh(session)
    options = None
    if is_fresh:
        options = ceremonies.registration_options(session.user, session.id, clock.now())
        db.session.commit()
    return (
        render_template(
            "account/passkeys.html",
            passkeys=ceremonies.passkeys_of(session.user),
            fresh=is_fresh,
            options=options,
            error=error,
            notice=notice,
        ),
        status,
    )


@bp.before_request
def only_when_allowed():
    if not passkey_factor.allowed():
        abort(404)


@bp.get(PAGE)
def form():
    session = current_session()
    if session is None:
        return redirect(url_for("login.form", next=PAGE))
    return page(session, notice=request.args.get("done"))


@bp.post(PAGE)
def submit():
    session = current_session()
    if session is None:
        return redirect(url_for("login.form", next=PAGE), code=303)
    if not fresh(session):
        return step_up(session)
    user, now = session.user, clock.now()
    if "remove" in request.form:
        try:
            found = manage.find(user, int(request.form["remove"]))
        except ValueError:
            found = None
        if found is None:
            return page(session, error="unknown", status=404)
        after_commit = manage.remove(user, [found], now, actor="user", ip=client_ip())
        db.session.commit()
        after_commit.run()
        return redirect(url_for("passkeys.form", done="removed"), code=303)
    if "register" in request.form:
        credential = request.form.get("credential", "")
        if not credential:
            return page(session, error="no_answer", status=422)
        name = manage.clean_name(request.form.get("name"), default="Passkey")
        try:
            _, after_commit = manage.add(user, session.id, credential, name, now, client_ip())
        except ceremonies.Refused as refused:
            db.session.rollback()
            current_app.logger.info("passkey registration refused: %s", refused)
            return page(session, error="refused", status=422)
        db.session.commit()
        after_commit.run()
        return redirect(url_for("passkeys.form", done="added"), code=303)
    return page(session, status=400)
