"""The sessions page in a real browser, German and English: signed in here and on a phone, she
ends the phone's session, then every session; each page checked with axe-core, and the
README's screenshots (docs/screenshots/sessions-de.png, sessions-en.png) taken."""

import pytest

from tests.browser.conftest import ROOT, SCREENSHOTS, Steps, screenshot
from tests.conftest import PASSWORD, activate, login

PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
TEXTS = {
    "de": {
        "next": "Weiter",
        "confirm": "Bestätigen",
        "title": "Ihre Sitzungen",
        "wrong": "Anmeldung fehlgeschlagen: falsches Passwort",
        "end": "Sitzung beenden",
        "ended": "Die Sitzung ist beendet",
        "end_all": "Überall abmelden",
        "signed_out": "Sie sind abgemeldet",
    },
    "en": {
        "next": "Next",
        "confirm": "Confirm",
        "title": "Your sessions",
        "wrong": "Sign-in failed: wrong password",
        "end": "End session",
        "ended": "The session has ended",
        "end_all": "Sign out everywhere",
        "signed_out": "You are signed out",
    },
}


@pytest.mark.parametrize("language", ["de", "en"])
def test_sessions_page_in_the_browser(browser, live_idp, outbox, language):
    app, base = live_idp
    text = TEXTS[language]
    activate(app, app.test_client(), outbox)
    phone = app.test_client()
    phone.environ_base.update({"REMOTE_ADDR": "2001:db8:5:6::7", "HTTP_USER_AGENT": PHONE})
    login(phone, outbox)

    # The browser's own name, as a person's Chromium sends it (not the headless one's).
    user_agent = browser.new_page().evaluate("navigator.userAgent")
    context = browser.new_context(
        locale=language,
        extra_http_headers={"Accept-Language": language},
        user_agent=user_agent.replace("HeadlessChrome", "Chrome"),
        bypass_csp=True,  # our CSP rightly refuses the injected axe-core script
    )
    page = context.new_page()
    steps = Steps(page, SCREENSHOTS / language / "sessions")

    page.goto(f"{base}/account/sessions")
    page.wait_for_url(lambda url: "/login?next=" in url)
    page.fill("#username", "anna")
    page.fill("#password", "not her password")
    page.get_by_role("button", name=text["next"]).click()
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name=text["next"]).click()
    page.wait_for_url("**/pin")
    page.fill("#pin", outbox.last_pin())
    page.get_by_role("button", name=text["confirm"], exact=True).click()
    page.wait_for_url(f"{base}/account/sessions")
    page.get_by_role("heading", name=text["title"], level=1).wait_for()
    assert page.get_by_text(text["wrong"]).count() == 1
    assert page.locator("li.session").count() == 2
    screenshot(page, ROOT / "docs" / "screenshots" / f"sessions-{language}.png")
    steps.record("sessions")

    page.locator("li.session:not(.current)").get_by_role("button", name=text["end"]).click()
    page.get_by_role("status").filter(has_text=text["ended"]).wait_for()
    assert page.locator("li.session").count() == 1
    steps.record("session-ended")
    assert phone.get("/").status_code == 302  # the phone is signed out

    page.get_by_role("button", name=text["end_all"]).click()
    page.get_by_role("heading", name=text["signed_out"]).wait_for()
    steps.record("signed-out-everywhere")
    page.goto(f"{base}/account/sessions")
    page.wait_for_url(lambda url: "/login?next=" in url)

    assert {name: found for name, found in steps.violations.items() if found} == {}
