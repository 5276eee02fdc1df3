"""The sessions page, /account/sessions: where the account is signed in, ending one session or
all of them (this one included), and the account's recent sign-ins and security events."""

from flask import (
    Blueprint,
    flash,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)

from idp.authn.web import clear_session_cookie, current_session
from idp.platform import clock
from idp.platform.extensions import db
from idp.platform.ratelimit import limit_posts
from idp.platform.web import client_ip, end_flow
from idp.selfservice import activity

bp = Blueprint("account_sessions", __name__)
bp.add_app_template_filter(activity.local_datetime, "local_datetime")

ENDED_NOTICE = "session-ended"


def sessions_page(session, *, error: str | None = None, status: int = 200):
    now = clock.now()
    entries, not_listed = activity.live_sessions(session, now)
    notices = get_flashed_messages()
    return (
        render_template(
            "account/sessions.html",
            user=session.user,
            sessions=entries,
            not_listed=not_listed,
            events=activity.recent_events(session.user),
            error=error,
            ended=ENDED_NOTICE in notices,
        ),
        status,
    )


def to_login():
    return redirect(url_for("login.form", next=url_for("account_sessions.page")), code=303)


@bp.get("/account/sessions")
def page():
    session = current_session()
    if session is None:
        return to_login()
    return sessions_page(session)


@bp.post("/account/sessions")
@limit_posts(per_ip="RATELIMIT_ACCOUNT_SESSIONS_PER_IP")
def submit():
    session = current_session()
    if session is None:
        return to_login()
    end_all = request.form.get("end-all")
    handle = request.form.get("end")
    wants_all = end_all is not None
    # Neither, both at once, or an end-all that is no button's (a button without a value
    # sends an empty one).
    if wants_all == (handle is not None) or end_all not in (None, "", "1"):
        return sessions_page(session, error="request", status=400)
    now = clock.now()
    if wants_all:
        after_commit = activity.end_all(session.user, now, ip=client_ip())
        ended_here = True
    else:
        if not activity.is_handle(handle):
            return sessions_page(session, error="request", status=400)
        target = activity.find_own(session.user, handle, now)
        ended_here = target is not None and target.id == session.id
        after_commit = None
        if target is not None:
            after_commit = activity.end_one(target, now, ip=client_ip(), current=ended_here)
        if after_commit is None:  # not (or no longer) one of her live sessions
            db.session.rollback()
            return sessions_page(session, error="gone", status=404)
    db.session.commit()
    after_commit.run()
    if ended_here:
        return signed_out()
    flash(ENDED_NOTICE)
    return redirect(url_for("account_sessions.page"), code=303)


def signed_out():
    """This browser's session ended too: as after a logout."""
    end_flow(keep_authorizations=False)
    response = redirect(url_for("login.logged_out"), code=303)
    clear_session_cookie(response)
    return response
