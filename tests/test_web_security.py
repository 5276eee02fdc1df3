"""Web defences of the hosted pages: CSRF on every POST, security headers on every page,
production cookies, and friendly answers (never a 500) to junk and to bad links."""

import re

import pytest

from idp import create_app
from idp.accounts import links
from idp.accounts.models import Invitation, User
from idp.audit.models import AuditEvent
from idp.authn.factors.sms.models import PinChallenge
from idp.authn.models import AuthTransaction, Session
from idp.platform.extensions import db
from tests.conftest import PASSWORD, activate, csrf_token, invite, login, path_of, post_form

EN = {"Accept-Language": "en"}
BROWSER_BLUEPRINTS = {"login", "pin", "activation", "account", "i18n", "health"}


def snapshot(app) -> dict:
    """Everything a POST could change."""
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username_key == "anna"))
        return {
            "user": (
                user.state,
                user.password_hash,
                user.failed_passwords,
                user.failed_pins,
                user.locked_until,
            ),
            "transactions": [
                (t.state, t.pin_attempts, t.pins_sent)
                for t in db.session.scalars(db.select(AuthTransaction).order_by(AuthTransaction.id))
            ],
            "pins": db.session.scalar(db.select(db.func.count(PinChallenge.id))),
            "sessions": [(s.id, s.revoked_at) for s in db.session.scalars(db.select(Session))],
            "invitations": [(i.id, i.state) for i in db.session.scalars(db.select(Invitation))],
            "audit": db.session.scalar(db.select(db.func.count(AuditEvent.id))),
        }


# --- CSRF -------------------------------------------------------------------------------------


def test_every_browser_post_route_is_covered_by_the_csrf_test(app):
    posts = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if "POST" in rule.methods and rule.endpoint.split(".")[0] in BROWSER_BLUEPRINTS
    }
    assert posts <= {"/login", "/logout", "/pin", "/activate/<token>"}, posts


@pytest.mark.parametrize("token", [None, "", "wrong-token", "IjEyMyI.Z2xvYmFs.c2lnbmF0dXJl"])
@pytest.mark.parametrize(
    "target", ["login", "pin", "pin-resend", "activate", "logout", "login-while-signed-in"]
)
def test_post_without_valid_csrf_token_is_refused_and_changes_nothing(
    app, client, outbox, frozen_clock, target, token
):
    activate(app, client, outbox)
    # A second link (reset) and a pending login, so that every POST has something to change.
    app.test_cli_runner().invoke(args=["users", "reset-password", "anna"])
    link = path_of(outbox.last_link())
    if target == "logout":
        login(client, outbox)
    else:
        post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    frozen_clock.advance(seconds=61)  # a resend would be allowed
    sms_before = len(outbox.sms())
    before = snapshot(app)

    url, data = {
        "login": ("/login", {"username": "anna", "password": PASSWORD}),
        "login-while-signed-in": ("/login", {"username": "anna", "password": "wrong"}),
        "pin": ("/pin", {"pin": outbox.last_pin()}),
        "pin-resend": ("/pin", {"resend": "1"}),
        "activate": (
            link,
            {"password": "a new passphrase here", "password_confirm": "a new passphrase here"},
        ),
        "logout": ("/logout", {}),
    }[target]
    if token is not None:
        data["csrf_token"] = token
    response = client.post(url, data=data, headers=EN)
    assert response.status_code == 400
    assert "This form has expired" in response.text
    assert snapshot(app) == before
    assert len(outbox.sms()) == sms_before
    assert response.headers.get("Location") is None


def test_csrf_token_of_another_browser_is_refused(app, client, outbox):
    activate(app, client, outbox)
    other = app.test_client()
    token = csrf_token(other.get("/login").text)
    before = snapshot(app)
    response = client.post(
        "/login", data={"csrf_token": token, "username": "anna", "password": PASSWORD}
    )
    assert response.status_code == 400
    assert snapshot(app) == before


# --- Headers ----------------------------------------------------------------------------------


def pages(app, client, outbox):
    activate(app, client, outbox)
    app.test_cli_runner().invoke(args=["users", "reset-password", "anna"])
    link = path_of(outbox.last_link())
    anonymous = {
        "/login": True,
        link: True,
        "/logout": False,  # nobody signed in: nothing to confirm
        "/logged-out": False,
        "/pin": False,
        "/activate/garbage": False,
        "/no/such/page": False,
        "/healthz": False,
    }
    return link, anonymous


