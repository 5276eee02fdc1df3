"""The account page, {ISSUER}/account, which is also the IdP's start page (/): who is signed
in, the pages where she changes what signs her in, the way to the portal, and the way out."""

from flask import Blueprint, current_app, get_flashed_messages, redirect, render_template, url_for

from idp.accounts import users
from idp.authn.factors import passkey as passkey_factor
from idp.authn.web import current_session

bp = Blueprint("account", __name__)

# What a finished self-service step says once on the account page (flashed by its view).
NOTICES = ("password-changed",)


@bp.get("/account")
def home():
    session = current_session()
    if session is None:
        return redirect(url_for("login.form", next=url_for("account.home")))
    return account_page(session)


@bp.get("/")
def start():
    """The same page; signed out, the login (which leads to the account page by itself)."""
    session = current_session()
    if session is None:
        return redirect(url_for("login.form"))
    return account_page(session)


def account_page(session):
    user = session.user
    return render_template(
        "account/home.html",
        user=user,
        name=users.full_name(user),
        phone=users.masked_phone(user.phone) if user.phone else None,
        passkeys=passkey_factor.allowed(),
        notices=[notice for notice in get_flashed_messages() if notice in NOTICES],
        portal_url=current_app.config["PORTAL_URL"],
    )
