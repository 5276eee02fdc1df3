"""The defences of the login: no user enumeration, bounded PIN tries, resend rules, account
lock with backoff, expiry of PINs, transactions and sessions, session fixation, flow isolation
and open redirects. Each test fails when its defence is taken away."""

import re
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from argon2 import PasswordHasher

from idp.accounts.models import User
from idp.audit.models import AuditEvent
from idp.authn.models import AuthTransaction, Session
from idp.platform.extensions import db
from tests.conftest import PASSWORD, activate, csrf_token, login, post_form

EN = {"Accept-Language": "en"}


def wrong(pin: str) -> str:
    return "000000" if pin != "000000" else "111111"


def cli(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result


def start_login(client, username="anna", password=PASSWORD, **extra):
    return post_form(client, "/login", {"username": username, "password": password, **extra})


def submit_pin(client, pin):
    """POST /pin with the CSRF token of the current flow (taken from the login page when the
    flow is over and the PIN page is gone)."""
    page = client.get("/pin", headers=EN)
    if 'name="csrf_token"' not in page.text:
        page = client.get("/login", headers=EN)
    return client.post("/pin", data={"csrf_token": csrf_token(page.text), "pin": pin}, headers=EN)


def strip_token(html: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value=""', html)


# --- Enumeration ------------------------------------------------------------------------------


@pytest.fixture
def counted_verifies(monkeypatch):
    """Counts argon2 verifications (the real hasher, under PasswordHashing)."""
    calls = []
    original = PasswordHasher.verify

    def counting(self, hash, password):
        calls.append(1)
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return calls


def test_unknown_wrong_disabled_locked_and_invited_look_the_same(
    app, client, outbox, counted_verifies
):
    activate(app, client, outbox, username="anna")
    activate(app, client, outbox, username="dora")
    activate(app, client, outbox, username="lena")
    with app.app_context():
        dora = db.session.scalar(db.select(User).where(User.username_key == "dora"))
        dora.state = "disabled"
        lena = db.session.scalar(db.select(User).where(User.username_key == "lena"))
        lena.locked_until = lena.created_at.replace(year=2999)
        db.session.commit()
    cli(app, "users", "invite", "ivan", "--email", "ivan@example.com", "--phone", "+4915100000001")
    sms_before = len(outbox.sms())

    attempts = {
        "unknown": ("ghost", PASSWORD),
        "wrong password": ("anna", PASSWORD + "x"),
        "disabled": ("dora", PASSWORD),
        "locked": ("lena", PASSWORD),
        "invited": ("ivan", PASSWORD),
    }
    pages, statuses, verifies = {}, {}, {}
    for case, (username, password) in attempts.items():
        counted_verifies.clear()
        browser = app.test_client()
        response = post_form(browser, "/login", {"username": username, "password": password})
        verifies[case] = len(counted_verifies)
        statuses[case] = response.status_code
        # The form (and the language switch) echo the typed username; the rest must not differ.
        page = strip_token(response.text).replace(f'value="{username}"', 'value="?"')
        pages[case] = page.replace(f"username%3D{username}", "username%3D?")
        assert browser.get_cookie(app.config["AUTH_COOKIE_NAME"]) is None

    assert set(statuses.values()) == {200}
    assert len(set(pages.values())) == 1, [case for case in pages]
    assert set(verifies.values()) == {1}, verifies
    assert len(outbox.sms()) == sms_before


# --- PIN tries --------------------------------------------------------------------------------


def test_five_wrong_pins_end_the_attempt_even_for_the_right_pin_afterwards(app, client, outbox):
    activate(app, client, outbox)
    start_login(client)
    pin_page = client.get("/pin")
    # The PIN page names the phone only masked.
    assert "15112345678" not in pin_page.text and "…" in pin_page.text
    right = outbox.last_pin()
    for left in (4, 3, 2, 1):
        response = submit_pin(client, wrong(right))
        assert response.status_code == 422
        assert f"Tries left: {left}" in response.text
    saved_flow = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    response = submit_pin(client, wrong(right))
    assert response.status_code == 410 and "Please start again" in response.text

    response = submit_pin(client, right)
    assert response.status_code == 410 and "Please start again" in response.text
    # Even a browser that kept the flow cookie of the ended attempt gets nowhere.
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], saved_flow)
    response = client.post(
        "/pin", data={"csrf_token": csrf_token(client.get("/login").text), "pin": right}
    )
    assert response.status_code == 410
    assert client.get_cookie(app.config["AUTH_COOKIE_NAME"]) is None
    with app.app_context():
        assert db.session.scalars(db.select(Session)).all() == []
        assert db.session.scalars(db.select(AuthTransaction)).all()[-1].state == "failed"


