"""Passkeys in a real browser: Chromium's virtual authenticator (CTAP2, internal, resident
keys, user verification) registers a passkey on the account page after password + PIN, signs
in at a relying party with password + passkey and no SMS, falls back to the SMS on the same
page, removes the passkey, and the next login asks for the PIN again.

WebAuthn needs a secure context and an RP ID that is a domain: an IP address is none, and
http://localhost is a secure context, so this IdP is served at http://localhost:<port> (its
RP ID "localhost")."""

from urllib.parse import parse_qs, urlsplit

import pytest

from idp.demo.servers import BackgroundServer, free_port
from tests.browser.conftest import ROOT, new_page, newest_pin
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


def add_virtual_authenticator(page):
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp


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


def sign_in_at_rp(page, rp, base, *, factor):
    """The relying party's authorization request; returns the ID token's claims."""
    callbacks = []
    page.route(
        f"{rp.redirect_uri}*",
        lambda route: (callbacks.append(route.request.url), route.fulfill(body="RP")),
    )
    page.goto(rp.authorization_url())
    type_password(page)
    page.wait_for_url("**/login/passkey")
    if factor == "passkey":
        page.click('button[name="passkey"]')
    else:
        page.click('button[name="sms"]')
        enter_pin(page, base)
    page.wait_for_url(f"{rp.redirect_uri}*")
    page.unroute(f"{rp.redirect_uri}*")
    params = {k: v[0] for k, v in parse_qs(urlsplit(callbacks[-1]).query).items()}
    assert params["state"] == rp.last["state"]
    return rp.verify_id_token(rp.redeem(callbacks[-1])["id_token"])


def sign_out(page, base):
    page.goto(f"{base}/logout")
    page.locator("form button[type=submit]").first.click()
    page.wait_for_url("**/logged-out")


def sms_count(page, base):
    page.goto(f"{base}/_dev/outbox")
    return page.locator("article", has_text="SMS").count()


def test_passkey_register_sign_in_fall_back_remove(browser, localhost_idp, outbox):
    idp, base = localhost_idp, localhost_idp.issuer
    invite(idp.app)
    redirect_uri = f"http://localhost:{free_port()}/callback"
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
    page.screenshot(path=str(SCREENSHOTS / "20-passkeys.png"), full_page=True)

    # Password + passkey at the relying party: no SMS.
    sign_out(page, base)
    sms_before = sms_count(page, base)
    page.route(f"{redirect_uri}*", lambda route: route.fulfill(body="RP"))
    page.goto(rp.authorization_url())
    type_password(page)
    page.wait_for_url("**/login/passkey")
    page.screenshot(path=str(SCREENSHOTS / "21-login-passkey.png"), full_page=True)
    page.unroute(f"{redirect_uri}*")
    claims = sign_in_at_rp(page, rp, base, factor="passkey")
    assert claims["amr"] == ["pwd", "hwk", "mfa"]
    assert claims["acr"] == "https://refeds.org/profile/mfa"
    assert sms_count(page, base) == sms_before

    # The SMS on the same page.
    sign_out(page, base)
    claims = sign_in_at_rp(page, rp, base, factor="sms")
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
