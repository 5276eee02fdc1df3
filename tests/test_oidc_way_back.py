"""Every detour of a login keeps the way back to the relying party that sent the person: the
pending authorization request is kept server-side, bound to the browser, so that signing in
again returns to the relying party with a code and its original `state`. A step-up explains
itself and is confirmed by the account that is signed in, no other."""

import html
import re
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

from idp.accounts.models import User
from idp.demo.servers import free_port
from idp.oidc.authorization import AUTHORIZATION_PARAMETERS
from idp.oidc.models import PendingAuthorization
from idp.platform.extensions import db
from idp.platform.web import MAX_BROWSER_AUTHORIZATIONS
from tests.conftest import PASSWORD, activate, invite, path_of
from tests.oidc_fixtures import Browser, _csrf
from tests.servers import HOST

DE = {"Accept-Language": "de"}


def follow(browser: Browser, url: str) -> requests.Response:
    """GETs and follows the IdP's redirects, without signing in; stops at a page or at the
    first redirect that leaves the IdP."""
    response = browser.http.get(url, allow_redirects=False, timeout=10, headers=DE)
    while response.is_redirect:
        target = urljoin(response.url, response.headers["Location"])
        if not target.startswith(browser.idp.issuer):
            return response
        response = browser.http.get(target, allow_redirects=False, timeout=10, headers=DE)
    return response


def link(page: requests.Response, text: str) -> str:
    """The address of the link with this text on a page."""
    match = re.search(r'<a [^>]*href="([^"]+)"[^>]*>\s*' + re.escape(text) + r"\s*</a>", page.text)
    assert match, f"no link {text!r} on the page"
    return urljoin(page.url, html.unescape(match.group(1)))


def submit(browser: Browser, page: requests.Response, data: dict, action: str):
    """Posts the form of a page like a browser: its hidden fields, its CSRF token."""
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text)
    hidden = {name: html.unescape(value) for name, value in fields}
    return browser.http.post(
        browser.idp.url(action),
        data={**hidden, "csrf_token": _csrf(page.text), **data},
        allow_redirects=False,
        timeout=10,
        headers=DE,
    )


def password_step(browser: Browser, login_page: requests.Response, **data):
    form = {"username": "anna", "password": PASSWORD, **data}
    response = submit(browser, login_page, form, "/login")
    assert response.status_code == 303, response.text[:300]
    return follow(browser, browser.idp.url("/pin"))


def pin_step(browser: Browser, pin_page: requests.Response, pin: str) -> requests.Response:
    response = submit(browser, pin_page, {"pin": pin}, "/pin")
    if not response.is_redirect:
        return response
    return follow(browser, urljoin(response.url, response.headers["Location"]))


def way_back_of(page: requests.Response) -> str:
    """The address that a login form goes back to."""
    return html.unescape(re.search(r'name="next" value="([^"]+)"', page.text).group(1))


def wrong(pin: str) -> str:
    return "000000" if pin != "000000" else "111111"


def assert_back_at_the_rp_with_a_code(rp, response) -> None:
    params = rp.callback_params(response)
    assert params["state"] == rp.last["state"]
    assert "code" in params
    assert rp.redeem(response.headers["Location"])["id_token"]


@pytest.fixture
def login_page(browser, rp):
    """The login page that the relying party's authorization request led to."""
    page = follow(browser, rp.authorization_url())
    assert urlsplit(page.url).path == "/login" and page.status_code == 200
    return page


# --- The way back ------------------------------------------------------------------------------


def test_sign_in_after_an_ended_pin_step_returns_to_the_rp_with_its_state(
    idp, browser, rp, outbox, login_page, frozen_clock
):
    pin_page = password_step(browser, login_page)
    assert pin_step(browser, pin_page, wrong(outbox.last_pin())).status_code == 422
    # The PIN step ends (it outlived its lifetime); the relying party's request waits longer.
    frozen_clock.advance(seconds=idp.app.config["TRANSACTION_LIFETIME"] + 1)
    ended = pin_step(browser, pin_page, outbox.last_pin())
    assert ended.status_code == 410 and "Bitte beginnen Sie erneut" in ended.text

    again = follow(browser, link(ended, "Zur Anmeldung"))
    pin_page = password_step(browser, again)
    assert_back_at_the_rp_with_a_code(rp, pin_step(browser, pin_page, outbox.last_pin()))