def assert_security_headers(response, production=False) -> None:
    headers = response.headers
    csp = headers["Content-Security-Policy"]
    directives = dict(
        [*part.strip().split(" ", 1), ""][:2] for part in csp.split(";") if part.strip()
    )
    script_src = directives.get("script-src", directives.get("default-src"))
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert directives["frame-ancestors"] == "'none'"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    if production:
        assert "max-age=" in headers["Strict-Transport-Security"]
    else:
        assert "Strict-Transport-Security" not in headers
    if response.mimetype == "text/html":
        # The CSP forbids inline scripts, so no page may rely on one.
        for script in re.findall(r"<script\b[^>]*>", response.text):
            assert "src=" in script, script
        assert not re.search(r"\son[a-z]+=", response.text), "inline event handler"


def test_security_headers_on_every_page(app, client, outbox):
    _, anonymous = pages(app, client, outbox)
    for path, has_form in anonymous.items():
        response = app.test_client().get(path)
        assert_security_headers(response)
        if has_form:
            assert 'name="csrf_token"' in response.text, path
        if 'name="csrf_token"' in response.text:
            assert "no-store" in response.headers["Cache-Control"], path
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    pin_page = client.get("/pin")
    assert_security_headers(pin_page)
    assert "no-store" in pin_page.headers["Cache-Control"]
    client.post("/pin", data={"csrf_token": csrf_token(pin_page.text), "pin": outbox.last_pin()})
    home = client.get("/")
    assert home.status_code == 200
    assert_security_headers(home)
    assert "no-store" in home.headers["Cache-Control"]
    confirm = client.get("/logout")
    assert 'name="csrf_token"' in confirm.text
    assert "no-store" in confirm.headers["Cache-Control"]
    for error in (
        client.post("/login", data={}),
        client.put("/login"),
        client.get("/no/such/page"),
    ):
        assert_security_headers(error)


# --- Production -------------------------------------------------------------------------------


@pytest.fixture
def production_app(make_app, database_uri, smtp_server, vonage, certificates):
    make_app()  # empties the shared database after the test
    settings = {
        "SECRET_KEY": "p" * 40,
        "AUDIT_KEY": "k" * 40,
        "ISSUER": "https://login.example.com",
        "PORTAL_URL": "https://portal.example.com/",
        "SQLALCHEMY_DATABASE_URI": database_uri,
        "ALLOW_SQLITE": True,
        **smtp_server.settings(certificates.ca_file),
        **vonage.settings(),
    }
    app = create_app("production", settings)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


HTTPS = {"base_url": "https://login.example.com"}


