"""Real browser tests: Playwright driving Debian's Chromium against live servers on 127.0.0.1.
Screenshots of every step go to test-artifacts/screenshots/<language>/."""

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright

from idp.demo.servers import BackgroundServer, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# Without these, Chromium keeps trying to reach Google's services from a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def live_idp(make_app):
    """The identity provider served on a free port, with the development outbox page."""
    port = free_port()
    app = make_app(ISSUER=f"http://127.0.0.1:{port}", DEV_PAGES=True)
    server = BackgroundServer(app, port).start()
    yield app, server.url
    server.stop()


def new_page(browser, language: str) -> Page:
    # bypass_csp: our CSP rightly refuses the injected axe-core script.
    context = browser.new_context(
        locale=language, extra_http_headers={"Accept-Language": language}, bypass_csp=True
    )
    return context.new_page()


def screenshot(page: Page, path: Path) -> None:
    """The whole page as a PNG. Headless Chromium now and then answers "Unable to capture
    screenshot" for a page that has just been navigated to: once loaded, a second try takes it."""
    page.wait_for_load_state("load")
    try:
        page.screenshot(path=str(path), full_page=True)
    except PlaywrightError:
        page.wait_for_timeout(500)
        page.screenshot(path=str(path), full_page=True)


class Steps:
    """Screenshots and an accessibility check (axe-core) of every page the journey shows."""

    def __init__(self, page: Page, folder: Path):
        self.page = page
        self.folder = folder
        self.count = 0
        self.violations: dict[str, list] = {}
        folder.mkdir(parents=True, exist_ok=True)

    def record(self, name: str) -> None:
        self.count += 1
        screenshot(self.page, self.folder / f"{self.count:02d}-{name}.png")
        self.page.add_script_tag(path=str(AXE))
        result = self.page.evaluate("async () => JSON.stringify(await axe.run(document))")
        serious = [
            {"id": v["id"], "impact": v["impact"], "help": v["help"]}
            for v in json.loads(result)["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        self.violations[name] = serious


def newest_link(page: Page, outbox_url: str, pattern: str) -> str:
    page.goto(outbox_url)
    link = page.locator("pre a", has_text=re.compile(pattern)).first
    return link.get_attribute("href")


def newest_pin(page: Page, outbox_url: str) -> str:
    page.goto(outbox_url)
    text = page.locator("article", has_text="SMS").first.inner_text()
    return re.search(r"#(\d{6})", text).group(1)


def tab_to(page: Page, text: str) -> None:
    """Presses Tab until the element with this text has the focus."""
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == text:
            return
    raise AssertionError(f"{text!r} cannot be reached with the Tab key")


def wait_for_focus(page: Page, name: str) -> None:
    # Once the browser applied autofocus, which a busy machine may do after the load event.
    page.wait_for_function(f"document.activeElement && document.activeElement.name === '{name}'")


def add_virtual_authenticator(page):
    """Chromium's virtual authenticator on the page: a platform authenticator (CTAP2,
    internal) with resident keys and user verification, which answers at once."""
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