def test_sign_in_from_a_used_link_page_returns_to_the_rp_with_its_state(
    browser, rp, outbox, login_page
):
    used = follow(browser, outbox.last_link())
    assert used.status_code == 410

    # The link page knows no request: the login offers the one that waits, as a choice.
    again = follow(browser, link(follow(browser, link(used, "Zur Anmeldung")), "Weiter zu Portal"))
    pin_page = password_step(browser, again)
    assert_back_at_the_rp_with_a_code(rp, pin_step(browser, pin_page, outbox.last_pin()))


def test_sign_in_from_an_expired_link_page_returns_to_the_rp(
    idp, browser, rp, outbox, frozen_clock
):
    idp.app.test_cli_runner().invoke(args=["users", "reset-password", "anna"])
    reset_link = outbox.last_link()
    frozen_clock.advance(seconds=idp.app.config["INVITATION_LIFETIME"] - 60)
    assert urlsplit(follow(browser, rp.authorization_url()).url).path == "/login"
    frozen_clock.advance(seconds=120)
    expired = follow(browser, reset_link)
    assert expired.status_code == 410

    plain_login = follow(browser, link(expired, "Zur Anmeldung"))
    again = follow(browser, link(plain_login, "Weiter zu Portal"))
    pin_page = password_step(browser, again)
    assert_back_at_the_rp_with_a_code(rp, pin_step(browser, pin_page, outbox.last_pin()))


def test_the_language_switch_after_a_wrong_password_keeps_the_way_back(
    browser, rp, outbox, login_page
):
    failed = submit(browser, login_page, {"username": "anna", "password": "wrong-one"}, "/login")
    assert failed.status_code == 200 and "Die Anmeldung ist fehlgeschlagen" in failed.text
    assert "wrong-one" not in link(failed, "EN")

    english = follow(browser, link(failed, "EN"))
    assert '<html lang="en">' in english.text and urlsplit(english.url).path == "/login"
    # What she typed stays, but the password is hers to type again.
    assert re.search(r'name="username"[^>]* value="anna"', english.text)
    pin_page = password_step(browser, english)
    assert_back_at_the_rp_with_a_code(rp, pin_step(browser, pin_page, outbox.last_pin()))


def next_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["next"][0]


def test_the_language_links_carry_the_page_without_a_stray_question_mark(idp, browser, outbox):
    invite(idp.app, username="bert")
    page = follow(browser, outbox.last_link())
    assert next_of(link(page, "EN")) == urlsplit(page.url).path
    with_query = follow(browser, idp.url("/login?username=bert"))
    assert next_of(link(with_query, "EN")) == "/login?username=bert"


def test_the_language_switch_after_a_password_rule_keeps_the_set_password_page(
    idp, browser, outbox
):
    invite(idp.app, username="bert")
    page = follow(browser, outbox.last_link())
    refused = submit(
        browser, page, {"password": "short", "password_confirm": "short"}, urlsplit(page.url).path
    )
    assert refused.status_code == 422

    english = follow(browser, link(refused, "EN"))
    assert english.status_code == 200 and english.url == page.url
    assert "Set your password" in english.text and 'autocomplete="new-password"' in english.text


def test_the_back_button_after_the_login_leads_to_the_rp(idp, browser, make_rp):
    home = f"http://{HOST}:{free_port()}/"
    rp = make_rp("--post-logout-redirect-uri", home)
    login_page = follow(browser, rp.authorization_url())
    pin_page = password_step(browser, login_page)
    assert_back_at_the_rp_with_a_code(rp, pin_step(browser, pin_page, browser.outbox.last_pin()))

    # The pages before it in the browser's history: the PIN page, then the login page.
    for earlier in (pin_page.url, login_page.url):
        back = follow(browser, earlier)
        assert back.is_redirect and back.headers["Location"] == home, back.text[:300]


