"""Username and password, then the PIN page; logout."""

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from idp.extensions import db
from idp.ratelimit import limit_posts
from idp.senders import SendError
from idp.services import audit, clock, login, tokens_logout
from idp.services.lockout import PinsLocked
from idp.services.login import LoginThrottled
from idp.web import (
    clear_session_cookie,
    client_ip,
    current_session,
    end_flow,
    safe_return_path,
    sms_error,
    start_flow,
)

bp = Blueprint("login", __name__)


def login_page(*, username="", return_to=None, error=None, until=None, status=200):
    return (
        render_template(
            "login/login.html", username=username, next=return_to, error=error, until=until
        ),
        status,
    )


@bp.get("/login")
def form():
    return_to = safe_return_path(request.args.get("next"))
    if current_session() is not None and return_to is None:
        return redirect(url_for("account.home"))
    return login_page(username=request.args.get("username", "")[:64], return_to=return_to)


@bp.post("/login")
@limit_posts(per_ip="RATELIMIT_LOGIN_PER_IP", per_network="RATELIMIT_LOGIN_PER_NETWORK")
def submit():
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    return_to = safe_return_path(request.form.get("next"))
    try:
        user = login.check_password(username, password, clock.now(), client_ip())
    except LoginThrottled as throttled:
        db.session.commit()
        return login_page(
            username=username[:64],
            return_to=return_to,
            error="throttled",
            until=throttled.until,
            status=429,
        )
    if user is None:
        db.session.commit()
        return login_page(username=username[:64], return_to=return_to, error="credentials")
    try:
        _, transaction_token = login.begin(user, clock.now(), client_ip(), return_to)
    except PinsLocked as locked:
        db.session.commit()  # the right password settled its attempt
        return login_page(
            username=username[:64],
            return_to=return_to,
            error="pins_locked",
            until=locked.until,
            status=429,
        )
    except SendError as error:
        db.session.rollback()
        current_app.logger.warning("PIN SMS for login not sent: %s", error)
        key, status = sms_error(error)
        return login_page(username=username[:64], return_to=return_to, error=key, status=status)
    db.session.commit()
    start_flow(transaction_token)
    return redirect(url_for("pin.form"), code=303)


@bp.get("/logout")
def confirm_logout():
    return render_template("login/logout.html", signed_in=current_session() is not None)


@bp.post("/logout")
def logout():
    session = current_session()
    if session is not None:
        deliveries = tokens_logout.end_session(session, clock.now())
        audit.record(
            "logout",
            now=clock.now(),
            actor="user",
            user=session.user,
            ip=client_ip(),
            sid=session.sid,
        )
        db.session.commit()
        tokens_logout.send(deliveries)
    end_flow()
    response = redirect(url_for("login.logged_out"), code=303)
    clear_session_cookie(response)
    return response


@bp.get("/logged-out")
def logged_out():
    return render_template("login/logged_out.html")