def test_ended_attempt_cannot_be_reused_with_a_kept_flow_cookie(app, client, outbox):
    activate(app, client, outbox)
    start_login(client)
    right = outbox.last_pin()
    pin_page = client.get("/pin")
    token = csrf_token(pin_page.text)
    saved_flow = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    for _ in range(5):
        client.set_cookie(app.config["SESSION_COOKIE_NAME"], saved_flow)
        client.post("/pin", data={"csrf_token": token, "pin": wrong(right)})
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], saved_flow)
    response = client.post("/pin", data={"csrf_token": token, "pin": right})
    assert response.status_code == 410
    assert client.get_cookie(app.config["AUTH_COOKIE_NAME"]) is None


def pin_attempts_and_failures(app) -> tuple[list[int], int]:
    """The tries counted on each login (oldest first) and the account's wrong PINs."""
    with app.app_context():
        attempts = db.session.scalars(
            db.select(AuthTransaction.pin_attempts)
            .where(AuthTransaction.purpose == "login")
            .order_by(AuthTransaction.id)
        ).all()
        return attempts, db.session.scalar(db.select(User.failed_pins))


@pytest.mark.parametrize("typed", ["{0} {1}", " {0}{1} ", "{0}-{1}", "\t{0} {1}\n", "{0}\u00a0{1}"])
def test_a_pin_typed_with_spaces_or_a_hyphen_is_the_pin(app, client, outbox, typed):
    activate(app, client, outbox)
    start_login(client)
    right = outbox.last_pin()
    response = submit_pin(client, typed.format(right[:3], right[3:]))
    assert response.status_code == 303
    assert client.get_cookie(app.config["AUTH_COOKIE_NAME"]) is not None


def test_input_that_is_no_pin_is_refused_without_costing_a_try(app, client, outbox):
    activate(app, client, outbox)
    start_login(client)
    right = outbox.last_pin()
    for typed in ("12a456", "PIN " + right, right[:5], right + "0", "", "1 2 3", right * 6):
        response = submit_pin(client, typed)
        assert response.status_code == 422, typed
        assert "Please enter the 6 digits of the PIN" in response.text
        assert "Tries left" not in response.text
    assert pin_attempts_and_failures(app) == ([0], 0)
    # All five tries are still there.
    for left in (4, 3, 2, 1):
        assert f"Tries left: {left}." in submit_pin(client, wrong(right)).text
    assert submit_pin(client, right).status_code == 303


def test_after_a_pin_lock_has_run_out_the_pin_page_tells_the_truth(
    app, client, outbox, frozen_clock
):
    """Wrong PINs locked the account, and the lock has run out: the next wrong PIN locks it
    again. The page says one try is left (not four), says until when the new lock holds, and
    the right PIN works once it has run out (it is not refused for good)."""
    activate(app, client, outbox)
    start_login(client)
    for _ in range(app.config["LOCKOUT_THRESHOLD"]):
        submit_pin(client, wrong(outbox.last_pin()))
    # Past the lock, and past the wait before the account's next PIN.
    wait = max(app.config["LOCKOUT_BASE_SECONDS"], app.config["PIN_RESEND_COOLDOWN"])
    frozen_clock.advance(seconds=wait + 1)

    assert start_login(client).status_code == 303
    right = outbox.last_pin()
    page = client.get("/pin", headers=EN)
    assert "Tries left: 1." in page.text
    response = submit_pin(client, wrong(right))
    assert response.status_code == 422
    assert "Tries left" not in response.text
    until = re.search(r"no PIN can be entered or sent until (\d{1,2}:\d{2}\W[AP]M)", response.text)
    assert until, response.text
    # Locked: even the right PIN is not compared now, and that costs no try...
    response = submit_pin(client, right)
    assert response.status_code == 429 and until.group(1) in response.text
    assert pin_attempts_and_failures(app) == ([5, 1], 6)
    # ...and once the lock (twice as long now) has run out, the right PIN is accepted.
    frozen_clock.advance(seconds=2 * app.config["LOCKOUT_BASE_SECONDS"] + 1)
    assert submit_pin(client, right).status_code == 303