def test_the_back_button_leads_to_the_portal_when_the_rp_has_no_landing_page(
    idp, browser, rp, login_page
):
    pin_page = password_step(browser, login_page)
    assert_back_at_the_rp_with_a_code(rp, pin_step(browser, pin_page, browser.outbox.last_pin()))
    back = follow(browser, pin_page.url)
    assert back.headers["Location"] == idp.app.config["PORTAL_URL"]


def test_the_start_page_offers_the_portal(idp, browser):
    browser.visit(idp.url("/login"))
    start = follow(browser, idp.url("/"))
    assert start.status_code == 200 and "Sie sind angemeldet" in start.text
    assert link(start, "Zu e:service") == idp.app.config["PORTAL_URL"]


# --- What the way back must not open -----------------------------------------------------------


def test_a_request_of_another_browser_cannot_be_slipped_into_a_victims_login(
    idp, browser, outbox, rp
):
    """Login CSRF: an attacker's pending request (its resume address) sent to a victim leads
    the victim's login nowhere but to her own start page; no code goes out for it."""
    attacker = Browser(idp, outbox)
    attackers_login = follow(attacker, rp.authorization_url())
    resume = way_back_of(attackers_login)

    assert urlsplit(follow(browser, idp.url(resume)).url).path == "/login"
    victims_login = follow(browser, idp.url("/login?next=" + resume))
    pin_page = password_step(browser, victims_login)
    landed = pin_step(browser, pin_page, outbox.last_pin())
    assert landed.status_code == 200 and urlsplit(landed.url).path == "/account"


def test_a_planted_request_does_not_take_over_a_later_direct_login(idp, browser, make_rp, outbox):
    """A page navigates the signed-out browser to /authorize with its own parameters (at the
    top level, so the flow cookie is set). Her later login at the IdP itself goes to her start
    page: the request that waits is only offered, as a choice in plain sight."""
    others = make_rp(name="Other RP")
    planted = others.authorization_url(state="ATTACKER-STATE")
    assert urlsplit(follow(browser, planted).url).path == "/login"

    page = follow(browser, idp.url("/login"))
    assert 'name="next"' not in page.text
    assert "Eine Anmeldung bei Other RP wartet" in page.text and "Weiter zu Other RP" in page.text
    landed = pin_step(browser, password_step(browser, page), outbox.last_pin())
    assert landed.status_code == 200 and urlsplit(landed.url).path == "/account"


def test_a_pending_request_expires(idp, browser, rp, outbox, login_page, frozen_clock):
    frozen_clock.advance(seconds=idp.app.config["PENDING_AUTHORIZATION_LIFETIME"] + 1)
    again = follow(browser, idp.url("/login"))
    assert 'name="next"' not in again.text
    landed = pin_step(browser, password_step(browser, again), outbox.last_pin())
    assert urlsplit(landed.url).path == "/account"


def test_a_completed_request_gives_no_second_code(idp, browser, rp, login_page):
    resume = way_back_of(login_page)
    pin_page = password_step(browser, login_page)
    assert_back_at_the_rp_with_a_code(rp, pin_step(browser, pin_page, browser.outbox.last_pin()))
    again = follow(browser, idp.url(resume))
    assert "code" not in again.headers["Location"]


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_the_way_back_is_no_open_redirect(idp, browser, target):
    page = follow(browser, idp.url("/login?next=" + requests.utils.quote(target)))
    assert "evil" not in page.text
    assert follow(browser, idp.url("/language/en?next=" + requests.utils.quote(target))).url == (
        idp.url("/login")
    )


