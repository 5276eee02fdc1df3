"""Username and password, then the PIN page; logout."""

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from idp.accounts import users
from idp.authn import factors, lockout, login, way_back
from idp.authn.models import TransactionPurpose
from idp.authn.way_back import WayBack
from idp.authn.web import clear_session_cookie, current_session, set_session_cookie, sms_error
from idp.errors import LoginThrottled, PinsLocked, SendError
from idp.platform import clock
from idp.platform.extensions import db
from idp.platform.ratelimit import limit_posts
from idp.platform.web import client_ip, end_flow, start_flow, user_agent

bp = Blueprint("login", __name__)


@bp.app_template_test("hard_lock")
def hard_lock(until) -> bool:
    """`until is hard_lock`: a lock that only support lifts, which pages never show as a time."""
    return lockout.is_hard_lock(until)


def login_page(*, username="", back: WayBack | None = None, error=None, until=None, status=200):
    step_up_user = way_back.step_up_user(back)
    step_up = None
    if step_up_user is not None:
        step_up = {"username": step_up_user.username, "purpose": back.waiting.purpose}
    return_to = back.path if back else None
    return (
        render_template(
            "login/login.html",
            username=step_up["username"] if step_up else username,
            next=return_to,
            step_up=step_up,
            cancel=way_back.cancellable(back),
            # Without a way back: the request that waits, as a choice (see way_back.waiting).
            waiting=None if back else way_back.waiting(),
            error=error,
            until=until,
            # The language switch on a page that answers a POST: the same form, by GET, with
            # the username typed (never the password).
            language_return=url_for("login.form", next=return_to, username=username or None),
        ),
        status,
    )


@bp.get("/login")
def form():
    back = way_back.of(request.args.get("next"))
    if current_session() is not None:
        if back is None:
            return redirect(url_for("account.home"))
        if back.waiting is not None and not back.waiting.is_pending:
            # The back button after the login: the resume address knows the way on.
            return redirect(back.path)
    return login_page(username=request.args.get("username", "")[:64], back=back)


@bp.post("/login")
@limit_posts(per_ip="RATELIMIT_LOGIN_PER_IP", per_network="RATELIMIT_LOGIN_PER_NETWORK")
def submit():
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    back = way_back.of(request.form.get("next"))
    step_up_user = way_back.step_up_user(back)
    if step_up_user is not None and users.username_key(username) != step_up_user.username_key:
        # Refused before any password is checked: it tells nothing about the other account.
        return login_page(back=back, error="step_up_account", status=422)
    try:
        user = login.check_password(username, password, clock.now(), client_ip())
    except LoginThrottled as throttled:
        db.session.commit()
        return login_page(
            username=username[:64],
            back=back,
            error="throttled",
            until=throttled.until,
            status=429,
        )
    if user is None:
        db.session.commit()
        return login_page(username=username[:64], back=back, error="credentials")
    purpose = TransactionPurpose.STEP_UP if step_up_user is not None else TransactionPurpose.LOGIN
    try:
        transaction, transaction_token = login.begin(
            user, clock.now(), client_ip(), back.path if back else None, purpose
        )
    except PinsLocked as locked:
        db.session.commit()  # the right password settled its attempt
        return login_page(
            username=username[:64],
            back=back,
            error="pins_locked",
            until=locked.until,
            status=429,
        )
    except SendError as error:
        db.session.rollback()
        # The password was right: its attempt settles as such, or SMS refused for a day would
        # count every right password toward the account's lock (and its hard limit).
        lockout.settle_password_attempt(user, True, clock.now())
        db.session.commit()
        current_app.logger.warning("PIN SMS for login not sent: %s", error)
        key, status = sms_error(error)
        return login_page(username=username[:64], back=back, error=key, status=status)
    db.session.commit()
    start_flow(transaction_token)
    return redirect(url_for(factors.of(transaction).step_endpoint), code=303)


@bp.get("/logout")
def confirm_logout():
    return render_template("login/logout.html", signed_in=current_session() is not None)


@bp.post("/logout")
def logout():
    session = current_session()
    if session is not None:
        after_commit = login.log_out(session, clock.now(), actor="user", ip=client_ip())
        db.session.commit()
        after_commit.run()
    end_flow(keep_authorizations=False)
    response = redirect(url_for("login.logged_out"), code=303)
    clear_session_cookie(response)
    return response


@bp.get("/logged-out")
def logged_out():
    return render_template("login/logged_out.html")


def finish_login(transaction):
    """The second factor confirmed the login (idp.authn.confirmations): the session, its
    cookie, and on to where the login was to go."""
    _, session_token, after_commit = login.complete(
        transaction, clock.now(), client_ip(), user_agent(), current_session(touch=False)
    )
    return_to = transaction.return_to or url_for("account.home")
    db.session.commit()
    after_commit.run()
    end_flow()
    response = redirect(return_to, code=303)
    set_session_cookie(response, session_token)
    return response
