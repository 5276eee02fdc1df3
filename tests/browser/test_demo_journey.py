"""The whole leaflet in a browser, through `idp demo`'s three apps: invitation mail in the
outbox, set password, PIN, e:service main menu, cloud.phone by single sign-on, booking with a
fresh PIN (step-up), and logout from e:service ending cloud.phone's session too."""

import pytest

from idp.demo import PASSKEY_SETTINGS, DemoPorts, serve_demo
from idp.demo.servers import free_port
from tests.browser.conftest import (
    SCREENSHOTS,
    Steps,
    add_virtual_authenticator,
    new_page,
    newest_link,
    newest_pin,
)
from tests.conftest import PASSWORD

TEXTS = {
    "de": {
        "save": "Speichern",
        "confirm": "Bestätigen",
        "next": "Weiter",
        # The portals speak the browser's language too.
        "sign in": "Anmelden",
        "main menu": "Hauptmenü",
        "open cloud.phone": "cloud.phone öffnen",
        "phone system": "cloud.phone – Telefonanlage",
        "book": "Zusatzrufnummer buchen",
        "booked": "wurde gebucht",
        "sign out": "Abmelden",
        "booking": "Buchung bestätigen",
        "signed out": "Sie sind abgemeldet.",
    },
    "en": {
        "save": "Save",
        "confirm": "Confirm",
        "next": "Next",
        "sign in": "Sign in",
        "main menu": "Main menu",
        "open cloud.phone": "Open cloud.phone",
        "phone system": "cloud.phone – phone system",
        "book": "Book an additional phone number",
        "booked": "has been booked",
        "sign out": "Sign out",
        "booking": "Confirm your booking",
        "signed out": "You are signed out.",
    },
}


def serving_demo(tmp_path, database_uri, make_app, ports, overrides=None):
    # The demo starts on an empty database, as `idp demo` does: no key or account that an
    # earlier test of this process left behind (under another secret key) may meet it.
    with make_app().app_context():
        from tests.conftest import empty_tables

        empty_tables()
    servers, _ = serve_demo(
        ports,
        {
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "OUTBOX_DIR": str(tmp_path / "outbox"),
            **(overrides or {}),
        },
    )
    yield ports
    for server in servers:
        server.stop()
    identity_provider = servers[0].server.app
    with identity_provider.app_context():
        from tests.conftest import empty_tables

        empty_tables()


@pytest.fixture
def demo(tmp_path, database_uri, make_app):
    ports = DemoPorts(free_port(), free_port(), free_port())
    yield from serving_demo(tmp_path, database_uri, make_app, ports)


@pytest.fixture
def passkey_demo(tmp_path, database_uri, make_app):
    """As `idp demo --passkeys`: at http://localhost, passkeys offered beside the SMS."""
    ports = DemoPorts(free_port(), free_port(), free_port(), host="localhost")
    yield from serving_demo(tmp_path, database_uri, make_app, ports, PASSKEY_SETTINGS)


def sign_in(page, steps, outbox, text, name):
    # A step-up has the signed-in username filled in, and it cannot be changed.
    if page.locator("#username").is_editable():
        page.fill("#username", "anna")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name=text["next"]).click()
    if steps is not None:
        steps.record(f"{name}-pin")
    pin = newest_pin(page, outbox)
    page.go_back()
    page.fill("#pin", pin)
    page.get_by_role("button", name=text["confirm"], exact=True).click()