# --- Step-up ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "explanation"),
    [
        ({"max_age": "0"}, "Bitte bestätigen Sie Ihre Identität erneut"),
        ({"prompt": "login"}, "Bitte bestätigen Sie Ihre Identität erneut"),
        ({"max_age": "0", "purpose": "booking"}, "Zur Bestätigung Ihrer Buchung"),
        ({"prompt": "login", "purpose": "<b>anything else</b>"}, "Bitte bestätigen Sie"),
    ],
)
def test_a_step_up_explains_itself_with_the_username_prefilled(
    browser, rp, outbox, params, explanation
):
    rp.sign_in(browser)
    page = follow(browser, rp.authorization_url(**params))
    assert explanation in page.text and "anything else" not in page.text
    assert re.search(r'name="username"[^>]*value="anna"[^>]*readonly', page.text)

    pin_page = password_step(browser, page)
    sms = outbox.sms()[0]["text"]
    assert "Ihre PIN zur Bestätigung einer Aktion in e:service" in sms and "Anmelde" not in sms
    assert_back_at_the_rp_with_a_code(rp, pin_step(browser, pin_page, outbox.last_pin()))


def test_a_login_needs_no_explanation(browser, rp, login_page):
    assert "Anmelden bei e:service" in login_page.text
    assert "bestätigen Sie" not in login_page.text and "readonly" not in login_page.text


@pytest.fixture
def bob(idp, outbox):
    activate(idp.app, idp.app.test_client(), outbox, username="bob")
    return "bob"


def test_a_step_up_is_refused_for_another_account(idp, browser, rp, outbox, bob):
    rp.sign_in(browser)
    page = follow(browser, rp.authorization_url(max_age="0"))
    sms_before = len(outbox.sms())

    refused = submit(browser, page, {"username": "bob", "password": PASSWORD}, "/login")
    assert refused.status_code == 422
    assert "Bitte bestätigen Sie mit dem angemeldeten Konto: anna" in refused.text
    assert len(outbox.sms()) == sms_before
    with idp.app.app_context():
        assert db.session.scalar(db.select(User).filter_by(username="bob")).failed_passwords == 0


def test_a_step_up_cannot_be_completed_by_another_account_around_the_form(
    idp, browser, rp, outbox, bob
):
    """Without the form's way back, bob signs in on his own; the step-up still waits for anna:
    the relying party gets no code for bob."""
    rp.sign_in(browser)
    page = follow(browser, rp.authorization_url(max_age="0"))
    resume = way_back_of(page)
    form = {"username": "bob", "password": PASSWORD, "next": ""}
    response = submit(browser, page, form, "/login")
    assert response.status_code == 303
    pin_step(browser, follow(browser, idp.url("/pin")), outbox.last_pin())

    again = follow(browser, idp.url(resume))
    assert urlsplit(again.url).path == "/login"
    assert re.search(r'name="username"[^>]*value="anna"[^>]*readonly', again.text)


def _push_out_of_the_flow_cookie(browser, make_rp):
    filler = make_rp(name="Filler")
    for _ in range(MAX_BROWSER_AUTHORIZATIONS):
        follow(browser, filler.authorization_url(prompt="login"))


def _delete_the_cookies(browser, make_rp):
    browser.http.cookies.clear()


@pytest.mark.parametrize("lose_the_handle", [_push_out_of_the_flow_cookie, _delete_the_cookies])
def test_a_step_up_stays_bound_when_its_handle_is_lost(
    idp, browser, make_rp, outbox, bob, lose_the_handle
):
    """bob, at anna's browser, signs in around her step-up's form, loses its handle and
    replays the relying party's request: it is still anna's to confirm."""
    rp = make_rp()
    rp.sign_in(browser)
    step_up_url = rp.authorization_url(max_age="0", purpose="booking")
    page = follow(browser, step_up_url)
    around_the_form = {"username": "bob", "password": PASSWORD, "next": ""}
    assert submit(browser, page, around_the_form, "/login").status_code == 303
    pin_step(browser, follow(browser, idp.url("/pin")), outbox.last_pin())
    lose_the_handle(browser, make_rp)

    page = follow(browser, step_up_url)
    assert re.search(r'name="username"[^>]*value="anna"[^>]*readonly', page.text)
    refused = submit(browser, page, {"username": "bob", "password": PASSWORD}, "/login")
    assert refused.status_code == 422
    assert submit(browser, refused, around_the_form, "/login").status_code == 303
    pin_step(browser, follow(browser, idp.url("/pin")), outbox.last_pin())
    again = follow(browser, step_up_url)
    assert urlsplit(again.url).path == "/login", "bob confirmed anna's step-up"


