"""The IdP's own start page: who is signed in, the way to the portal, and the way out."""

from flask import Blueprint, current_app, redirect, render_template, url_for

from idp.authn.web import current_session

bp = Blueprint("account", __name__)


@bp.get("/")
def home():
    session = current_session()
    if session is None:
        return redirect(url_for("login.form"))
    return render_template(
        "account/home.html",
        user=session.user,
        session=session,
        portal_url=current_app.config["PORTAL_URL"],
    )
