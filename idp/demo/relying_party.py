"""One small relying party; `kind` decides which product it plays (e:service or cloud.phone)."""

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Flask, abort, current_app, redirect, render_template, request, session, url_for
from flask_babel import Babel, get_locale
from joserfc import jwt
from joserfc.jwk import KeySet

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# A booking needs a PIN entered at most this long ago (step-up).
STEP_UP_MAX_AGE = 60
# The portals speak the browser's language, as the identity provider's pages do; the texts
# are in its catalogue.
LANGUAGES = ("de", "en")
TRANSLATIONS = Path(__file__).resolve().parents[1] / "translations"


@dataclass(frozen=True)
class Product:
    key: str
    title: str
    scope: str


PRODUCTS = {
    "eservice": Product("eservice", "e:service", "openid profile email phone entitlements"),
    "cloudphone": Product("cloudphone", "cloud.phone", "openid profile entitlements"),
}


class EndedSessions:
    """The IdP's `sid`s that a back-channel logout ended; shared by this app's threads."""

    def __init__(self):
        self._sids: set[str] = set()
        self._lock = threading.Lock()

    def end(self, sid: str) -> None:
        with self._lock:
            self._sids.add(sid)

    def __contains__(self, sid: str) -> bool:
        with self._lock:
            return sid in self._sids


@dataclass
class Portal:
    """What one portal's views need: who it is, and its client at the identity provider."""

    kind: str
    product: Product
    issuer: str
    base_url: str
    client_id: str
    idp: object  # Authlib's registered OAuth client
    ended: EndedSessions


def create_relying_party(
    kind: str,
    *,
    issuer: str,
    base_url: str,
    client_id: str,
    client_secret: str,
    links: dict[str, str] | None = None,
) -> Flask:
    product = PRODUCTS[kind]
    app = Flask(f"idp.demo.{kind}", template_folder=str(Path(__file__).parent / "templates"))
    app.config.update(
        SECRET_KEY=secrets.token_hex(32),
        SESSION_COOKIE_NAME=f"{kind}_session",
        PRODUCT=product,
        LINKS=links or {},
    )
    Babel(
        app,
        default_locale=LANGUAGES[0],
        default_translation_directories=str(TRANSLATIONS),
        locale_selector=lambda: request.accept_languages.best_match(LANGUAGES) or LANGUAGES[0],
    )
    idp = OAuth(app).register(
        "idp",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": product.scope, "code_challenge_method": "S256"},
    )
    app.extensions["demo.portal"] = Portal(
        kind, product, issuer, base_url, client_id, idp, EndedSessions()
    )
    app.context_processor(page_context)
    app.add_url_rule("/", view_func=home)
    app.add_url_rule("/signed-out", view_func=signed_out)
    app.add_url_rule("/login", view_func=login)
    app.add_url_rule("/book/<option>", view_func=book)
    app.add_url_rule("/callback", view_func=callback)
    app.add_url_rule("/logout", view_func=logout, methods=["POST"])
    app.add_url_rule("/backchannel-logout", view_func=backchannel_logout, methods=["POST"])
    return app


def portal() -> Portal:
    return current_app.extensions["demo.portal"]


def signed_in() -> dict | None:
    claims = session.get("claims")
    if claims and claims.get("sid") in portal().ended:
        session.clear()
        return None
    return claims


def page_context():
    return {
        "product": portal().product,
        "claims": signed_in(),
        "links": current_app.config["LINKS"],
        "locale": str(get_locale()),
    }


def home():
    return render_template(
        f"{portal().kind}.html",
        booked=request.args.get("booked"),
        cancelled=request.args.get("cancelled"),
    )


def signed_out():
    """Where the identity provider's logout sends the browser back to."""
    if signed_in() is not None:
        return redirect(url_for("home"))
    return render_template(f"{portal().kind}.html", signed_out=True)


def login():
    """The entry link that the other portal offers, too: signed in already, the portal;
    else the identity provider, where a live session signs in without a page."""
    if signed_in() is not None:
        return redirect(url_for("home"))
    session["after_login"] = None
    return portal().idp.authorize_redirect(f"{portal().base_url}/callback")


def book(option: str):
    if signed_in() is None:
        return redirect(url_for("login"))
    # Booking costs money: demand a fresh password and PIN, whatever the session's age;
    # `purpose` lets the identity provider say that the login confirms a booking.
    session["after_login"] = {"book": option[:40], "asked_at": int(time.time())}
    return portal().idp.authorize_redirect(
        f"{portal().base_url}/callback", max_age=0, purpose="booking"
    )


def callback():
    idp = portal().idp
    if request.args.get("iss") not in (None, portal().issuer):
        abort(400, "authorization response from another issuer")
    try:
        token = idp.authorize_access_token()
    except OAuthError as error:
        pending = session.pop("after_login", None)
        if error.error == "access_denied":
            # The person pressed "Abbrechen" at the identity provider: back where she was.
            cancelled = "booking" if pending and pending.get("book") else "login"
            return redirect(url_for("home", cancelled=cancelled))
        return render_template("rp_error.html", error=error.error), 400
    # The ID token proves the login; names and contracts come from userinfo.
    claims = {**idp.userinfo(token=token), **token["userinfo"]}
    session["claims"] = claims
    session["id_token"] = token["id_token"]
    pending = session.pop("after_login", None)
    if pending and pending.get("book"):
        if claims.get("auth_time", 0) < pending["asked_at"] - 1:
            return render_template("rp_error.html", error="step_up_not_done"), 403
        return redirect(url_for("home", booked=pending["book"]))
    return redirect(url_for("home"))


def logout():
    id_token = session.get("id_token")
    session.clear()
    metadata = portal().idp.load_server_metadata()
    query = {
        "post_logout_redirect_uri": f"{portal().base_url}/signed-out",
        "client_id": portal().client_id,
    }
    if id_token:
        query["id_token_hint"] = id_token
    return redirect(f"{metadata['end_session_endpoint']}?{urlencode(query)}", code=303)


def backchannel_logout():
    idp = portal().idp
    metadata = idp.load_server_metadata()
    expected = jwt.JWTClaimsRegistry(
        leeway=30,
        iss={"essential": True, "value": metadata["issuer"]},
        aud={"essential": True, "value": portal().client_id},
        iat={"essential": True},
    )
    try:
        token = jwt.decode(
            request.form.get("logout_token", ""),
            KeySet.import_key_set(idp.fetch_jwk_set()),
            algorithms=["ES256", "RS256"],
        )
        expected.validate(token.claims)
    except Exception:  # any defect in the token means: not a logout we accept
        return {"error": "invalid_request"}, 400
    claims = token.claims
    if BACKCHANNEL_EVENT not in (claims.get("events") or {}) or "nonce" in claims:
        return {"error": "invalid_request"}, 400
    if claims.get("sid"):
        portal().ended.end(claims["sid"])
    return "", 200