@pytest.mark.parametrize("disguise", [("/resume/", "/resum%65/"), ("/authorize/", "/%61uthorize/")])
def test_a_percent_encoded_way_back_is_checked_as_the_step_up_it_leads_to(
    idp, browser, rp, outbox, bob, disguise
):
    """The browser decodes the address after the PIN: the form's check reads it decoded too."""
    rp.sign_in(browser)
    page = follow(browser, rp.authorization_url(max_age="0"))
    encoded = way_back_of(page).replace(*disguise)
    sms_before = len(outbox.sms())

    form = {"username": "bob", "password": PASSWORD, "next": encoded}
    refused = submit(browser, page, form, "/login")
    assert refused.status_code == 422, "form check bypassed"
    assert "Bitte bestätigen Sie mit dem angemeldeten Konto: anna" in refused.text
    assert len(outbox.sms()) == sms_before


def test_a_way_back_that_the_url_map_would_redirect_leads_nowhere(idp, browser, rp, outbox, bob):
    """Merged slashes would redirect to the step-up after the PIN, past the form's check: such
    a login goes to the start page instead."""
    rp.sign_in(browser)
    page = follow(browser, rp.authorization_url(max_age="0"))
    disguised = way_back_of(page).replace("/authorize/", "/authorize//")

    form = {"username": "bob", "password": PASSWORD, "next": disguised}
    assert submit(browser, page, form, "/login").status_code == 303
    landed = pin_step(browser, follow(browser, idp.url("/pin")), outbox.last_pin())
    assert landed.status_code == 200 and urlsplit(landed.url).path == "/account"


# --- Cancel -------------------------------------------------------------------------------------


def cancel_form(page: requests.Response) -> str:
    """The page's cancel form (its HTML), if it has one; else ""."""
    match = re.search(r'<form method="post" action="/authorize/cancel".*?</form>', page.text, re.S)
    return match.group(0) if match else ""


def cancel(browser: Browser, page: requests.Response, **data) -> requests.Response:
    """Presses "Abbrechen": posts the cancel form with its own fields."""
    form = cancel_form(page)
    assert form, "no cancel on the page"
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
    return browser.http.post(
        browser.idp.url("/authorize/cancel"),
        data={name: html.unescape(value) for name, value in fields.items()} | data,
        allow_redirects=False,
        timeout=10,
        headers=DE,
    )


def assert_back_at_the_rp_denied(rp, response) -> None:
    """OIDC Core 3.1.2.6 with RFC 9207: access_denied, the request's state, our issuer."""
    assert response.status_code == 303
    params = rp.callback_params(response)
    assert params == {"error": "access_denied", "state": rp.last["state"], "iss": rp.idp.issuer}


def test_the_login_page_of_a_waiting_request_cancels_back_to_the_rp(idp, browser, rp, login_page):
    assert "Abbrechen" in cancel_form(login_page)
    assert_back_at_the_rp_denied(rp, cancel(browser, login_page))

    # Used once: the same cancel again, or the way back, gives the relying party nothing.
    again = cancel(browser, login_page)
    assert again.status_code == 303 and again.headers["Location"] == "/login"
    resumed = follow(browser, idp.url(way_back_of(login_page)))
    assert urlsplit(resumed.url).path == "/login" and cancel_form(resumed) == ""