def test_no_sms_goes_out_while_wrong_pins_lock_the_account(app, client, outbox):
    """From her home network a lock of the password step does not apply; a PIN lock must,
    or every login there would pay for an SMS whose PIN cannot be accepted."""
    activate(app, client, outbox)
    login(client, outbox)  # a session from this network: her home network
    browser = app.test_client()
    start_login(browser)
    for _ in range(app.config["LOCKOUT_THRESHOLD"]):
        submit_pin(browser, wrong(outbox.last_pin()))
    sent = len(outbox.sms())

    response = post_form(browser, "/login", {"username": "anna", "password": PASSWORD}, headers=EN)
    assert response.status_code == 429
    assert re.search(r"you can sign in again at \d{1,2}:\d{2}\W[AP]M", response.text)
    # Nor for a set-password link, which would end in a PIN too.
    cli(app, "users", "reset-password", "anna")
    from tests.conftest import path_of

    new = "a brand new passphrase"
    response = post_form(
        browser,
        path_of(outbox.last_link()),
        {"password": new, "password_confirm": new},
        headers=EN,
    )
    assert response.status_code == 429
    assert "no PIN can be entered or sent until" in response.text
    assert len(outbox.sms()) == sent


# --- Resend -----------------------------------------------------------------------------------


def resend(client):
    page = client.get("/pin", headers=EN)
    return client.post(
        "/pin", data={"csrf_token": csrf_token(page.text), "resend": "1"}, headers=EN
    )


