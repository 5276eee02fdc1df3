"""Changing the mobile number at /account/phone: the new number and the current password, a
PIN to the current number, then a PIN to the new one; only then the number changes, the old
number gets an SMS and she a mail, and the account's pending logins end. And the defences of
each step: the password counted like a login's, numbers refused as at the invitation, no step
skipped, replayed or completed by another account."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from limits import parse

from idp.accounts import lifecycle, users
from idp.accounts.models import User
from idp.audit.models import AuditEvent
from idp.authn.models import AuthTransaction
from idp.errors import UserError
from idp.platform import clock
from idp.platform.extensions import db
from idp.senders import sms_guard
from tests.conftest import PASSWORD, activate, csrf_token, invite, login, path_of, post_form

PAGE = "/account/phone"
OLD = "+4915112345678"
NEW = "+4915198765432"


@pytest.fixture
def signed_in(app, client, outbox):
    """Anna, activated and signed in with `client`."""
    activate(app, client, outbox)
    login(client, outbox)
    return client


def phone_of(app, username="anna") -> str:
    with app.app_context():
        return db.session.scalar(db.select(User.phone).where(User.username == username))


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(db.select(AuditEvent).where(AuditEvent.event == name)).all()
        db.session.expunge_all()
        return rows


def ask(client, phone=NEW, password=PASSWORD, language="en"):
    return post_form(
        client, PAGE, {"phone": phone, "password": password}, headers={"Accept-Language": language}
    )


def pin(client, value):
    return post_form(client, "/pin", {"pin": value})


def newest_sms(outbox) -> dict:
    return outbox.sms()[0]


def pin_in(sms: dict) -> str:
    return re.search(r"#(\d{6})$", sms["text"]).group(1)


def pin_with(client, token, value):
    """A PIN try with a token taken before: the page may be gone by then."""
    return client.post("/pin", data={"csrf_token": token, "pin": value})


def wrong(value: str) -> str:
    return "000000" if value != "000000" else "111111"


def flow_cookie(app, client) -> str:
    return client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value


# --- The page ---------------------------------------------------------------------------------


def test_without_a_session_the_login_comes_first_and_leads_back(app, client, outbox):
    activate(app, client, outbox)
    visitor = app.test_client()
    token = csrf_token(visitor.get("/login").text)
    for response in (
        visitor.get(PAGE),
        visitor.post(PAGE, data={"csrf_token": token, "phone": NEW, "password": PASSWORD}),
    ):
        assert response.status_code in (302, 303)
        assert response.headers["Location"] == "/login?next=/account/phone"
    landed = login(visitor, outbox, next_path=PAGE)
    assert landed.headers["Location"] == PAGE
    assert phone_of(app) == OLD


def test_the_page_asks_for_the_number_and_the_current_password(app, signed_in):
    page = signed_in.get(PAGE, headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert re.search(r'<input id="phone" name="phone" type="tel" autocomplete="tel"', page.text)
    assert 'autocomplete="current-password"' in page.text
    assert 'name="csrf_token"' in page.text
    assert "<script>" not in page.text  # no inline script: the page works without any
    assert "+49\u00a0…\u00a078" in page.text and OLD not in page.text
    german = signed_in.get(PAGE, headers={"Accept-Language": "de"})
    assert "Mobilnummer ändern" in german.text


def test_a_post_without_csrf_changes_nothing(app, signed_in, outbox):
    sent = len(outbox.sms())
    response = signed_in.post(PAGE, data={"phone": NEW, "password": PASSWORD})
    assert response.status_code == 400
    assert len(outbox.sms()) == sent
    with app.app_context():
        assert db.session.scalar(db.select(User)).failed_passwords == 0


# --- The first step: number and password ------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("+493012345678", "This is not a mobile number"),  # a Berlin landline
        ("+33612345678", "only be sent to mobile numbers from these countries: DE, AT, CH"),
        ("0151 98765432", "internationally, starting with +"),
        ("+49 151 1", "not a valid phone number"),
        ("+49 151 12345678", "already go to"),  # the present number, spaced
        ("+49" + "1" * 10_000, "internationally, starting with +"),
        ("+4915198765432\x00", "internationally, starting with +"),
        ("+49151\u202e98765432", "internationally, starting with +"),
    ],
)
def test_a_bad_number_is_refused_clearly_and_nothing_is_sent(app, signed_in, outbox, typed, says):
    sent = len(outbox.sms())
    response = ask(signed_in, phone=typed, password=PASSWORD)
    assert response.status_code == 422
    assert says in response.text
    assert 'autocomplete="tel"' in response.text  # the form again
    assert len(outbox.sms()) == sent
    assert phone_of(app) == OLD
    german = ask(signed_in, phone=typed, password=PASSWORD, language="de")
    assert german.status_code == 422 and 'id="form-error"' in german.text
    with app.app_context():
        assert db.session.scalar(db.select(User)).failed_passwords == 0
        assert not db.session.scalars(
            db.select(AuthTransaction).where(AuthTransaction.purpose.like("phone%"))
        ).all()


def test_a_wrong_password_is_counted_like_a_logins_and_locks(app, signed_in, outbox):
    sent = len(outbox.sms())
    for i in range(app.config["LOCKOUT_THRESHOLD"]):
        response = ask(signed_in, password=f"wrong {i}")
        assert response.status_code == 422
        assert "The password is not correct" in response.text
    with app.app_context():
        user = db.session.scalar(db.select(User))
        assert user.failed_passwords == app.config["LOCKOUT_THRESHOLD"]
        assert user.locked_until is not None
    # Locked: the right password opens nothing now, not even from the network she signed in
    # from (whoever holds this session did).
    response = ask(signed_in)
    assert response.status_code == 429
    assert "Too many wrong passwords" in response.text
    assert len(outbox.sms()) == sent
    assert [e.details["reason"] for e in events(app, "phone.change_failed")][-1] == "locked"


def test_parallel_wrong_passwords_are_all_counted(make_app, outbox):
    app = make_app(LOCKOUT_THRESHOLD=1000, RATELIMIT_ENABLED=False)
    client = app.test_client()
    activate(app, client, outbox)
    login(client, outbox)
    token = csrf_token(client.get(PAGE).text)
    count = 12
    barrier = threading.Barrier(count)

    def guess(i):
        barrier.wait(timeout=30)
        return client.post(
            PAGE, data={"csrf_token": token, "phone": NEW, "password": f"wrong {i}"}
        ).status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        statuses = list(pool.map(guess, range(count)))
    assert set(statuses) == {422}
    with app.app_context():
        assert db.session.scalar(db.select(User)).failed_passwords == count


# --- The two PINs ----------------------------------------------------------------------------


def test_the_pin_goes_to_the_current_number_first_and_nothing_changes_yet(app, signed_in, outbox):
    sent = len(outbox.sms())
    response = ask(signed_in)
    assert response.status_code == 303 and response.headers["Location"] == "/pin"
    [first] = outbox.sms()[: len(outbox.sms()) - sent]
    assert first["to"] == OLD  # not a single SMS to the new number yet
    assert "change the mobile number" in first["text"] or "Mobilnummer" in first["text"]
    page = signed_in.get("/pin", headers={"Accept-Language": "en"})
    assert (
        "+49\u00a0…\u00a078" in page.text
        and "first confirm with a PIN to your current" in page.text
    )
    assert phone_of(app) == OLD

    response = pin(signed_in, pin_in(first))
    assert response.status_code == 303 and response.headers["Location"] == "/pin"
    second = newest_sms(outbox)
    assert second["to"] == NEW
    assert pin_in(second) != pin_in(first)
    page = signed_in.get("/pin", headers={"Accept-Language": "en"})
    assert "+49\u00a0…\u00a032" in page.text
    # Only the first PIN: still the old number, and the old PIN does nothing for the new step.
    assert phone_of(app) == OLD
    assert pin(signed_in, pin_in(first)).status_code == 422
    assert phone_of(app) == OLD


def test_the_pin_pages_lead_back_to_the_account_and_leaving_changes_nothing(app, signed_in, outbox):
    ask(signed_in)
    page = signed_in.get("/pin", headers={"Accept-Language": "en"})
    assert '<a href="/account">Back to your account</a>' in page.text
    assert signed_in.get("/account").status_code == 200
    assert phone_of(app) == OLD
    # Still open where she left it, until it expires or a new change replaces it.
    assert pin(signed_in, pin_in(newest_sms(outbox))).headers["Location"] == "/pin"
    page = signed_in.get("/pin", headers={"Accept-Language": "en"})
    assert '<a href="/account">Back to your account</a>' in page.text


def test_a_wrong_pin_at_the_current_number_sends_nothing_to_the_new_one(app, signed_in, outbox):
    ask(signed_in)
    first = newest_sms(outbox)
    token = csrf_token(signed_in.get("/pin").text)
    answers = [
        pin_with(signed_in, token, wrong(pin_in(first)))
        for _ in range(app.config["PIN_MAX_ATTEMPTS"])
    ]
    assert answers[-1].status_code == 410
    assert "Ihre Mobilnummer wurde nicht geändert." in answers[-1].text
    assert '<a href="/account">Zurück zu Ihrem Zugang</a>' in answers[-1].text
    assert all(sms["to"] != NEW for sms in outbox.sms())
    assert pin_with(signed_in, token, pin_in(first)).status_code in (400, 410)
    assert phone_of(app) == OLD


def test_a_wrong_pin_at_the_new_number_leaves_the_old_one_in_force(app, signed_in, outbox):
    ask(signed_in)
    pin(signed_in, pin_in(newest_sms(outbox)))
    second = newest_sms(outbox)
    response = pin(signed_in, wrong(pin_in(second)))
    assert response.status_code == 422
    assert phone_of(app) == OLD


def test_both_pins_change_the_number_and_tell_the_old_number_and_by_mail(app, signed_in, outbox):
    ask(signed_in)
    pin(signed_in, pin_in(newest_sms(outbox)))
    done = pin(signed_in, pin_in(newest_sms(outbox)))
    assert done.status_code == 303 and done.headers["Location"] == PAGE
    assert phone_of(app) == NEW
    page = signed_in.get(PAGE, headers={"Accept-Language": "en"})
    assert "Your mobile number has been changed" in page.text

    told = newest_sms(outbox)
    assert told["to"] == OLD
    assert "+49 ... 32" in told["text"] and "#" not in told["text"]
    mail = outbox.mails()[0]
    assert mail["subject"] == "Ihre Mobilnummer für e:service wurde geändert"
    assert "Aus dem Netz: 127.0.0.0/24" in mail["text"]
    [changed] = events(app, "user.phone_changed")
    assert changed.actor == "user"
    assert changed.details == {"old": "+49\u00a0…\u00a078", "new": "+49\u00a0…\u00a032"}
    # The next login's PIN goes to the new number.
    other = app.test_client()
    post_form(other, "/login", {"username": "anna", "password": PASSWORD})
    assert newest_sms(outbox)["to"] == NEW


def test_the_back_button_after_the_change_leads_to_the_account_page(app, signed_in, outbox):
    ask(signed_in)
    pin(signed_in, pin_in(newest_sms(outbox)))
    pin(signed_in, pin_in(newest_sms(outbox)))
    # The PIN page again (the back button): the account, with the new number, not an error.
    back = signed_in.get("/pin", headers={"Accept-Language": "en"})
    assert back.status_code == 302 and back.headers["Location"] == "/account"
    assert "+49\u00a0…\u00a032" in signed_in.get("/account").text


def test_pending_logins_of_the_account_end(app, signed_in, outbox, frozen_clock):
    elsewhere = app.test_client()
    post_form(elsewhere, "/login", {"username": "anna", "password": PASSWORD})
    login_pin = pin_in(newest_sms(outbox))
    token = csrf_token(elsewhere.get("/pin").text)
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
    ask(signed_in)
    pin(signed_in, pin_in(newest_sms(outbox)))
    pin(signed_in, pin_in(newest_sms(outbox)))
    assert phone_of(app) == NEW
    response = pin_with(elsewhere, token, login_pin)
    assert response.status_code == 410
    assert elsewhere.get("/").status_code == 302  # no session


def test_a_replayed_pin_step_is_refused(app, signed_in, outbox, frozen_clock):
    name = app.config["SESSION_COOKIE_NAME"]
    ask(signed_in)
    token = csrf_token(signed_in.get("/pin").text)
    first_step = flow_cookie(app, signed_in)
    first = pin_in(newest_sms(outbox))
    assert pin(signed_in, first).status_code == 303
    sent = len(outbox.sms())

    # The first step again, as it was sent: it is over, and no second PIN goes to the new number.
    signed_in.set_cookie(name, first_step)
    replay = signed_in.post("/pin", data={"csrf_token": token, "pin": first})
    assert replay.status_code == 410
    assert len(outbox.sms()) == sent

    # The second step, done once, cannot be done again.
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
    ask(signed_in, phone="+4915111111111")
    pin(signed_in, pin_in(newest_sms(outbox)))
    token = csrf_token(signed_in.get("/pin").text)
    second_step = flow_cookie(app, signed_in)
    second = pin_in(newest_sms(outbox))
    assert pin(signed_in, second).status_code == 303
    assert phone_of(app) == "+4915111111111"
    signed_in.set_cookie(name, second_step)
    assert signed_in.post("/pin", data={"csrf_token": token, "pin": second}).status_code == 410
    assert len(events(app, "user.phone_changed")) == 1


def test_another_account_cannot_complete_it(app, signed_in, outbox):
    name = app.config["SESSION_COOKIE_NAME"]
    invite(app, username="bob", phone="+4915122222222")
    bob = app.test_client()
    post_form(
        bob, path_of(outbox.last_link()), {"password": PASSWORD, "password_confirm": PASSWORD}
    )
    pin(bob, outbox.last_pin())
    login(bob, outbox, username="bob")

    ask(signed_in)
    # Anna's first step in Bob's browser: refused, and her step stays hers.
    signed_in_flow = flow_cookie(app, signed_in)
    bob.set_cookie(name, signed_in_flow)
    refused = pin(bob, pin_in(newest_sms(outbox)))
    assert refused.status_code == 403
    assert all(sms["to"] != NEW for sms in outbox.sms())

    assert pin(signed_in, pin_in(newest_sms(outbox))).status_code == 303
    bob.set_cookie(name, flow_cookie(app, signed_in))
    refused = pin(bob, pin_in(newest_sms(outbox)))
    assert refused.status_code == 403
    assert phone_of(app) == OLD and phone_of(app, "bob") == "+4915122222222"
    assert [e.details["reason"] for e in events(app, "phone.change_failed")] == ["session"] * 2


def test_a_signed_out_browser_cannot_complete_it(app, signed_in, outbox):
    ask(signed_in)
    pin(signed_in, pin_in(newest_sms(outbox)))
    new_pin = pin_in(newest_sms(outbox))
    stolen = app.test_client()
    stolen.set_cookie(app.config["SESSION_COOKIE_NAME"], flow_cookie(app, signed_in))
    response = pin(stolen, new_pin)
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    assert phone_of(app) == OLD


def test_parallel_right_pins_change_the_number_once(make_app, outbox):
    app = make_app(RATELIMIT_ENABLED=False)
    client = app.test_client()
    activate(app, client, outbox)
    login(client, outbox)
    ask(client)
    pin(client, pin_in(newest_sms(outbox)))
    token = csrf_token(client.get("/pin").text)
    right = pin_in(newest_sms(outbox))
    count = 6
    barrier = threading.Barrier(count)

    def confirm(_i):
        barrier.wait(timeout=30)
        return client.post("/pin", data={"csrf_token": token, "pin": right}).status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        statuses = list(pool.map(confirm, range(count)))
    assert statuses.count(303) == 1, statuses
    assert set(statuses) <= {303, 410}
    assert len(events(app, "user.phone_changed")) == 1
    assert len([m for m in outbox.mails() if "Mobilnummer" in m["subject"]]) == 1


def test_the_sms_caps_hold_for_the_new_number_too(make_app, outbox):
    app = make_app(SMS_LIMIT_PER_NUMBER="3 per day")
    signed_in = app.test_client()
    activate(app, signed_in, outbox)
    login(signed_in, outbox)
    with app.app_context():
        guard = sms_guard.guard()
        for _ in range(parse(guard.per_number).amount):
            guard.reserve(NEW, "another account")
    ask(signed_in)
    response = pin(signed_in, pin_in(newest_sms(outbox)))
    assert response.status_code == 429
    assert "An Ihre Nummer können vorerst keine weiteren SMS gesendet werden" in response.text
    assert all(sms["to"] != NEW for sms in outbox.sms())
    assert phone_of(app) == OLD


def test_an_operators_change_still_tells_by_mail(app, client, outbox):
    activate(app, client, outbox)
    result = app.test_cli_runner().invoke(args=["users", "set-phone", "anna", NEW])
    assert result.exit_code == 0, result.output
    assert outbox.mails()[0]["subject"] == "Ihre Mobilnummer für e:service wurde geändert"
    assert phone_of(app) == NEW


# --- Through the real senders ----------------------------------------------------------------


def test_the_change_through_smtp_and_vonage(real_senders_app, smtp_server, vonage):
    app = real_senders_app
    client = app.test_client()
    invite(app)
    text = smtp_server.mailbox.messages[-1].get_body(("plain",)).get_content()
    link = path_of(re.search(r"https?://\S+/activate/\S+", text).group(0))
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})

    def newest():
        received = vonage.state.received[-1]
        return received["to"], re.search(r"#(\d{6})$", received["text"]).group(1)

    assert pin(client, newest()[1]).status_code == 200
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    assert pin(client, newest()[1]).status_code == 303
    smtp_server.mailbox.reset()
    before = len(vonage.state.received)

    assert ask(client, language="de").status_code == 303
    to, first = newest()
    assert to == OLD.lstrip("+")
    assert pin(client, first).status_code == 303
    to, second = newest()
    assert to == NEW.lstrip("+")
    assert phone_of(app) == OLD
    assert pin(client, second).status_code == 303
    assert phone_of(app) == NEW

    told = vonage.state.received[-1]
    assert told["to"] == OLD.lstrip("+")
    assert "Mobilnummer wurde in +49 ... 32 geändert" in told["text"]
    assert len(vonage.state.received) == before + 3
    [message] = smtp_server.mailbox.messages
    assert message["To"] == "anna@example.com"
    assert message["Subject"] == "Ihre Mobilnummer für e:service wurde geändert"
    body = message.get_body(("plain",)).get_content()
    assert "+49\u00a0…\u00a032" in body and "Aus dem Netz: 127.0.0.0/24" in body
    assert "http" not in body


def test_a_change_that_another_one_came_before_is_refused(app, client, outbox):
    activate(app, client, outbox)
    with app.app_context():
        user = users.find_by_username("anna")
        # An operator's change, committed after this request read the account.
        with db.engine.begin() as other:
            other.execute(db.update(User).values(phone=NEW))
        with pytest.raises(UserError, match="changed meanwhile"):
            lifecycle.change_phone(user, "+4915111111111", clock.now(), actor="user")
        db.session.rollback()
    assert phone_of(app) == NEW


def test_posts_are_rate_limited(make_app, outbox):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_ACCOUNT_PHONE_PER_IP="2 per minute")
    client = app.test_client()
    activate(app, client, outbox)
    login(client, outbox)
    token = csrf_token(client.get(PAGE).text)
    statuses = [
        client.post(PAGE, data={"csrf_token": token, "phone": "+49301234567"}).status_code
        for _ in range(3)
    ]
    assert statuses == [422, 422, 429]


def test_a_new_request_ends_the_open_change(app, signed_in, outbox, frozen_clock):
    ask(signed_in)
    pin(signed_in, pin_in(newest_sms(outbox)))
    other_tab = app.test_client()
    other_tab.set_cookie(
        app.config["AUTH_COOKIE_NAME"], signed_in.get_cookie(app.config["AUTH_COOKIE_NAME"]).value
    )
    token = csrf_token(signed_in.get("/pin").text)
    new_pin = pin_in(newest_sms(outbox))
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
    assert ask(other_tab, phone="+4915111111111").status_code == 303
    assert pin_with(signed_in, token, new_pin).status_code == 410
    assert phone_of(app) == OLD


def change_while_a_login_is_tried(app, client, outbox, frozen_clock, number) -> list[int]:
    """One right PIN for the new number and, at the same moment, wrong PINs on a login of the
    account that waits for its PIN in another browser; the statuses, the change's first."""
    elsewhere = app.test_client()
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
    post_form(elsewhere, "/login", {"username": "anna", "password": PASSWORD})
    login_pin = pin_in(newest_sms(outbox))
    login_token = csrf_token(elsewhere.get("/pin").text)
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
    ask(client, phone=number)
    pin(client, pin_in(newest_sms(outbox)))
    token = csrf_token(client.get("/pin").text)
    right = pin_in(newest_sms(outbox))
    count = 6
    barrier = threading.Barrier(count)

    def attempt(i):
        barrier.wait(timeout=30)
        if i == 0:
            return client.post("/pin", data={"csrf_token": token, "pin": right}).status_code
        data = {"csrf_token": login_token, "pin": wrong(login_pin)}
        return elsewhere.post("/pin", data=data).status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(attempt, range(count)))


def test_the_change_and_pin_tries_on_a_pending_login_at_once_all_get_an_answer(
    make_app, outbox, frozen_clock
):
    app = make_app(RATELIMIT_ENABLED=False, LOCKOUT_THRESHOLD=1000, PIN_MAX_ATTEMPTS=1000)
    client = app.test_client()
    activate(app, client, outbox)
    login(client, outbox)
    for round_number in range(4):
        number = f"+491511111111{round_number}"
        statuses = change_while_a_login_is_tried(app, client, outbox, frozen_clock, number)
        assert statuses[0] == 303, statuses
        assert all(status < 500 for status in statuses), statuses
        assert phone_of(app) == number
