"""The forgotten password in a real browser, German and English, with the keyboard alone: from
the login page's link to the new password confirmed by the SMS PIN; each page checked with
axe-core, and the README's screenshots (docs/screenshots/password-forgot-de.png, -en.png)."""

import pytest

from idp.platform import background
from tests.browser.conftest import (
    ROOT,
    SCREENSHOTS,
    Steps,
    new_page,
    screenshot,
    tab_to,
    wait_for_focus,
)
from tests.conftest import activate

NEW_PASSWORD = "a forgotten one replaced by this passphrase"
TEXTS = {
    "de": {
        "link": "Passwort vergessen?",
        "sent": "Bitte prüfen Sie Ihre E-Mails",
        "done": "Ihr neues Passwort ist gesetzt",
    },
    "en": {
        "link": "Forgot password?",
        "sent": "Please check your e-mail",
        "done": "Your new password is set",
    },
}


@pytest.mark.parametrize("language", ["de", "en"])
def test_the_forgotten_password_with_the_keyboard_alone(browser, live_idp, outbox, language):
    app, base = live_idp
    text = TEXTS[language]
    activate(app, app.test_client(), outbox)
    page = new_page(browser, language)
    steps = Steps(page, SCREENSHOTS / language / "password-forgot")

    page.goto(f"{base}/login")
    tab_to(page, text["link"])
    page.keyboard.press("Enter")
    page.wait_for_url("**/password/forgot")
    screenshot(page, ROOT / "docs" / "screenshots" / f"password-forgot-{language}.png")
    steps.record("forgot")
    wait_for_focus(page, "username")
    page.keyboard.type("anna")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name=text["sent"], level=1).wait_for()
    steps.record("sent")

    background.of(app).wait()
    page.goto(outbox.last_link())
    page.focus("#password")
    page.keyboard.type(NEW_PASSWORD)
    page.keyboard.press("Tab")
    page.keyboard.type(NEW_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/pin")
    wait_for_focus(page, "pin")
    steps.record("pin")
    page.keyboard.type(outbox.last_pin())
    page.keyboard.press("Enter")
    page.get_by_role("heading", name=text["done"], level=1).wait_for()
    steps.record("done")

    assert {name: found for name, found in steps.violations.items() if found} == {}
