"""German first, English by Accept-Language: every string of the code and the templates is in
the German catalog and translated; the SMS text fits one GSM-7 message and ends with the WebOTP
line."""

import base64
import hashlib
import re
from pathlib import Path

import pytest
import requests
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from idp.accounts.models import User
from idp.authn.factors.sms import pins
from tests.conftest import PASSWORD, activate, invite, path_of, post_form

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "idp" / "translations" / "de" / "LC_MESSAGES" / "messages.po"
KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "_l": None,
    "lazy_gettext": None,
    "lazy_ngettext": (1, 2),
    "pgettext": ((1, "c"), 2),
}


def german_catalog():
    with CATALOG.open("rb") as po:
        return read_po(po, locale="de")


def extracted_msgids() -> dict[str, str]:
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        found.setdefault(msgid, f"{filename}:{lineno}")
    return found


def test_every_catalog_entry_has_a_german_translation():
    catalog = german_catalog()
    missing = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(s.strip() for s in strings):
            missing.append(message.id)
    assert missing == []


def test_every_string_in_code_and_templates_is_in_the_catalog():
    catalog = german_catalog()
    known = {m.id[0] if isinstance(m.id, tuple) else m.id for m in catalog if m.id}
    found = extracted_msgids()
    assert len(found) > 50  # the extraction really ran over code and templates
    absent = {msgid: where for msgid, where in found.items() if msgid not in known}
    assert absent == {}


def test_placeholders_survive_translation():
    for message in german_catalog():
        if not message.id or isinstance(message.id, tuple):
            continue
        assert set(re.findall(r"%\(\w+\)[sd]", message.id)) == set(
            re.findall(r"%\(\w+\)[sd]", message.string)
        ), message.id


@pytest.mark.parametrize(
    ("header", "lang", "title"),
    [
        (None, "de", "Anmelden"),
        ("en", "en", "Sign in"),
        ("en-GB,en;q=0.9", "en", "Sign in"),
        ("fr-FR,fr;q=0.9", "de", "Anmelden"),
        ("de-DE,de;q=0.9,en;q=0.8", "de", "Anmelden"),
    ],
)
def test_language_of_the_pages(client, header, lang, title):
    headers = {"Accept-Language": header} if header else {}
    page = client.get("/login", headers=headers)
    assert f'<html lang="{lang}">' in page.text
    assert title in page.text


def test_language_switch_beats_the_browser(client):
    client.get("/language/en?next=/login")
    page = client.get("/login", headers={"Accept-Language": "de"})
    assert '<html lang="en">' in page.text


def test_pages_of_the_journey_in_english(app, client, outbox):
    invite(app)
    link = path_of(outbox.last_link())
    english = {"Accept-Language": "en"}
    assert "Set your password" in client.get(link, headers=english).text
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    assert "Confirm with SMS PIN" in client.get("/pin", headers=english).text


@pytest.mark.parametrize("locale", ["de", "en"])
@pytest.mark.parametrize("purpose", ["activation", "login", "step_up"])
@pytest.mark.parametrize("asked_on_a_page", [True, False])
def test_sms_text_is_one_gsm7_message_with_the_webotp_line(
    make_app, locale, purpose, asked_on_a_page
):
    app = make_app(ISSUER="https://login.example.com", PRODUCT_NAME="e:service")
    if asked_on_a_page:
        user = User(username="anna", email="anna@example.com", phone="+4915112345678")
        context = app.test_request_context(headers={"Accept-Language": locale})
    else:
        user = User(
            username="anna", email="anna@example.com", phone="+4915112345678", locale=locale
        )
        context = app.app_context()
    with context:
        text = pins.sms_text(user, "042917", purpose)
    assert pins.is_gsm7(text), [c for c in text if c not in pins.GSM7_BASIC]
    assert len(text) < 160
    assert "042917" in text.splitlines()[0]
    assert text.splitlines()[-1] == "@login.example.com #042917"


def test_sms_of_the_journey_is_gsm7(app, client, outbox):
    activate(app, client, outbox)
    for sms in outbox.sms():
        text = sms["text"]
        assert pins.is_gsm7(text) and len(text) < 160
        assert re.fullmatch(r"@localhost #\d{6}", text.splitlines()[-1])


def test_the_pin_sms_speaks_the_language_of_the_page_it_was_asked_on(
    app, client, outbox, frozen_clock
):
    """The page says "we have sent a PIN": the SMS must be readable by the same person, in
    the language she just switched the page to (her account's language is still German)."""
    invite(app)
    link = path_of(outbox.last_link())
    client.get(f"/language/en?next={link}")
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    assert outbox.sms()[0]["text"].startswith("Your PIN to confirm your new e:service password")
    post_form(client, "/pin", {"pin": outbox.last_pin()})

    for language, text in (
        ("en", "Your e:service sign-in PIN"),
        ("de", "Ihre e:service Anmelde-PIN"),
    ):
        frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"])
        browser = app.test_client()
        credentials = {"username": "anna", "password": PASSWORD}
        post_form(browser, "/login", credentials, headers={"Accept-Language": language})
        assert outbox.sms()[0]["text"].startswith(text)


# --- ui_locales at /authorize ------------------------------------------------------------------


GERMAN = {"Accept-Language": "de"}


def authorize_params(client_id: str, redirect_uri: str, **extra) -> dict:
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid",
        "state": "st",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        **extra,
    }


def page_language(response) -> str:
    return re.search(r'<html lang="([a-z]+)"', response.text).group(1)


def login_page_after_authorize(idp, rp, **extra):
    http = requests.Session()
    response = http.get(
        idp.url("/authorize"),
        params=authorize_params(rp.client_id, rp.redirect_uri, **extra),
        headers=GERMAN,
        allow_redirects=True,
        timeout=10,
    )
    assert response.url.startswith(idp.url("/login")), response.url
    return http, response


def test_ui_locales_sets_the_language_of_that_login(idp, rp, user):
    http, page = login_page_after_authorize(idp, rp, ui_locales="fr-CA en-US de")
    assert page_language(page) == "en"
    # The PIN page and any other page of the same browser session follow.
    assert page_language(http.get(idp.url("/login"), headers=GERMAN, timeout=10)) == "en"


def test_without_ui_locales_the_browser_decides(idp, rp, user):
    _, page = login_page_after_authorize(idp, rp)
    assert page_language(page) == "de"
    _, page = login_page_after_authorize(idp, rp, ui_locales="fr it")
    assert page_language(page) == "de"


def test_the_persons_own_choice_outranks_ui_locales(idp, rp, user):
    http, page = login_page_after_authorize(idp, rp, ui_locales="en")
    assert page_language(page) == "en"
    http.get(idp.url("/language/de?next=/login"), timeout=10)
    assert page_language(http.get(idp.url("/login"), headers=GERMAN, timeout=10)) == "de"
