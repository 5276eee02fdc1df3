"""The forgotten password, /password/forgot: one username field, and one answer for every
name. The answer goes out before anything is looked up; the lookup, the link and the mail
follow in the background (idp.accounts.password_reset), so that neither the page, its status,
nor the time it takes tells whether the name is an account, or which state it is in. The link
leads to the set-password page of the activation, whose SMS PIN confirms the new password."""

from flask import Blueprint, render_template, request

from idp.accounts import password_reset
from idp.platform import background, clock
from idp.platform.ratelimit import limit_posts
from idp.platform.web import client_ip

bp = Blueprint("password_forgot", __name__)

# Longer than any username, short enough that no request makes the background hold much.
MAX_INPUT = 256


@bp.get("/password/forgot")
def form():
    return render_template("activation/forgot.html")


@bp.post("/password/forgot")
@limit_posts(
    per_ip="RATELIMIT_PASSWORD_FORGOT_PER_IP", per_network="RATELIMIT_PASSWORD_FORGOT_PER_NETWORK"
)
def submit():
    username = request.form.get("username", "")[:MAX_INPUT]
    # Nothing of what was typed comes back: the page is the same, byte for byte, for all. It is
    # rendered before the work is queued, so that the lookup cannot slow its rendering down.
    page = render_template("activation/forgot_sent.html")
    background.after_response(password_reset.request_link, username, clock.now(), client_ip())
    return page
