"""The IdP's own start page: who is signed in, and the way out."""

from flask import Blueprint, redirect, render_template, url_for

from idp.web import current_session

bp = Blueprint("account", __name__)


@bp.get("/")
def home():
    session = current_session()
    if session is None:
        return redirect(url_for("login.form"))
    return render_template("account/home.html", user=session.user, session=session)
