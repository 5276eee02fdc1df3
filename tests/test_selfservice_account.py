"""The account page (/account) and changing the password there (/account/password): who is
signed in, the current password counted like a login's, the new one under the usual rules, an
SMS PIN before anything changes, then the other sessions and their tokens end (the relying
parties are told), this one stays with a new cookie, and a notification mail goes out."""

import re
import threading

import pytest
import requests

from idp.accounts import users
from idp.accounts.models import User
from idp.accounts.passwords import hashing
from idp.audit.models import AuditEvent
from idp.authn.models import AuthTransaction, Session, TransactionState
from idp.platform import clock
from idp.platform.extensions import db
from tests.conftest import PASSWORD, activate, csrf_token, invite, login, post_form
from tests.oidc_fixtures import *  # noqa: F403 (fixtures)
from tests.oidc_fixtures import Browser

PAGE = "/account/password"
NEW = "a brand new passphrase, long enough"
EN = {"Accept-Language": "en"}


def signed_in(app, outbox, *, username="anna", ip="203.0.113.7"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    login(client, outbox, username=username)
    return client


def change(client, current=PASSWORD, new=NEW, confirm=None, **headers):
    return post_form(
        client,
        PAGE,
        {
            "current_password": current,
            "password": new,
            "password_confirm": new if confirm is None else confirm,
        },
        headers=headers,
    )


def confirm_pin(client, pin: str, token_from: str = "/pin"):
    """Sends the PIN with the CSRF token of a page (a PIN page that ended carries none)."""
    return post_form(client, "/pin", {"pin": pin}, page_url=token_from)


def account(app, username="anna") -> User:
    with app.app_context():
        user = users.find_by_username(username)
        db.session.expunge(user)
        return user


def password_is(app, password: str, username="anna") -> bool:
    with app.app_context():
        return hashing().verify(users.find_by_username(username).password_hash, password)


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == name)).all()
        db.session.expunge_all()
        return rows


# --- The account page -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/account", PAGE])
def test_signed_out_the_login_comes_first_and_leads_back(app, client, outbox, path):
    activate(app, client, outbox)
    visitor = app.test_client()
    response = visitor.get(path)
    assert response.status_code in (302, 303)
    assert response.headers["Location"] == f"/login?next={path}"
    token = csrf_token(visitor.get("/login").text)
    refused = visitor.post(PAGE, data={"csrf_token": token, "current_password": PASSWORD})
    assert refused.headers["Location"] == f"/login?next={PAGE}"
    assert login(visitor, outbox, next_path=path).headers["Location"] == path


def test_a_login_without_a_way_back_lands_on_the_account_page(app, client, outbox):
    activate(app, client, outbox)
    assert login(app.test_client(), outbox).headers["Location"] == "/account"


def test_the_account_page_shows_who_is_signed_in_and_leads_on(app, client, outbox):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    page = browser.get("/account", headers=EN)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    text = page.text
    assert "Anna Admin" in text and "anna@example.com" in text and ">anna<" in text
    assert "+49\u00a0…\u00a078" in text  # masked
    assert "+4915112345678" not in text and "15112345678" not in text
    for path in ("/account/password", "/account/phone", "/account/sessions"):
        assert f'href="{path}"' in text
    assert 'href="/account/passkeys"' not in text  # the passkey factor is off
    assert f'href="{app.config["PORTAL_URL"]}"' in text
    assert "<script>" not in text.replace(' src="', "")  # no inline script
    # The start page is the same page.
    start = browser.get("/", headers=EN).text
    assert start.replace('next=/"', 'next=/account"') == text
    german = browser.get("/account", headers={"Accept-Language": "de"}).text
    assert "Passwort ändern" in german and "Mobilnummer" in german


def test_the_passkeys_page_is_linked_when_passkeys_are_allowed(make_app, outbox):
    app = make_app(SECOND_FACTORS=["sms", "passkey"])
    activate(app, app.test_client(), outbox)
    assert 'href="/account/passkeys"' in signed_in(app, outbox).get("/account").text


