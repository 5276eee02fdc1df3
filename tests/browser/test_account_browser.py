"""The account page and its changes in a real browser, German and English, with the keyboard
alone: signed in with password and SMS PIN, she changes her password, then her mobile number
(a PIN to the current number, then one to the new), and after each completed change the back
button leads to a page with a way on. Each page checked with axe-core, and the README's
screenshots (docs/screenshots/account-de.png, account-password-de.png, account-phone-de.png
and -en) taken."""

import pytest

from tests.browser.conftest import (
    ROOT,
    SCREENSHOTS,
    Steps,
    new_page,
    screenshot,
    tab_to,
    wait_for_focus,
)
from tests.conftest import PASSWORD, activate

NEW_PASSWORD = "a changed password made of many words"
NEW_PHONE = "+4915198765432"
TEXTS = {
    "de": {
        "signed_in": "Sie sind angemeldet",
        "change_password": "Passwort ändern",
        "change_phone": "Mobilnummer ändern",
        "password_changed": "Ihr Passwort wurde geändert.",
        "phone_changed": "Ihre Mobilnummer wurde geändert.",
    },
    "en": {
        "signed_in": "You are signed in",
        "change_password": "Change password",
        "change_phone": "Change mobile number",
        "password_changed": "Your password has been changed.",
        "phone_changed": "Your mobile number has been changed.",
    },
}


def readme_screenshot(page, name: str, language: str) -> None:
    screenshot(page, ROOT / "docs" / "screenshots" / f"{name}-{language}.png")


def type_pin(page, outbox) -> None:
    wait_for_focus(page, "pin")
    page.keyboard.type(outbox.last_pin())
    page.keyboard.press("Enter")


def sign_in(page, base: str, outbox, text: dict, password: str = PASSWORD) -> None:
    """From /account to the login, password and SMS PIN, and back on the account page."""
    page.goto(f"{base}/account")
    page.wait_for_url(lambda url: "/login?next=" in url)
    wait_for_focus(page, "username")
    page.keyboard.type("anna")
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url("**/pin")
    type_pin(page, outbox)
    page.wait_for_url(f"{base}/account")
    page.get_by_role("heading", name=text["signed_in"], level=1).wait_for()


def assert_a_way_on_after_back(page, base: str, text: dict, steps: Steps, name: str) -> None:
    """The back button after a completed change (to the PIN page, whose step is over): the
    account page, which shows what holds now and leads on, not an error."""
    response = page.go_back()
    page.wait_for_url(f"{base}/account")
    assert response is None or response.status < 400, response.status
    page.get_by_role("heading", name=text["signed_in"], level=1).wait_for()
    assert page.locator("main a, main button").count() > 0
    steps.record(name)


@pytest.fixture
def journey(browser, live_idp, outbox):
    def start(language: str, name: str):
        app, base = live_idp
        activate(app, app.test_client(), outbox)
        page = new_page(browser, language)
        return page, base, Steps(page, SCREENSHOTS / language / name)

    return start


@pytest.mark.parametrize("language", ["de", "en"])
def test_the_account_page_after_password_and_pin(journey, outbox, language):
    page, base, steps = journey(language, "account")
    text = TEXTS[language]

    sign_in(page, base, outbox, text)
    assert page.locator("dd.username").inner_text() == "anna"
    readme_screenshot(page, "account", language)
    steps.record("account")

    assert {name: found for name, found in steps.violations.items() if found} == {}


@pytest.mark.parametrize("language", ["de", "en"])
def test_changing_the_password_with_the_keyboard_alone(journey, outbox, language):
    page, base, steps = journey(language, "account-password")
    text = TEXTS[language]
    sign_in(page, base, outbox, text)

    tab_to(page, text["change_password"])
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/account/password")
    readme_screenshot(page, "account-password", language)
    steps.record("password")
    page.focus("#current_password")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.type(NEW_PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.type(NEW_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/pin")
    steps.record("pin")
    type_pin(page, outbox)
    page.wait_for_url(f"{base}/account")
    page.get_by_role("status").filter(has_text=text["password_changed"]).wait_for()
    steps.record("changed")

    assert_a_way_on_after_back(page, base, text, steps, "back")
    assert {name: found for name, found in steps.violations.items() if found} == {}


@pytest.mark.parametrize("language", ["de", "en"])
def test_changing_the_mobile_number_with_the_keyboard_alone(journey, outbox, language):
    page, base, steps = journey(language, "account-phone")
    text = TEXTS[language]
    sign_in(page, base, outbox, text)

    tab_to(page, text["change_phone"])
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/account/phone")
    readme_screenshot(page, "account-phone", language)
    steps.record("phone")
    wait_for_focus(page, "phone")
    page.keyboard.type(NEW_PHONE)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/pin")
    steps.record("pin-current")
    assert outbox.sms()[0]["to"] == "+4915112345678"
    type_pin(page, outbox)
    # The same address again, now for the new number (masked to its last two digits).
    page.get_by_text("\u00a0…\u00a032").first.wait_for()
    steps.record("pin-new")
    assert outbox.sms()[0]["to"] == NEW_PHONE
    type_pin(page, outbox)
    page.wait_for_url(f"{base}/account/phone")
    page.get_by_role("status").filter(has_text=text["phone_changed"]).wait_for()
    steps.record("changed")

    assert_a_way_on_after_back(page, base, text, steps, "back")
    assert {name: found for name, found in steps.violations.items() if found} == {}