def test_resend_waits_for_the_cooldown(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    start_login(client)
    sent = len(outbox.sms())
    response = resend(client)
    assert response.status_code == 429
    assert "Please wait a moment" in response.text
    frozen_clock.advance(seconds=59)
    assert resend(client).status_code == 429
    assert len(outbox.sms()) == sent
    frozen_clock.advance(seconds=2)
    response = resend(client)
    assert response.status_code == 200 and "A new PIN is on its way" in response.text
    assert len(outbox.sms()) == sent + 1
    assert resend(client).status_code == 429


def test_at_most_three_resends(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    start_login(client)
    sent = len(outbox.sms())
    for _ in range(3):
        frozen_clock.advance(seconds=61)
        assert resend(client).status_code == 200
    frozen_clock.advance(seconds=61)
    response = resend(client)
    assert response.status_code == 429
    assert "No more PINs can be sent" in response.text
    assert len(outbox.sms()) == sent + 3


def test_resend_keeps_the_try_counter_and_only_the_newest_pin_counts(
    app, client, outbox, frozen_clock
):
    activate(app, client, outbox)
    start_login(client)
    first = outbox.last_pin()
    for _ in range(2):
        assert submit_pin(client, wrong(first)).status_code == 422
    frozen_clock.advance(seconds=61)
    assert resend(client).status_code == 200
    newest = outbox.last_pin()
    if newest != first:
        response = submit_pin(client, first)
        assert response.status_code == 422 and "Tries left: 2" in response.text
    else:
        assert submit_pin(client, wrong(first)).status_code == 422
    assert submit_pin(client, wrong(newest)).status_code == 422
    response = submit_pin(client, wrong(newest))
    assert response.status_code == 410
    assert submit_pin(client, newest).status_code == 410


# --- Account lock -----------------------------------------------------------------------------


def test_account_locks_after_threshold_with_backoff(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    threshold = app.config["LOCKOUT_THRESHOLD"]
    base = app.config["LOCKOUT_BASE_SECONDS"]
    for _ in range(threshold):
        assert start_login(client, password="wrong " + PASSWORD).status_code == 200
    sent = len(outbox.sms())
    # Locked: even the right password answers like a wrong one, and no SMS goes out.
    response = start_login(client)
    assert response.status_code == 200 and 'role="alert"' in response.text
    assert len(outbox.sms()) == sent
    with app.app_context():
        assert db.session.scalar(db.select(User)).failed_passwords == threshold

    frozen_clock.advance(seconds=base + 1)
    assert start_login(client, password="wrong " + PASSWORD).status_code == 200
    # One more failure after the lock: twice as long.
    frozen_clock.advance(seconds=base + 1)
    assert start_login(client).status_code == 200
    assert len(outbox.sms()) == sent
    frozen_clock.advance(seconds=base)
    assert start_login(client).status_code == 303
    response = submit_pin(client, outbox.last_pin())
    assert response.status_code == 303
    with app.app_context():
        user = db.session.scalar(db.select(User))
        assert user.failed_passwords == 0 and user.locked_until is None


def test_unlock_command_lifts_the_lock(app, client, outbox):
    activate(app, client, outbox)
    for _ in range(app.config["LOCKOUT_THRESHOLD"]):
        start_login(client, password="wrong " + PASSWORD)
    assert start_login(client).status_code == 200
    cli(app, "users", "unlock", "anna")
    assert start_login(client).status_code == 303


def test_wrong_pins_count_towards_the_lock(app, client, outbox):
    activate(app, client, outbox)
    start_login(client)
    right = outbox.last_pin()
    for _ in range(app.config["PIN_MAX_ATTEMPTS"]):
        submit_pin(client, wrong(right))
    with app.app_context():
        user = db.session.scalar(db.select(User))
        assert user.failed_pins == app.config["PIN_MAX_ATTEMPTS"]
    # Locked: the right password gets no new PIN for a while, and is told so.
    sent = len(outbox.sms())
    response = start_login(client)
    assert response.status_code == 429
    assert "Zu Ihrer Sicherheit können Sie sich um" in response.text
    assert len(outbox.sms()) == sent


def test_after_a_pin_lock_the_pages_say_from_when_and_in_which_time_zone(
    app, client, outbox, frozen_clock
):
    activate(app, client, outbox)
    frozen_clock.offset = datetime(2027, 1, 5, 4, 0, 30, tzinfo=UTC) - datetime.now(UTC)
    start_login(client)
    right = outbox.last_pin()
    for _ in range(app.config["PIN_MAX_ATTEMPTS"] - 1):
        submit_pin(client, wrong(right))
    ended = client.post(
        "/pin", data={"csrf_token": csrf_token(client.get("/pin").text), "pin": wrong(right)}
    )
    assert ended.status_code == 410
    with app.app_context():
        until = db.session.scalar(db.select(User)).pins_locked_until.replace(tzinfo=UTC)
    # The site's zone (Europe/Berlin, winter): the hour plus one, to the minute, rounded up.
    berlin = until + timedelta(hours=1, minutes=1) - timedelta(microseconds=1)
    assert f"Ab {berlin:%H:%M} Uhr (MEZ) können Sie sich wieder anmelden." in ended.text
    # Until then a sign-in can only fail: no way to the login, the way out to the portal.
    assert 'href="/login' not in ended.text
    assert f'href="{app.config["PORTAL_URL"]}"' in ended.text

    locked = post_form(client, "/login", {"username": "anna", "password": PASSWORD}, headers=EN)
    assert f"you can sign in again at {berlin:%-I:%M}\u202fAM CET." in locked.text


# --- Expiry -----------------------------------------------------------------------------------


def test_pin_expires(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    start_login(client)
    pin = outbox.last_pin()
    frozen_clock.advance(seconds=app.config["PIN_LIFETIME"] + 1)
    response = submit_pin(client, pin)
    assert response.status_code == 422 and "This PIN has expired" in response.text
    assert client.get_cookie(app.config["AUTH_COOKIE_NAME"]) is None
    # A new PIN rescues the attempt.
    assert resend(client).status_code == 200
    assert submit_pin(client, outbox.last_pin()).status_code == 303


def test_transaction_expires(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    start_login(client)
    pin = outbox.last_pin()
    for _ in range(3):
        frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
        assert resend(client).status_code == 200
    pin = outbox.last_pin()
    frozen_clock.advance(
        seconds=app.config["TRANSACTION_LIFETIME"] - 3 * (app.config["PIN_RESEND_COOLDOWN"] + 1)
    )
    response = submit_pin(client, pin)
    assert response.status_code == 410 and "Please start again" in response.text
    assert client.get_cookie(app.config["AUTH_COOKIE_NAME"]) is None


def test_session_idle_timeout(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    login(client, outbox)
    idle = app.config["SESSION_IDLE_TIMEOUT"]
    frozen_clock.advance(seconds=idle - 10)
    assert client.get("/").status_code == 200  # use keeps it alive
    frozen_clock.advance(seconds=idle - 10)
    assert client.get("/").status_code == 200
    frozen_clock.advance(seconds=idle + 1)
    assert client.get("/").status_code == 302


def test_session_absolute_timeout(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    login(client, outbox)
    idle = app.config["SESSION_IDLE_TIMEOUT"]
    absolute = app.config["SESSION_ABSOLUTE_TIMEOUT"]
    elapsed = 0
    while elapsed + idle // 2 < absolute:
        frozen_clock.advance(seconds=idle // 2)
        elapsed += idle // 2
        assert client.get("/").status_code == 200
    frozen_clock.advance(seconds=absolute - elapsed + 1)
    assert client.get("/").status_code == 302


# --- Logout and session fixation --------------------------------------------------------------


def test_logout_revokes_the_session_server_side(app, client, outbox):
    activate(app, client, outbox)
    login(client, outbox)
    stolen = client.get_cookie(app.config["AUTH_COOKIE_NAME"]).value
    # GET shows a confirmation and changes nothing.
    assert client.get("/logout").status_code == 200
    assert client.get("/").status_code == 200
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/").text)})
    assert client.get("/").status_code == 302
    replay = app.test_client()
    replay.set_cookie(app.config["AUTH_COOKIE_NAME"], stolen)
    assert replay.get("/").status_code == 302
    with app.app_context():
        assert db.session.scalar(db.select(Session)).revoked_at is not None


def test_every_login_gets_a_new_session_id(app, client, outbox):
    activate(app, client, outbox)
    name = app.config["AUTH_COOKIE_NAME"]
    client.set_cookie(name, "planted-by-an-attacker")
    login(client, outbox)
    first = client.get_cookie(name).value
    assert first != "planted-by-an-attacker"
    planted = app.test_client()
    planted.set_cookie(name, "planted-by-an-attacker")
    assert planted.get("/").status_code == 302

    # Logging in again while signed in still yields a new id.
    response = post_form(
        client, "/login", {"username": "anna", "password": PASSWORD}, page_url="/login?next=/"
    )
    assert response.status_code == 303
    assert submit_pin(client, outbox.last_pin()).status_code == 303
    second = client.get_cookie(name).value
    assert second != first
    # The new login renews the live session (one sid, so that single sign-on and logout keep
    # spanning every relying party), but the old cookie value is worthless.
    with app.app_context():
        assert len(db.session.scalars(db.select(Session.sid)).all()) == 1
    stale = app.test_client()
    stale.set_cookie(name, first)
    assert stale.get("/").status_code == 302


def test_flow_of_a_half_done_login_does_not_carry_over(app, client, outbox):
    activate(app, client, outbox, username="anna")
    activate(app, client, outbox, username="bert")
    start_login(client, username="anna")
    annas_pin = outbox.last_pin()
    flow_before = client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value
    # Someone else uses the same browser and starts a login of their own.
    start_login(client, username="bert")
    berts_pin = outbox.last_pin()
    assert client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value != flow_before
    if annas_pin != berts_pin:
        assert submit_pin(client, annas_pin).status_code == 422
    assert submit_pin(client, berts_pin).status_code == 303
    home = client.get("/")
    assert "bert" in home.text and "anna" not in home.text
    with app.app_context():
        sessions = db.session.scalars(db.select(Session)).all()
        assert [s.user.username for s in sessions] == ["bert"]
        # Anna's half-done login is still pending, but nothing in this browser points to it:
        # the PIN page leads to Bert's account.
    response = client.get("/pin")
    assert response.status_code == 302 and response.location == "/account"


# --- Open redirects ---------------------------------------------------------------------------

EVIL_NEXT = [
    "//evil.example",
    "//evil.example/path",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "https://evil.example",
    "http:evil.example",
    "https:/evil.example",
    "javascript:alert(1)",
    "/%0d%0aLocation: https://evil.example",
    "/\r\nLocation: https://evil.example",
    "/\t/evil.example",
    " //evil.example",
    "///evil.example",
]


def assert_on_site(location: str) -> None:
    assert "\r" not in location and "\n" not in location
    parts = urlsplit(location)
    assert parts.scheme in ("", "http") and parts.netloc in ("", "localhost"), location
    assert not location.startswith(("//", "/\\", "\\")), location


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_next_never_redirects_off_site(app, client, outbox, target):
    activate(app, client, outbox)
    form_page = client.get("/login", query_string={"next": target})
    assert form_page.status_code == 200
    hidden = re.search(r'name="next" value="([^"]*)"', form_page.text)
    assert hidden is None or not hidden.group(1).startswith(("//", "/\\", "http"))
    response = login(client, outbox, next_path=target)
    assert_on_site(response.headers["Location"])
    switch = client.get("/language/en", query_string={"next": target})
    assert_on_site(switch.headers["Location"])


def test_next_on_this_site_is_honoured(app, client, outbox):
    activate(app, client, outbox)
    response = login(client, outbox, next_path="/logout?x=1")
    assert response.headers["Location"] == "/logout?x=1"


# --- PIN guessing across several open attempts ------------------------------------------------


def test_pin_lock_stops_guessing_on_other_open_logins(app, client, outbox, frozen_clock):
    """Someone with the password opens several logins (a minute apart, the cooldown); the wrong
    PINs of one lock the account, and then no open login takes a PIN any more, not even the
    right one: each says until when, and none of them is counted."""
    activate(app, client, outbox)
    browsers = [app.test_client() for _ in range(3)]
    pins = []
    for browser in browsers:
        frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"])
        assert start_login(browser).status_code == 303
        pins.append(outbox.last_pin())
    for _ in range(app.config["PIN_MAX_ATTEMPTS"]):
        submit_pin(browsers[0], wrong(pins[0]))
    response = submit_pin(browsers[1], wrong(pins[1]))
    assert response.status_code == 429 and "no PIN can be entered or sent until" in response.text
    response = submit_pin(browsers[2], pins[2])
    assert response.status_code == 429 and "no PIN can be entered or sent until" in response.text
    with app.app_context():
        assert db.session.scalars(db.select(Session)).all() == []
        assert db.session.scalar(db.select(User)).failed_pins == app.config["PIN_MAX_ATTEMPTS"]
        attempts = db.session.scalars(
            db.select(AuthTransaction.pin_attempts)
            .where(AuthTransaction.purpose == "login")
            .order_by(AuthTransaction.id)
        ).all()
        assert attempts == [app.config["PIN_MAX_ATTEMPTS"], 0, 0]


def test_pin_lock_stops_guessing_through_repeated_activations(app, client, outbox):
    """A leaked activation link gives a new PIN (and five tries) per POST: the account lock
    must bound the guesses over all of them."""
    from tests.conftest import invite, path_of

    invite(app)
    link = path_of(outbox.last_link())
    for _ in range(3):
        browser = app.test_client()
        post_form(browser, link, {"password": PASSWORD, "password_confirm": PASSWORD})
        right = outbox.last_pin()
        while submit_pin(browser, wrong(right)).status_code == 422:
            pass
    with app.app_context():
        compared = db.session.scalar(db.select(db.func.sum(AuthTransaction.pin_attempts)))
        assert compared == app.config["LOCKOUT_THRESHOLD"]
    browser = app.test_client()
    post_form(browser, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    assert submit_pin(browser, outbox.last_pin()).status_code == 410
    with app.app_context():
        assert db.session.scalar(db.select(User)).password_hash is None


# --- Changes by the operator end half-done logins ---------------------------------------------


def half_done_login(app, client, outbox):
    activate(app, client, outbox)
    browser = app.test_client()
    assert start_login(browser).status_code == 303
    return browser, outbox.last_pin()


def assert_no_session_from(app, browser, pin):
    response = submit_pin(browser, pin)
    assert response.status_code == 410
    assert browser.get_cookie(app.config["AUTH_COOKIE_NAME"]) is None
    with app.app_context():
        assert db.session.scalars(db.select(Session)).all() == []


def test_disable_ends_a_half_done_login(app, client, outbox):
    browser, pin = half_done_login(app, client, outbox)
    cli(app, "users", "disable", "anna")
    assert_no_session_from(app, browser, pin)
    # Enabling the account again does not bring the old attempt back.
    cli(app, "users", "enable", "anna")
    assert_no_session_from(app, browser, pin)


def test_new_phone_ends_a_login_whose_pin_went_to_the_old_one(app, client, outbox):
    browser, pin = half_done_login(app, client, outbox)
    cli(app, "users", "set-phone", "anna", "+4915198765432")
    assert_no_session_from(app, browser, pin)


def test_password_reset_ends_a_login_begun_with_the_old_password(app, client, outbox, frozen_clock):
    browser, pin = half_done_login(app, client, outbox)
    cli(app, "users", "reset-password", "anna")
    from tests.conftest import path_of

    link = path_of(outbox.last_link())
    new = "a brand new passphrase"
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"])  # after the login's PIN
    post_form(client, link, {"password": new, "password_confirm": new})
    assert submit_pin(client, outbox.last_pin()).status_code == 200
    assert_no_session_from(app, browser, pin)


def test_no_new_pins_for_an_account_locked_by_wrong_pins(make_app, outbox, frozen_clock):
    # A lock that outlasts the resend cooldown.
    app = make_app(LOCKOUT_BASE_SECONDS=600, LOCKOUT_MAX_SECONDS=600)
    client = app.test_client()
    activate(app, client, outbox)
    browsers = [app.test_client() for _ in range(2)]
    for browser in browsers:
        assert start_login(browser).status_code == 303
    right = outbox.last_pin()
    for _ in range(app.config["PIN_MAX_ATTEMPTS"]):
        submit_pin(browsers[0], wrong(right))
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
    sent = len(outbox.sms())
    assert resend(browsers[1]).status_code in (410, 429)
    assert len(outbox.sms()) == sent


def login_while_argon2_is_busy(app):
    """POST /login while every argon2 slot is taken, as by a flood of parallel logins."""
    client = app.test_client()
    token = csrf_token(client.get("/login").text)
    slots = app.extensions["idp.passwords"].slots
    answers = []

    def log_in():
        answers.append(
            client.post(
                "/login",
                data={"csrf_token": token, "username": "anna", "password": "a wrong password!!"},
            )
        )

    slots.acquire()
    try:
        waiting = threading.Thread(target=log_in)
        waiting.start()
        waiting.join(timeout=10)
        assert not waiting.is_alive(), "the login waited for a slot without end"
    finally:
        slots.release()
        waiting.join()
    return answers[0]


def test_a_login_that_finds_every_argon2_slot_taken_gets_503_and_counts_nothing(make_app, outbox):
    # A flood of logins from more networks than the limits see must not hold every worker
    # thread in argon2's queue: after a short wait the request is answered "busy".
    app = make_app(ARGON2_MAX_CONCURRENT=1, ARGON2_WAIT_SECONDS=0.1)
    activate(app, app.test_client(), outbox)

    busy = login_while_argon2_is_busy(app)

    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    assert "try again in a few seconds" in busy.text or "in ein paar Sekunden" in busy.text
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username_key == "anna"))
        assert user.failed_passwords == 0 and user.locked_until is None
        failures = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "login.failed")
        ).all()
        assert failures == []
    # Once a slot is free, the same person signs in as usual.
    login(app.test_client(), outbox)


def test_a_busy_login_past_the_lock_gives_back_no_attempt_it_did_not_count(make_app, outbox):
    # From her home network the owner gets past a lock without a counted attempt; a busy answer
    # there must not take one of the strangers' counted attempts off the lock.
    app = make_app(ARGON2_MAX_CONCURRENT=1, ARGON2_WAIT_SECONDS=0.1)
    client = app.test_client()
    activate(app, client, outbox)
    login(client, outbox)  # a session from this network: her home network
    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username_key == "anna"))
        user.failed_passwords = 7
        user.locked_until = datetime.now(UTC) + timedelta(minutes=10)
        db.session.commit()

    assert login_while_argon2_is_busy(app).status_code == 503

    with app.app_context():
        user = db.session.scalar(db.select(User).where(User.username_key == "anna"))
        assert user.failed_passwords == 7
