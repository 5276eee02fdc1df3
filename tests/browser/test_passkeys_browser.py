"""Passkeys in a real browser: Chromium's virtual authenticator (CTAP2, internal, resident
keys, user verification) registers a passkey on the account page after password + PIN, signs
in at a relying party with password + passkey and no SMS, falls back to the SMS on the same
page, removes the passkey, and the next login asks for the PIN again.

WebAuthn needs a secure context and an RP ID that is a domain: an IP address is none, and
http://localhost is a secure context, so this IdP is served at http://localhost:<port> (its
RP ID "localhost")."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from idp.demo.servers import BackgroundServer, free_port
from tests.browser.conftest import (
    ROOT,
    add_virtual_authenticator,
    new_page,
    newest_pin,
    screenshot,
)
from tests.conftest import PASSWORD, invite
from tests.oidc_fixtures import LiveIdp, RelyingParty

SCREENSHOTS = ROOT / "docs" / "screenshots"


@pytest.fixture
def localhost_idp(make_app):
    port = free_port()
    app = make_app(
        ISSUER=f"http://localhost:{port}",
        DEV_PAGES=True,
        SECOND_FACTORS=["sms", "passkey"],
        PIN_RESEND_COOLDOWN=1,
    )
    server = BackgroundServer(app, port).start()
    yield LiveIdp(app, f"http://localhost:{port}")
    server.stop()


def type_password(page):
    page.fill("#username", "anna")
    page.fill("#password", PASSWORD)
    page.locator("form button[type=submit]").first.click()


def enter_pin(page, base):
    page.wait_for_url("**/pin")
    pin = newest_pin(page, f"{base}/_dev/outbox")
    page.go_back()
    page.fill("#pin", pin)
    page.locator('form button[type=submit]:not([name="resend"])').first.click()


class Callbacks:
    """The relying party's redirect URI, served for real on its port (no interception of the
    browser's requests, which raced with the redirect): it records every URL that arrives."""

    def __init__(self, port: int):
        self.urls: list[str] = []
        callbacks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/callback"):  # not the browser's /favicon.ico
                    callbacks.urls.append(f"http://localhost:{port}{self.path}")
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"RP")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def callbacks():
    served = Callbacks(free_port())
    yield served
    served.stop()


def sign_in_at_rp(page, rp, base, callbacks, *, factor):
    """The relying party's authorization request; returns the ID token's claims."""
    page.goto(rp.authorization_url())
    type_password(page)
    page.wait_for_url("**/login/passkey")
    if factor == "passkey":
        page.click('button[name="passkey"]')
    else:
        page.click('button[name="sms"]')
        enter_pin(page, base)
    page.wait_for_url(f"{rp.redirect_uri}*")
    params = {k: v[0] for k, v in parse_qs(urlsplit(callbacks.urls[-1]).query).items()}
    assert params["state"] == rp.last["state"]
    return rp.verify_id_token(rp.redeem(callbacks.urls[-1])["id_token"])


def sign_out(page, base):
    page.goto(f"{base}/logout")
    page.locator("form button[type=submit]").first.click()
    page.wait_for_url("**/logged-out")


def sms_count(page, base):
    page.goto(f"{base}/_dev/outbox")
    return page.locator("article", has_text="SMS").count()


def test_passkey_register_sign_in_fall_back_remove(browser, localhost_idp, outbox, callbacks):
    idp, base = localhost_idp, localhost_idp.issuer
    invite(idp.app)
    redirect_uri = f"http://localhost:{callbacks.server.server_port}/callback"
    created = idp.create_client(redirect_uri=redirect_uri)
    rp = RelyingParty(idp, created["client_id"], created["client_secret"], redirect_uri)
    page = new_page(browser, "de")
    add_virtual_authenticator(page)

    # Activation, then the account page after password + PIN.
    page.goto(f"{base}/_dev/outbox")
    link = page.locator("pre a", has_text="/activate/").first.get_attribute("href")
    page.goto(link)
    page.fill("#password", PASSWORD)
    page.fill("#password_confirm", PASSWORD)
    page.locator("form button[type=submit]").first.click()
    enter_pin(page, base)
    page.goto(f"{base}/account/passkeys")
    assert urlsplit(page.url).path == "/login"  # not fresh: a login with password + PIN first
    type_password(page)
    enter_pin(page, base)
    page.wait_for_url("**/account/passkeys")
    page.fill("#name", "Laptop")
    page.click('button[name="register"]')
    page.wait_for_url(lambda url: "done=added" in url)
    assert "Laptop" in page.content()
    screenshot(page, SCREENSHOTS / "20-passkeys.png")

    # Password + passkey at the relying party: no SMS.
    sign_out(page, base)
    sms_before = sms_count(page, base)
    page.goto(rp.authorization_url())
    type_password(page)
    page.wait_for_url("**/login/passkey")
    screenshot(page, SCREENSHOTS / "21-login-passkey.png")
    claims = sign_in_at_rp(page, rp, base, callbacks, factor="passkey")
    assert claims["amr"] == ["pwd", "hwk", "mfa"]
    assert claims["acr"] == "https://refeds.org/profile/mfa"
    assert sms_count(page, base) == sms_before

    # The SMS on the same page.
    sign_out(page, base)
    claims = sign_in_at_rp(page, rp, base, callbacks, factor="sms")
    assert claims["amr"] == ["pwd", "sms", "mfa"]

    # Removed (the login just now was password + PIN: fresh), and the PIN comes back.
    page.goto(f"{base}/account/passkeys")
    page.click('button[name="remove"]')
    page.wait_for_url(lambda url: "done=removed" in url)
    assert page.locator("td", has_text="Laptop").count() == 0
    sign_out(page, base)
    page.goto(f"{base}/login")
    type_password(page)
    page.wait_for_url("**/pin")