def test_the_demo_portal_links_the_account_page(app):
    from idp.demo.relying_party import create_relying_party

    portal = create_relying_party(
        "eservice",
        issuer="http://127.0.0.1:5000",
        base_url="http://127.0.0.1:5001",
        client_id="x",
        client_secret="y",
        links={"account": "http://127.0.0.1:5000/account"},
    )
    with portal.test_client() as browser:
        with browser.session_transaction() as session:
            session["claims"] = {"sub": "s", "sid": "sid", "name": "Anna Admin"}
        page = browser.get("/", headers={"Accept-Language": "de"}).text
    assert '<a href="http://127.0.0.1:5000/account">Mein Zugang</a>' in page


# --- The current password ---------------------------------------------------------------------


def test_a_wrong_current_password_is_counted_and_locks_the_form(app, client, outbox):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    sms_before = len(outbox.sms())
    threshold = app.config["LOCKOUT_THRESHOLD"]
    for _ in range(threshold - 1):
        response = change(browser, current="not my password at all", **EN)
        assert response.status_code == 422
        assert "Your current password is not correct." in response.text
    locked = change(browser, current="not my password at all", **EN)
    assert locked.status_code == 422  # this one was checked, and locked the form
    # From here even the right password is not checked: the same network as her session's
    # (her home network) spares nobody here.
    refused = change(browser, **EN)
    assert refused.status_code == 429
    assert "cannot be checked until" in refused.text
    assert len(outbox.sms()) == sms_before  # no PIN went out
    assert password_is(app, PASSWORD)
    user = account(app)
    assert user.failed_passwords == threshold
    assert user.locked_until is not None
    failed = events(app, "password.change_failed")
    assert [e.details["reason"] for e in failed] == ["password"] * threshold + ["locked"]
    # The sessions page names them.
    assert "Password change refused" in browser.get("/account/sessions", headers=EN).text


def test_a_right_current_password_gives_the_attempt_back(app, client, outbox):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    assert change(browser, current="not my password at all").status_code == 422
    assert account(app).failed_passwords == 1
    assert change(browser).status_code == 303
    assert account(app).failed_passwords == 0


def test_parallel_guesses_get_no_extra_tries(idp, user, outbox, monkeypatch):
    browser = Browser(idp, outbox)
    browser.visit(idp.url("/account"))
    page = browser.http.get(idp.url(PAGE), timeout=10).text
    token = csrf_token(page)
    checked = []
    hashing_class = type(idp.app.extensions["idp.passwords"])
    real_verify = hashing_class.verify

    def counting_verify(self, password_hash, password):
        checked.append(password)
        return real_verify(self, password_hash, password)

    monkeypatch.setattr(hashing_class, "verify", counting_verify)
    start = threading.Barrier(12)
    statuses = []

    def guess(n: int) -> None:
        http = requests.Session()
        http.cookies.update(browser.http.cookies)
        start.wait()
        response = http.post(
            idp.url(PAGE),
            data={
                "csrf_token": token,
                "current_password": f"guess number {n}",
                "password": NEW,
                "password_confirm": NEW,
            },
            allow_redirects=False,
            timeout=30,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    threshold = idp.app.config["LOCKOUT_THRESHOLD"]
    assert len(checked) == threshold, statuses
    assert sorted(statuses) == [422] * threshold + [429] * (12 - threshold)


# --- The new password -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "confirm", "says"),
    [
        ("short", "short", "at least 12 characters"),
        (NEW, NEW + "x", "do not match"),
        ("anna is my whole passphrase", None, "must not contain your username"),
        ("password1234", None, "leaked passwords"),
        ("x" * 2000, None, "too long"),
        (PASSWORD, None, "must differ from your current one"),
    ],
)
def test_the_new_password_follows_the_rules(app, client, outbox, new, confirm, says):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    sms_before = len(outbox.sms())
    response = change(browser, new=new, confirm=confirm, **EN)
    assert response.status_code == 422
    assert says in response.text
    assert 'autocomplete="current-password"' in response.text
    assert len(outbox.sms()) == sms_before
    assert password_is(app, PASSWORD)


def test_the_form_uses_the_fixed_autocomplete_tokens_and_no_script(app, client, outbox):
    activate(app, client, outbox)
    response = signed_in(app, outbox).get(PAGE)
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    page = response.text
    assert page.count('autocomplete="current-password"') == 1
    assert page.count('autocomplete="new-password"') == 2
    assert "<script>" not in page