def test_the_booking_step_up_cancels_from_its_pin_page_and_ends_the_step(idp, browser, rp, outbox):
    rp.sign_in(browser)
    booking = follow(browser, rp.authorization_url(max_age="0", purpose="booking"))
    assert "Buchung bestätigen" in booking.text and cancel_form(booking)
    pin_page = password_step(browser, booking)
    assert_back_at_the_rp_denied(rp, cancel(browser, pin_page))

    # The PIN step of the cancelled request is over: its page leads the signed-in browser to
    # the account page, and its PIN signs nobody in.
    after = follow(browser, idp.url("/pin"))
    assert urlsplit(after.url).path == "/account" and 'name="pin"' not in after.text
    fresh_form = follow(browser, idp.url("/login"))
    assert submit(browser, fresh_form, {"pin": outbox.last_pin()}, "/pin").status_code == 410


def test_a_plain_login_and_a_login_without_a_waiting_request_offer_no_cancel(idp, browser):
    assert cancel_form(follow(browser, idp.url("/login"))) == ""
    submit(
        browser,
        follow(browser, idp.url("/login")),
        {"username": "anna", "password": PASSWORD},
        "/login",
    )
    assert cancel_form(follow(browser, idp.url("/pin"))) == ""


def test_cancel_needs_the_csrf_token_and_a_post(idp, browser, rp, login_page):
    resume = way_back_of(login_page)
    forged = browser.http.post(
        idp.url("/authorize/cancel"), data={"next": resume}, allow_redirects=False, timeout=10
    )
    assert forged.status_code == 400
    by_get = browser.http.get(
        idp.url("/authorize/cancel?" + urlencode({"next": resume})), allow_redirects=False
    )
    assert by_get.status_code == 405
    # The request still waits: signing in returns to the relying party with a code.
    pin_page = password_step(browser, login_page)
    assert_back_at_the_rp_with_a_code(rp, pin_step(browser, pin_page, browser.outbox.last_pin()))


def test_another_browser_cannot_cancel_someone_elses_request(idp, browser, rp, login_page):
    """The handle is bound to the victim's flow cookie: knowing it (from a log, a shoulder)
    cancels nothing, and the attacker's browser learns no state."""
    attacker = Browser(idp, browser.outbox)
    own_page = follow(attacker, idp.url("/login"))
    answer = submit(attacker, own_page, {"next": way_back_of(login_page)}, "/authorize/cancel")
    assert answer.status_code == 303 and answer.headers["Location"] == "/login"

    pin_page = password_step(browser, login_page)
    assert_back_at_the_rp_with_a_code(rp, pin_step(browser, pin_page, browser.outbox.last_pin()))


def test_a_logout_forgets_the_requests_that_wait_for_a_login(idp, browser, rp, login_page):
    # Signed in on her own, the relying party's request still waiting; then signed out.
    submit(browser, login_page, {"username": "anna", "password": PASSWORD, "next": ""}, "/login")
    pin_step(browser, follow(browser, idp.url("/pin")), browser.outbox.last_pin())
    start = follow(browser, idp.url("/"))
    assert "Sie sind angemeldet" in start.text
    submit(browser, start, {}, "/logout")
    assert 'name="next"' not in follow(browser, idp.url("/login")).text


def test_of_parallel_resumes_one_gets_the_code(idp, browser, rp):
    """A prompt=login request resumed by several requests at once after the login: one code."""
    from concurrent.futures import ThreadPoolExecutor

    rp.sign_in(browser)
    login = follow(browser, rp.authorization_url(prompt="login"))
    pin_page = password_step(browser, login)
    done = submit(browser, pin_page, {"pin": browser.outbox.last_pin()}, "/pin")
    resume = browser.http.get(idp.url(done.headers["Location"]), allow_redirects=False)
    authorization = idp.url(resume.headers["Location"])
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(
            pool.map(
                lambda _: browser.http.get(authorization, allow_redirects=False, timeout=10),
                range(10),
            )
        )
    codes = [a for a in answers if a.headers["Location"].startswith(rp.redirect_uri)]
    assert len(codes) == 1, [a.headers["Location"][:40] for a in answers]