@pytest.mark.parametrize("language", ["de", "en"])
def test_the_leaflet_journey_through_both_portals(browser, demo, language):
    text = TEXTS[language]
    outbox = f"{demo.url('idp')}/_dev/outbox"
    page = new_page(browser, language)
    steps = Steps(page, SCREENSHOTS / language / "demo")

    page.goto(outbox)
    steps.record("outbox-activation-mail")
    page.goto(newest_link(page, outbox, "/activate/"))
    steps.record("set-password")
    page.fill("#password", PASSWORD)
    page.fill("#password_confirm", PASSWORD)
    page.get_by_role("button", name=text["save"]).click()
    steps.record("activation-pin")
    pin = newest_pin(page, outbox)
    page.go_back()
    page.fill("#pin", pin)
    page.get_by_role("button", name=text["confirm"], exact=True).click()
    steps.record("password-set")

    page.goto(demo.url("eservice") + "/")
    steps.record("eservice-start")
    page.get_by_role("link", name=text["sign in"]).click()
    steps.record("login")
    sign_in(page, steps, outbox, text, "login")
    page.get_by_role("heading", name=text["main menu"]).wait_for()
    assert page.url.startswith(demo.url("eservice"))
    steps.record("eservice-main-menu")

    # Single sign-on: cloud.phone signs in without password or PIN.
    sms_before = page.goto(outbox) and page.locator("article", has_text="SMS").count()
    page.goto(demo.url("eservice") + "/")
    # The main menu offers cloud.phone because the customer has a cloud.phone contract.
    # Its link signs in by itself: no page of cloud.phone's asks to sign in first.
    page.get_by_role("link", name=text["open cloud.phone"]).click()
    page.get_by_role("heading", name=text["phone system"]).wait_for()
    assert page.url.startswith(demo.url("cloudphone"))
    steps.record("cloudphone-single-sign-on")
    page.goto(outbox)
    assert page.locator("article", has_text="SMS").count() == sms_before

    # Booking demands password and a fresh PIN (step-up), even within the session.
    page.goto(demo.url("eservice") + "/")
    page.get_by_role("link", name=text["book"]).click()
    page.wait_for_url("**/login**")
    page.get_by_role("heading", name=text["booking"]).wait_for()
    steps.record("booking-step-up")
    sign_in(page, steps, outbox, text, "booking")
    page.get_by_text(text["booked"]).wait_for()
    steps.record("booking-done")

    # Logout at e:service ends the session at the IdP and, by back-channel, at cloud.phone.
    page.get_by_role("button", name=text["sign out"]).click()
    page.wait_for_url(demo.url("eservice") + "/signed-out")
    page.get_by_text(text["signed out"]).wait_for()
    steps.record("signed-out")
    # The back-channel logout travels in the background: give it a moment to arrive.
    for _ in range(20):
        page.goto(demo.url("cloudphone") + "/")
        if text["phone system"] not in page.content():
            break
        page.wait_for_timeout(250)
    assert page.get_by_role("link", name=text["sign in"]).is_visible()

    assert {name: found for name, found in steps.violations.items() if found} == {}


def activate_and_sign_in(page, demo, text) -> None:
    """Anna's activation from the outbox, then e:service with password + PIN: its main menu."""
    outbox = f"{demo.url('idp')}/_dev/outbox"
    page.goto(newest_link(page, outbox, "/activate/"))
    page.fill("#password", PASSWORD)
    page.fill("#password_confirm", PASSWORD)
    page.get_by_role("button", name=text["save"]).click()
    pin = newest_pin(page, outbox)
    page.go_back()
    page.fill("#pin", pin)
    page.get_by_role("button", name=text["confirm"], exact=True).click()
    page.goto(demo.url("eservice") + "/")
    page.get_by_role("link", name=text["sign in"]).click()
    sign_in(page, None, outbox, text, "login")
    page.get_by_role("heading", name=text["main menu"]).wait_for()


def test_the_back_button_after_the_login_leads_back_to_eservice(browser, demo):
    page = new_page(browser, "de")
    activate_and_sign_in(page, demo, TEXTS["de"])

    # Back to the PIN page, then to the login page: each leads on to e:service.
    for _ in range(2):
        page.go_back()
        page.get_by_role("heading", name="Hauptmenü").wait_for()
        assert page.url.startswith(demo.url("eservice"))


def sms_count(page, outbox) -> int:
    page.goto(outbox)
    return page.locator("article", has_text="SMS").count()


def test_a_passkey_added_from_eservice_confirms_the_next_login_there(browser, passkey_demo):
    """`idp demo --passkeys` as its text says: activation, e:service with password + PIN, "My
    access", "Passkeys", add one; signed out and in again at e:service, the passkey confirms
    the login after the password and no SMS is sent."""
    demo, text = passkey_demo, TEXTS["de"]
    outbox = f"{demo.url('idp')}/_dev/outbox"
    page = new_page(browser, "de")
    add_virtual_authenticator(page)
    activate_and_sign_in(page, demo, text)

    page.get_by_role("link", name="Mein Zugang").click()
    page.get_by_role("link", name="Passkeys").click()
    page.fill("#name", "Laptop")
    page.click('button[name="register"]')
    page.wait_for_url(lambda url: "done=added" in url)

    page.goto(demo.url("eservice") + "/")
    page.get_by_role("button", name=text["sign out"]).click()
    page.wait_for_url(demo.url("eservice") + "/signed-out")
    sms_before = sms_count(page, outbox)
    page.goto(demo.url("eservice") + "/")
    page.get_by_role("link", name=text["sign in"]).click()
    page.fill("#username", "anna")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name=text["next"]).click()
    page.wait_for_url("**/login/passkey")
    page.click('button[name="passkey"]')
    page.get_by_role("heading", name=text["main menu"]).wait_for()
    assert page.url.startswith(demo.url("eservice"))
    assert sms_count(page, outbox) == sms_before