# --- The PIN, and what it completes -----------------------------------------------------------


def test_nothing_changes_before_the_pin(app, client, outbox):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    other = signed_in(app, outbox, ip="198.51.100.9")
    response = change(browser)
    assert response.status_code == 303 and response.headers["Location"] == "/pin"
    pin = outbox.last_pin()
    assert "Passwort" in outbox.sms()[0]["text"]  # its SMS says what it confirms
    assert password_is(app, PASSWORD)
    # The PIN page wants the PIN, a wrong one changes nothing, the other session goes on.
    assert confirm_pin(browser, "000000" if pin != "000000" else "111111").status_code == 422
    assert password_is(app, PASSWORD)
    assert other.get("/account").status_code == 200
    assert events(app, "password.changed") == []


def test_the_pin_changes_the_password_and_ends_the_other_sessions(
    app, client, outbox, frozen_clock
):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    other = signed_in(app, outbox, ip="198.51.100.9")
    # A login of someone else with the old password, at its PIN step.
    halfway = app.test_client()
    post_form(halfway, "/login", {"username": "anna", "password": PASSWORD})
    halfway_pin = outbox.last_pin()
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
    cookie = app.config["AUTH_COOKIE_NAME"]
    old_cookie = browser.get_cookie(cookie).value

    change(browser)
    done = confirm_pin(browser, outbox.last_pin())
    assert done.status_code == 303 and done.headers["Location"] == "/account"
    assert password_is(app, NEW)
    page = browser.get("/account", headers=EN)
    assert page.status_code == 200
    assert "Your password has been changed." in page.text
    assert "Your password has been changed." not in browser.get("/account", headers=EN).text
    # This browser's session goes on with a new cookie; the old value is worthless.
    assert browser.get_cookie(cookie).value != old_cookie
    stale = app.test_client()
    stale.set_cookie(cookie, old_cookie)
    assert stale.get("/account").status_code == 302
    # The other browser is signed out, the half-done login cannot complete.
    assert other.get("/account").status_code == 302
    assert confirm_pin(halfway, halfway_pin, token_from="/login").status_code == 410
    with app.app_context():
        live = db.session.scalars(db.select(Session).where(Session.revoked_at.is_(None))).all()
        assert len(live) == 1
        assert (
            db.session.scalar(
                db.select(db.func.count(AuthTransaction.id)).where(
                    AuthTransaction.state == TransactionState.PENDING
                )
            )
            == 0
        )
    [changed] = events(app, "password.changed")
    assert changed.actor == "user" and changed.details["sid"] == live[0].sid
    # The old password no longer signs in, the new one does.
    response = post_form(app.test_client(), "/login", {"username": "anna", "password": PASSWORD})
    assert response.status_code == 200
    login(app.test_client(), outbox, password=NEW)


def test_the_back_button_after_the_change_leads_to_the_account_page(app, client, outbox):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    change(browser)
    confirm_pin(browser, outbox.last_pin())
    # The PIN page again (the back button): not "please start again" for a finished change.
    back = browser.get("/pin", headers=EN)
    assert back.status_code == 302 and back.headers["Location"] == "/account"
    assert "Signed in as anna." in browser.get("/account", headers=EN).text