def test_expired_requests_are_cleared_as_new_ones_come(idp, rp, outbox, frozen_clock):
    """Anybody can make /authorize ask for a login: the rows do not pile up."""

    def count() -> int:
        with idp.app.app_context():
            return db.session.scalar(db.select(db.func.count(PendingAuthorization.id)))

    for _ in range(3):
        follow(Browser(idp, outbox), rp.authorization_url())
    assert count() == 3
    frozen_clock.advance(seconds=idp.app.config["PENDING_AUTHORIZATION_LIFETIME"] + 1)
    follow(Browser(idp, outbox), rp.authorization_url())
    assert count() == 1


# --- What /authorize keeps -----------------------------------------------------------------------


def _kept_parameters(app) -> list[list[str]]:
    with app.app_context():
        return [
            pair
            for row in db.session.scalars(db.select(PendingAuthorization))
            for pair in row.params
        ]


def test_only_the_parameters_of_the_request_are_kept_while_it_waits(idp, browser, rp, outbox):
    """Other parameters are ignored, not stored; the step-up resumed with what was kept is still
    the very request that was made (its fingerprint), and its login completes it."""
    rp.sign_in(browser)
    page = follow(browser, rp.authorization_url(max_age="0") + "&junk=" + "A" * 5000 + "&claims=x")
    kept = {name for name, _ in _kept_parameters(idp.app)}
    assert kept <= set(AUTHORIZATION_PARAMETERS) and {"max_age", "state"} <= kept

    pin_page = password_step(browser, page)
    assert_back_at_the_rp_with_a_code(rp, pin_step(browser, pin_page, outbox.last_pin()))


def test_large_posts_to_authorize_store_small_rows(idp, rp, app):
    client = app.test_client()
    for _ in range(20):
        client.delete_cookie("idp_flow")
        url = urlsplit(rp.authorization_url())
        data = {name: values[0] for name, values in parse_qs(url.query).items()}
        assert client.post(url.path, data={**data, "junk": "A" * 60_000}).status_code == 303
    assert len(str(_kept_parameters(app))) < 20 * 1000


@pytest.mark.parametrize(
    "extra",
    [{"nonce": "n" * 513}, {"login_hint": "x" * 257}, {"max_age": "9" * 5000}, {"nonce": "again"}],
)
def test_an_over_long_or_repeated_parameter_is_refused_as_invalid_request(idp, browser, rp, extra):
    response = browser.http.get(
        rp.authorization_url() + "&" + urlencode(extra), allow_redirects=False, timeout=10
    )
    params = rp.callback_params(response)
    assert params["error"] == "invalid_request" and params["state"] == rp.last["state"]
    assert _kept_parameters(idp.app) == []


def test_an_over_long_state_is_refused_and_not_sent_back(idp, browser, rp):
    response = browser.http.get(
        rp.authorization_url(state="s" * 2049), allow_redirects=False, timeout=10
    )
    params = rp.callback_params(response)
    assert params["error"] == "invalid_request" and "state" not in params
    assert _kept_parameters(idp.app) == []


def test_requests_kept_for_a_login_are_limited_per_address_and_network(idp, rp, make_app):
    app = make_app(
        PENDING_AUTHORIZATIONS_PER_IP="3 per hour", PENDING_AUTHORIZATIONS_PER_NETWORK="5 per hour"
    )

    def ask(address: str):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        return client.get(path_of(rp.authorization_url()), headers=DE)

    assert [ask("198.51.100.7").status_code for _ in range(4)] == [302, 302, 302, 429]
    refused = ask("198.51.100.7")
    assert int(refused.headers["Retry-After"]) > 0 and "Zu viele Versuche" in refused.text
    # Two more from the same /24, then the network has used up its own limit.
    assert [ask("198.51.100.8").status_code for _ in range(3)] == [302, 302, 429]
    assert ask("203.0.113.1").status_code == 302
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count(PendingAuthorization.id))) == 6
