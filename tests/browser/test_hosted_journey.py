"""The seed journey in a real browser, German and English: the mail in the development outbox,
set password, SMS PIN, login, SMS PIN. Every page is screenshotted and checked with axe-core."""

import pytest

from tests.browser.conftest import SCREENSHOTS, Steps, new_page, newest_link, newest_pin
from tests.conftest import PASSWORD, invite

TEXTS = {
    "de": {
        "save": "Speichern",
        "confirm": "Bestätigen",
        "next": "Weiter",
        "done": "Ihr Passwort ist gespeichert",
    },
    "en": {"save": "Save", "confirm": "Confirm", "next": "Next", "done": "Your password is set"},
}


@pytest.mark.parametrize("language", ["de", "en"])
def test_activation_and_login_in_the_browser(browser, live_idp, language):
    app, base = live_idp
    text = TEXTS[language]
    page = new_page(browser, language)
    steps = Steps(page, SCREENSHOTS / language / "hosted")
    invite(app)

    page.goto(newest_link(page, f"{base}/_dev/outbox", "/activate/"))
    steps.record("set-password")
    page.fill("#password", PASSWORD)
    page.fill("#password_confirm", PASSWORD)
    page.get_by_role("button", name=text["save"]).click()
    steps.record("activation-pin")
    pin = newest_pin(page, f"{base}/_dev/outbox")
    page.go_back()
    page.fill("#pin", pin)
    page.get_by_role("button", name=text["confirm"], exact=True).click()
    page.get_by_role("heading", name=text["done"]).wait_for()
    steps.record("password-set")

    page.goto(f"{base}/login")
    steps.record("login")
    page.fill("#username", "anna")
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name=text["next"]).click()
    steps.record("login-pin")
    pin = newest_pin(page, f"{base}/_dev/outbox")
    page.go_back()
    page.fill("#pin", pin)
    page.get_by_role("button", name=text["confirm"], exact=True).click()
    page.wait_for_url(f"{base}/account")
    assert "anna" in page.content()
    steps.record("signed-in")

    assert {name: found for name, found in steps.violations.items() if found} == {}


def test_language_switch_changes_the_page_language(browser, live_idp):
    _, base = live_idp
    page = new_page(browser, "de")
    page.goto(f"{base}/login")
    assert page.get_attribute("html", "lang") == "de"
    page.get_by_role("link", name="EN", exact=True).click()
    page.wait_for_selector("html[lang=en]")
    assert "Username" in page.content()


def test_login_works_with_the_keyboard_alone(browser, live_idp):
    app, base = live_idp
    page = new_page(browser, "de")
    invite(app)
    page.goto(newest_link(page, f"{base}/_dev/outbox", "/activate/"))
    page.focus("#password")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/pin")
    pin = newest_pin(page, f"{base}/_dev/outbox")
    page.goto(f"{base}/pin")
    # The PIN field has the focus when the page opens (once the browser applied autofocus,
    # which a busy machine may do after the load event): type and press Enter.
    page.wait_for_function("document.activeElement && document.activeElement.name === 'pin'")
    page.keyboard.type(pin)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Ihr Passwort ist gespeichert").wait_for()