def test_a_change_whose_step_expired_says_so_on_the_pin_page(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    change(browser)
    frozen_clock.advance(seconds=app.config["TRANSACTION_LIFETIME"] + 1)
    # Still signed in, but the step this browser holds is over: it says so.
    ended = browser.get("/pin", headers=EN)
    assert ended.status_code == 410 and "Please start again" in ended.text
    assert browser.get("/account").status_code == 200


def test_the_step_cannot_be_completed_by_another_account(app, client, outbox):
    activate(app, client, outbox)
    activate(app, app.test_client(), outbox, username="bob")
    anna = signed_in(app, outbox)
    bob = signed_in(app, outbox, username="bob", ip="198.51.100.9")
    change(anna)
    pin = outbox.last_pin()
    # Bob's browser with Anna's step (her flow cookie) and the right PIN.
    flow = app.config["SESSION_COOKIE_NAME"]
    bob.set_cookie(flow, anna.get_cookie(flow).value)
    response = confirm_pin(bob, pin)
    assert response.status_code == 410
    assert password_is(app, PASSWORD) and password_is(app, PASSWORD, username="bob")
    assert bob.get("/account").status_code == 200  # nothing of his ended either
    # The step is over for good: not even Anna completes it now.
    assert confirm_pin(anna, pin, token_from=PAGE).status_code == 410
    assert password_is(app, PASSWORD)


def test_a_browser_whose_session_ended_cannot_complete_the_step(app, client, outbox):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    change(browser)
    with app.app_context():
        for session in db.session.scalars(db.select(Session)):
            session.revoked_at = clock.now()
        db.session.commit()
    assert confirm_pin(browser, outbox.last_pin()).status_code == 410
    assert password_is(app, PASSWORD)


def test_the_relying_parties_of_the_other_sessions_are_told_and_their_tokens_end(
    idp, user, outbox, make_rp, backchannel
):
    portal = make_rp("--backchannel-logout-uri", backchannel.uri, name="e:service")
    laptop, phone = Browser(idp, outbox), Browser(idp, outbox)
    tokens = {"laptop": portal.sign_in(laptop), "phone": portal.sign_in(phone)}
    sids = {name: portal.verify_id_token(t["id_token"])["sid"] for name, t in tokens.items()}

    page = laptop.http.get(idp.url(PAGE), timeout=10)
    form = {"current_password": PASSWORD, "password": NEW, "password_confirm": NEW}
    response = laptop.http.post(
        idp.url(PAGE),
        data={"csrf_token": csrf_token(page.text), **form},
        allow_redirects=False,
        timeout=10,
    )
    assert response.status_code == 303
    pin_page = laptop.http.get(idp.url("/pin"), timeout=10)
    done = laptop.http.post(
        idp.url("/pin"),
        data={"csrf_token": csrf_token(pin_page.text), "pin": outbox.last_pin()},
        allow_redirects=False,
        timeout=10,
    )
    assert done.status_code == 303

    from tests.test_selfservice_sessions import logout_claims, refreshes

    claims = logout_claims(idp, backchannel.wait())
    assert claims["sid"] == sids["phone"] and claims["aud"] == portal.client_id
    assert not refreshes(idp, portal, tokens["phone"]["refresh_token"])
    assert refreshes(idp, portal, tokens["laptop"]["refresh_token"])
    assert len(backchannel.tokens) == 1  # the laptop's session goes on
    logins = laptop.logins
    portal.sign_in(laptop)  # single sign-on still
    assert laptop.logins == logins
    with pytest.raises(AssertionError):  # the phone must sign in, and the old password fails
        portal.sign_in(phone)
    assert phone.logins == 2


def test_the_notification_mail_arrives_through_smtp(real_senders_app, smtp_server, vonage):
    from tests.test_senders import newest_pin

    app = real_senders_app
    client = app.test_client()
    invite(app)
    link = re.search(
        r"https?://\S+/activate/\S+",
        smtp_server.mailbox.messages[-1].get_body(("plain",)).get_content(),
    ).group(0)
    path = "/" + link.split("/", 3)[3]
    post_form(client, path, {"password": PASSWORD, "password_confirm": PASSWORD})
    assert post_form(client, "/pin", {"pin": newest_pin(vonage)}).status_code == 200
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    assert post_form(client, "/pin", {"pin": newest_pin(vonage)}).status_code == 303
    smtp_server.mailbox.reset()

    assert change(client).status_code == 303
    assert smtp_server.mailbox.messages == []  # nothing before the PIN
    assert "Passwort" in vonage.state.received[-1]["text"]
    assert confirm_pin(client, newest_pin(vonage)).status_code == 303

    [message] = smtp_server.mailbox.messages
    assert message["To"] == "anna@example.com"
    assert message["Subject"] == "Ihr Passwort für e:service wurde geändert"
    text = message.get_body(("plain",)).get_content()
    assert "Aus dem Netz: 127.0.0.0/24" in text
    assert not re.search(r"https?://", text)


# --- The form's defences ----------------------------------------------------------------------


def test_a_post_without_csrf_is_refused_and_counts_nothing(app, client, outbox):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    sms_before = len(outbox.sms())
    for token in (None, "forged"):
        data = {"current_password": "wrong guess", "password": NEW, "password_confirm": NEW}
        if token:
            data["csrf_token"] = token
        response = browser.post(PAGE, data=data)
        assert response.status_code == 400
    assert account(app).failed_passwords == 0
    assert len(outbox.sms()) == sms_before
    # The PIN page's POST too.
    change(browser)
    assert browser.post("/pin", data={"pin": outbox.last_pin()}).status_code == 400
    assert password_is(app, PASSWORD)


def test_bad_input_is_a_clear_4xx_and_changes_nothing(app, client, outbox):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    sms_before = len(outbox.sms())
    token = csrf_token(browser.get(PAGE).text)
    for form in (
        {"current_password": "x" * 10_000, "password": NEW, "password_confirm": NEW},
        {"current_password": PASSWORD, "password": "y" * 10_000, "password_confirm": "y" * 10_000},
        {"current_password": PASSWORD + "\x00\x1b", "password": NEW, "password_confirm": NEW},
        {},
    ):
        response = browser.post(PAGE, data={"csrf_token": token, **form})
        assert 400 <= response.status_code < 500, form
        assert 'autocomplete="current-password"' in response.text
    response = browser.post(
        PAGE,
        data=f"csrf_token={token}&current_password=%FF%FE%00&password=%C3".encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert 400 <= response.status_code < 500
    assert len(outbox.sms()) == sms_before
    assert password_is(app, PASSWORD)


def test_posts_are_rate_limited(make_app, outbox):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_ACCOUNT_PASSWORD_PER_IP="2 per minute")
    activate(app, app.test_client(), outbox)
    browser = signed_in(app, outbox)
    token = csrf_token(browser.get(PAGE).text)
    data = {"csrf_token": token, "current_password": "x", "password": "y"}
    statuses = [browser.post(PAGE, data=data).status_code for _ in range(3)]
    assert statuses == [422, 422, 429]


def test_a_failure_while_completing_commits_nothing_half_done(
    app, client, outbox, frozen_clock, monkeypatch
):
    activate(app, client, outbox)
    browser = signed_in(app, outbox)
    change(browser)
    # Long enough for the session's "last used" to be written when it is loaded.
    frozen_clock.advance(seconds=120)
    from idp.selfservice import password_change

    def broken(_session):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(password_change.sessions, "renew", broken)
    assert confirm_pin(browser, outbox.last_pin()).status_code == 500
    # The confirmed PIN's claim was not committed before what it confirms: the step stays open.
    with app.app_context():
        [step] = db.session.scalars(
            db.select(AuthTransaction).where(AuthTransaction.purpose == "password_change")
        ).all()
        assert step.state == TransactionState.PENDING
    assert password_is(app, PASSWORD)


def test_the_change_and_pin_tries_on_other_logins_at_once_all_get_an_answer(make_app, outbox):
    """Completing the change writes the account's open logins, then its row; a PIN try on one
    of those logins takes them in the same order. So they wait for each other: no request fails
    (on PostgreSQL a deadlock would end one with a 500)."""
    app = make_app(PIN_RESEND_COOLDOWN=0, LOCKOUT_THRESHOLD=1000, RATELIMIT_ENABLED=False)
    activate(app, app.test_client(), outbox)
    browser = signed_in(app, outbox)
    others = []
    for _ in range(12):
        other = app.test_client()
        post_form(other, "/login", {"username": "anna", "password": PASSWORD})
        others.append((other, csrf_token(other.get("/pin").text)))
    change(browser)
    right = outbox.last_pin()
    token = csrf_token(browser.get("/pin").text)
    start = threading.Barrier(len(others) + 1)
    statuses = {}

    def post(i: int) -> None:
        client, form = (
            (browser, {"pin": right}) if i == 0 else (others[i - 1][0], {"pin": "000000"})
        )
        csrf = token if i == 0 else others[i - 1][1]
        start.wait(timeout=30)
        statuses[i] = client.post("/pin", data={"csrf_token": csrf, **form}).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(others) + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses[0] == 303, statuses
    assert {statuses[i] for i in statuses if i} <= {410, 422}, statuses
    assert password_is(app, NEW)
