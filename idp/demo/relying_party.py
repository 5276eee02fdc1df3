"""One small relying party; `kind` decides which product it plays (e:service or cloud.phone)."""

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from authlib.integrations.flask_client import OAuth, OAuthError
from flask import Flask, abort, redirect, render_template, request, session, url_for
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
    oauth = OAuth(app)
    idp = oauth.register(
        "idp",
        client_id=client_id,
        client_secret=client_secret,
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": product.scope, "code_challenge_method": "S256"},
    )
    ended = EndedSessions()

    def signed_in() -> dict | None:
        claims = session.get("claims")
        if claims and claims.get("sid") in ended:
            session.clear()
            return None
        return claims

    @app.context_processor
    def page_context():
        return {
            "product": product,
            "claims": signed_in(),
            "links": app.config["LINKS"],
            "locale": str(get_locale()),
        }

    @app.get("/")
    def home():
        return render_template(
            f"{kind}.html",
            booked=request.args.get("booked"),
            cancelled=request.args.get("cancelled"),
        )

    @app.get("/signed-out")
    def signed_out():
        """Where the identity provider's logout sends the browser back to."""
        if signed_in() is not None:
            return redirect(url_for("home"))
        return render_template(f"{kind}.html", signed_out=True)

    @app.get("/login")
    def login():
        """The entry link that the other portal offers, too: signed in already, the portal;
        else the identity provider, where a live session signs in without a page."""
        if signed_in() is not None:
            return redirect(url_for("home"))
        session["after_login"] = None
        return idp.authorize_redirect(f"{base_url}/callback")

    @app.get("/book/<option>")
    def book(option: str):
        if signed_in() is None:
            return redirect(url_for("login"))
        # Booking costs money: demand a fresh password and PIN, whatever the session's age;
        # `purpose` lets the identity provider say that the login confirms a booking.
        session["after_login"] = {"book": option[:40], "asked_at": int(time.time())}
        return idp.authorize_redirect(f"{base_url}/callback", max_age=0, purpose="booking")

    @app.get("/callback")
    def callback():
        if request.args.get("iss") not in (None, issuer):
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

    @app.post("/logout")
    def logout():
        id_token = session.get("id_token")
        session.clear()
        metadata = idp.load_server_metadata()
        query = {"post_logout_redirect_uri": f"{base_url}/signed-out", "client_id": client_id}
        if id_token:
            query["id_token_hint"] = id_token
        return redirect(f"{metadata['end_session_endpoint']}?{urlencode(query)}", code=303)

    @app.post("/backchannel-logout")
    def backchannel_logout():
        metadata = idp.load_server_metadata()
        expected = jwt.JWTClaimsRegistry(
            leeway=30,
            iss={"essential": True, "value": metadata["issuer"]},
            aud={"essential": True, "value": client_id},
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
            ended.end(claims["sid"])
        return "", 200

    return app