def set_cookie_headers(response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


def assert_host_cookie(header: str) -> None:
    name = header.split("=", 1)[0]
    assert name.startswith("__Host-"), header
    attributes = [a.strip().lower() for a in header.split(";")[1:]]
    assert "secure" in attributes and "httponly" in attributes
    assert "samesite=lax" in attributes and "path=/" in attributes
    assert not any(a.startswith("domain=") for a in attributes)


def test_production_cookies_headers_and_https_posts(production_app, smtp_server, vonage):
    app = production_app
    client = app.test_client()
    result = app.test_cli_runner().invoke(
        args=["users", "invite", "anna", "--email", "anna@example.com", "--phone", "+4915112345678"]
    )
    assert result.exit_code == 0, result.output
    text = smtp_server.mailbox.messages[-1].get_body(("plain",)).get_content()
    link = re.search(r"https://login\.example\.com(/activate/\S+)", text).group(1)

    page = client.get(link, **HTTPS)
    assert_security_headers(page, production=True)
    flow_cookie = set_cookie_headers(page)["__Host-idp_flow"]
    assert_host_cookie(flow_cookie)
    # Browsers send no Referer under Referrer-Policy: no-referrer; POSTs over HTTPS must work.
    response = client.post(
        link,
        data={
            "csrf_token": csrf_token(page.text),
            "password": PASSWORD,
            "password_confirm": PASSWORD,
        },
        **HTTPS,
    )
    assert response.status_code == 303, response.text
    pin = re.search(r"#(\d{6})$", vonage.state.received[-1]["text"]).group(1)
    pin_page = client.get("/pin", **HTTPS)
    response = client.post(
        "/pin", data={"csrf_token": csrf_token(pin_page.text), "pin": pin}, **HTTPS
    )
    assert response.status_code == 200, response.text

    page = client.get("/login", **HTTPS)
    response = client.post(
        "/login",
        data={"csrf_token": csrf_token(page.text), "username": "anna", "password": PASSWORD},
        **HTTPS,
    )
    assert response.status_code == 303
    pin = re.search(r"#(\d{6})$", vonage.state.received[-1]["text"]).group(1)
    pin_page = client.get("/pin", **HTTPS)
    response = client.post(
        "/pin", data={"csrf_token": csrf_token(pin_page.text), "pin": pin}, **HTTPS
    )
    assert response.status_code == 303
    cookies = set_cookie_headers(response)
    assert_host_cookie(cookies["__Host-idp_session"])
    assert_host_cookie(cookies["__Host-idp_flow"])
    home = client.get("/", **HTTPS)
    assert home.status_code == 200 and "anna" in home.text
    assert_security_headers(home, production=True)
    # The language switch sets its cookie just as carefully.
    switch = client.get("/language/en", **HTTPS)
    [language_cookie] = switch.headers.getlist("Set-Cookie")
    assert "secure" in language_cookie.lower() and "httponly" in language_cookie.lower()


# --- Junk -------------------------------------------------------------------------------------


def test_huge_body_is_413(app, client):
    token = csrf_token(client.get("/login").text)
    response = client.post(
        "/login",
        data={"csrf_token": token, "username": "anna", "password": "x" * 200_000},
    )
    assert response.status_code == 413
    assert "<html" in response.text


def test_non_utf8_form_data_is_no_500(app, client, outbox):
    activate(app, client, outbox)
    token = csrf_token(client.get("/login").text).encode()
    body = b"csrf_token=" + token + b"&username=anna%ff%fe&password=\xff\xfe\xfa"
    response = client.post("/login", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code in (200, 400)
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    token = csrf_token(client.get("/pin").text).encode()
    response = client.post(
        "/pin",
        data=b"csrf_token=" + token + b"&pin=%ff%fe%fd123",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code in (400, 422)


def test_missing_fields_are_no_500(app, client, outbox):
    invite(app)
    link = path_of(outbox.last_link())
    token = csrf_token(client.get(link).text)
    assert client.post(link, data={"csrf_token": token}).status_code == 422
    assert client.post("/login", data={"csrf_token": token}).status_code == 200
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    token = csrf_token(client.get("/pin").text)
    assert client.post("/pin", data={"csrf_token": token}).status_code == 422
    assert client.post("/pin", data={"csrf_token": token, "pin": "1" * 5000}).status_code == 422


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/page", 404),
        ("GET", "/activate/", 404),
        ("GET", "/static/../config/default.py", 404),
        ("PUT", "/login", 405),
        ("DELETE", "/pin", 405),
        ("POST", "/healthz", 405),
        ("PATCH", "/", 405),
        ("GET", "/language/xx", 302),
    ],
)
def test_unknown_paths_and_wrong_methods_get_friendly_pages(app, client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    if status >= 400:
        assert "<html" in response.text


def test_protocol_paths_answer_404_and_405_in_json(client):
    for method, path, status in (
        ("get", "/token", 405),
        ("put", "/userinfo", 405),
        ("get", "/revoke", 405),
        ("get", "/introspect", 405),
        ("post", "/jwks.json", 405),
        ("get", "/token/extra", 404),
        ("get", "/.well-known/unknown", 404),
        ("post", "/.well-known/openid-configuration", 405),
    ):
        response = getattr(client, method)(path)
        assert response.status_code == status, (method, path)
        assert response.is_json, (method, path, response.content_type)
        assert response.json["error"] in ("not_found", "method_not_allowed")
        if status == 405:
            assert response.headers.get("Allow"), path


def test_pages_for_people_stay_html(client):
    for path in ("/no-such-page", "/tokens", "/token-of-something"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.content_type.startswith("text/html"), path


def test_junk_cookies_and_headers_are_no_500(app, client):
    client.set_cookie(app.config["AUTH_COOKIE_NAME"], "\x00garbage")
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], "not.a.signed.cookie")
    response = client.get("/login", headers={"Accept-Language": "xx;q=abc, ;;, *"})
    assert response.status_code == 200
    assert client.get("/").status_code == 302
    assert client.get("/pin").status_code == 410


# --- Bad links --------------------------------------------------------------------------------


def link_token(outbox) -> str:
    return outbox.last_link().rsplit("/", 1)[1]


def bad_links(app, outbox) -> dict[str, str]:
    token = link_token(outbox)
    with app.app_context():
        invitation = db.session.scalar(db.select(Invitation))
        other_salt = links.sign("idp.link.other-purpose", [invitation.id, "nonce"])
        wrong_nonce = links.sign(links.SET_PASSWORD_SALT, [invitation.id, "not-the-nonce"])
        unknown_id = links.sign(links.SET_PASSWORD_SALT, [invitation.id + 999, "nonce"])
        wrong_shape = links.sign(links.SET_PASSWORD_SALT, ["1", 2, 3])
        not_a_list = links.sign(links.SET_PASSWORD_SALT, {"id": invitation.id})
    flipped = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    return {
        "truncated": token[: len(token) // 2],
        "tampered": flipped,
        "other salt": other_salt,
        "wrong nonce": wrong_nonce,
        "unknown id": unknown_id,
        "wrong shape": wrong_shape,
        "not a list": not_a_list,
        "junk": "%ff%fe..;'\"<script>",
        # Base64 skips what is not in its alphabet: the real link with junk is no link.
        "junk appended": token + "%C2%80",
        "junk inside": token[:10] + "%21" + token[10:],
    }


def test_tampered_links_get_a_friendly_page(app, client, outbox):
    invite(app)
    for case, token in bad_links(app, outbox).items():
        page = client.get(f"/activate/{token}", headers=EN)
        assert page.status_code in (400, 404), case
        if page.status_code == 400:
            assert "This link is incomplete or invalid" in page.text, case
        # POSTing to it changes nothing either.
        response = post_form(
            client,
            f"/activate/{token}",
            {"password": PASSWORD, "password_confirm": PASSWORD},
            page_url="/login",
            headers=EN,
        )
        assert response.status_code in (400, 404), case
    assert outbox.sms() == []


def test_expired_link_gets_a_friendly_page(app, client, outbox, frozen_clock):
    invite(app)
    link = path_of(outbox.last_link())
    frozen_clock.advance(seconds=app.config["INVITATION_LIFETIME"] + 1)
    page = client.get(link, headers=EN)
    assert page.status_code == 410 and "This link has expired" in page.text
    response = post_form(
        client, link, {"password": PASSWORD, "password_confirm": PASSWORD}, page_url="/login"
    )
    assert response.status_code == 410
    assert outbox.sms() == []


@pytest.mark.parametrize("opened_again", [False, True])
def test_a_link_that_expires_during_its_pin_step_sets_no_password(
    app, client, outbox, frozen_clock, opened_again
):
    invite(app)
    link = path_of(outbox.last_link())
    frozen_clock.advance(seconds=app.config["INVITATION_LIFETIME"] - 60)
    response = post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    assert response.status_code == 303
    frozen_clock.advance(seconds=120)  # the PIN is still valid, the link no longer
    if opened_again:  # in another tab: that marks the link expired
        assert client.get(link).status_code == 410
    page = post_form(client, "/pin", {"pin": outbox.last_pin()}, headers=EN)
    assert page.status_code == 410 and "This link has expired" in page.text
    with app.app_context():
        user = User.query.one()
        assert user.password_hash is None and user.state == "invited"
        assert Invitation.query.one().state != "activated"


def test_used_link_gets_a_friendly_page(app, client, outbox):
    link = activate(app, client, outbox)
    page = client.get(link, headers=EN)
    assert page.status_code == 410 and "already been used" in page.text
    response = post_form(
        client,
        link,
        {"password": PASSWORD + "2", "password_confirm": PASSWORD + "2"},
        page_url="/login",
    )
    assert response.status_code == 410


def test_link_used_while_a_pin_was_pending_cannot_complete_twice(app, outbox, frozen_clock):
    invite(app)
    link = path_of(outbox.last_link())
    first, second = app.test_client(), app.test_client()
    post_form(first, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    first_pin = outbox.last_pin()
    first_token = csrf_token(first.get("/pin").text)
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"])  # a PIN for the second
    other = PASSWORD + " other"
    post_form(second, link, {"password": other, "password_confirm": other})
    second_pin = outbox.last_pin()
    assert post_form(second, "/pin", {"pin": second_pin}).status_code == 200
    response = first.post("/pin", data={"csrf_token": first_token, "pin": first_pin})
    assert response.status_code == 410
    with app.app_context():
        from idp.accounts.passwords import hashing

        assert hashing().verify(db.session.scalar(db.select(User)).password_hash, other)


def test_resend_invite_kills_the_old_link(app, client, outbox):
    invite(app)
    old = path_of(outbox.last_link())
    result = app.test_cli_runner().invoke(args=["users", "resend-invite", "anna"])
    assert result.exit_code == 0, result.output
    new = path_of(outbox.last_link())
    assert new != old
    page = client.get(old, headers=EN)
    assert page.status_code == 410 and "replaced by a newer one" in page.text
    assert client.get(new).status_code == 200
    response = post_form(
        client, old, {"password": PASSWORD, "password_confirm": PASSWORD}, page_url=new
    )
    assert response.status_code == 410
    assert outbox.sms() == []


@pytest.mark.parametrize(
    "path",
    [
        "/activate/%ff%fe",
        "/activate/" + "A" * 5000,
        "/login?next=%ff",
        "/language/%ff?next=%ff",
        "/pin?x=%00",
        "/activate/..%2f..%2fetc",
    ],
)
def test_junk_urls_are_no_500(client, path):
    assert client.get(path).status_code < 500


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=zz", b"\xff\xfe"),
        ("application/json", b"{not json"),
        ("application/x-www-form-urlencoded", b"%%%&&&==="),
        ("text/plain", b"\x00\x01"),
    ],
)
def test_junk_bodies_are_no_500(client, content_type, body):
    for path in ("/login", "/pin", "/logout", "/activate/x"):
        assert client.post(path, data=body, content_type=content_type).status_code < 500
