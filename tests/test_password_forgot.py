"""The forgotten password, /password/forgot: one answer for every name, a single-use link by
mail to an active account only, the new password in force only after the SMS PIN, and then
every session and token of the account ended, its relying parties told, and a mail."""

import re
import threading
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import create_engine, select, text

from idp.accounts import password_reset, users
from idp.accounts.passwords import hashing
from idp.audit.models import AuditEvent
from idp.authn.models import AuthTransaction, TransactionPurpose, TransactionState
from idp.platform import background, clock, ratelimit
from idp.platform.extensions import db
from idp.platform.secrets import keyed_digest
from tests.conftest import (
    PASSWORD,
    POSTGRES_URI,
    activate,
    csrf_token,
    invite,
    login,
    path_of,
    post_form,
)
from tests.oidc_fixtures import *  # noqa: F403 (fixtures: idp, browser, make_rp, backchannel)
from tests.test_oidc_way_back import assert_back_at_the_rp_with_a_code, follow, link, submit
from tests.test_senders import newest_pin

NEW_PASSWORD = "a forgotten one replaced by this passphrase"
FORGOT = "/password/forgot"


def forgot(app, client, username: str, **kwargs):
    """Asks for a link like a browser, and waits for the work behind the answer."""
    response = post_form(client, FORGOT, {"username": username}, **kwargs)
    background.of(app).wait()
    return response


def cli(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output


def set_new_password(client, outbox, password=NEW_PASSWORD):
    """Opens the newest link, sets the password, and returns the PIN page's answer to it."""
    response = post_form(
        client, path_of(outbox.last_link()), {"password": password, "password_confirm": password}
    )
    assert response.status_code == 303, response.text
    return post_form(client, "/pin", {"pin": outbox.last_pin()})


def password_works(app, password: str, username="anna") -> bool:
    with app.app_context():
        return hashing().verify(users.find_by_username(username).password_hash, password)


def audit_events(app) -> list[tuple[str, dict]]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        return [(row.event, row.details) for row in rows]


def mails_to(outbox, address: str) -> list[dict]:
    return [mail for mail in outbox.mails() if mail["to"] == address]


@pytest.fixture
def accounts(app, client, outbox):
    """One account of each kind the page must not tell apart (and a name that is none)."""
    activate(app, client, outbox, username="anna")
    activate(app, app.test_client(), outbox, username="dora")
    cli(app, "users", "disable", "dora")
    activate(app, app.test_client(), outbox, username="lena")
    with app.app_context():
        locked = users.find_by_username("lena")
        locked.locked_until = clock.now() + timedelta(minutes=10)
        db.session.commit()
    invite(app, username="ivan")
    return {
        "active": "anna",
        "unknown": "nobody",
        "invited": "ivan",
        "disabled": "dora",
        "locked": "lena",
    }


# --- One answer for every name -----------------------------------------------------------------


def test_the_login_page_links_to_the_forgotten_password(client):
    german = client.get("/login", headers={"Accept-Language": "de"})
    assert re.search(r'<a href="/password/forgot">Passwort vergessen\?</a>', german.text)
    english = client.get("/login", headers={"Accept-Language": "en"})
    assert re.search(r'<a href="/password/forgot">Forgot password\?</a>', english.text)
    page = client.get(FORGOT, headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert len(re.findall(r"<input [^>]*autocomplete=", page.text)) == 1
    assert 'autocomplete="username"' in page.text
    assert "no-store" in page.headers["Cache-Control"]


def test_every_name_gets_the_same_answer_byte_for_byte(app, outbox, accounts):
    answers = {}
    for kind, name in accounts.items():
        response = forgot(app, app.test_client(), name)
        # Apart from the time and the random id of each request (in every answer of the site).
        headers = sorted(
            (k, v) for k, v in response.headers.items() if k not in ("Date", "X-Request-ID")
        )
        answers[kind] = (response.status_code, tuple(headers), response.data)
    assert len(set(answers.values())) == 1, answers.keys()
    status, headers, body = answers["active"]
    assert status == 200
    assert "no-store" in dict(headers)["Cache-Control"]
    # Nothing typed comes back, nor a token that would differ from one answer to the next.
    assert b"anna" not in body and b"csrf_token" not in body


def test_only_an_active_account_gets_a_link(app, outbox, accounts):
    before = {name: len(mails_to(outbox, f"{name}@example.com")) for name in accounts.values()}
    for name in accounts.values():
        forgot(app, app.test_client(), name)
    got = {
        name: len(mails_to(outbox, f"{name}@example.com")) - before[name]
        for name in accounts.values()
    }
    # Locked by wrong passwords is still active: a new password is the way out of that lock.
    assert got == {"anna": 1, "nobody": 0, "ivan": 0, "dora": 0, "lena": 1}
    refused = [d["reason"] for e, d in audit_events(app) if e == "password.reset_refused"]
    assert sorted(refused) == ["disabled", "invited"]


def test_the_answer_does_not_wait_for_the_lookup(app, client, monkeypatch):
    """The same time for every name: the answer leaves before the lookup, link and mail."""
    release = threading.Event()
    released = []

    def slow_lookup(*_args):
        # Done inline, the answer would wait here until this gives up.
        released.append(release.wait(3))

    monkeypatch.setattr(password_reset, "request_link", slow_lookup)
    response = post_form(client, FORGOT, {"username": "anna"})
    release.set()
    background.of(app).wait()
    assert response.status_code == 200
    assert released == [True]


@pytest.mark.parametrize(
    "username",
    ["a" * 10_000, "anna\x00", "an\r\nna", "\u202eanna", ""],
    ids=["10 KB", "NUL", "CRLF", "bidi", "empty"],
)
def test_odd_input_gets_the_same_answer_and_no_mail(app, client, outbox, username, caplog):
    activate(app, client, outbox)
    mails = len(outbox.mails())
    expected = forgot(app, app.test_client(), "nobody")
    response = forgot(app, app.test_client(), username)
    assert (response.status_code, response.data) == (200, expected.data)
    assert len(outbox.mails()) == mails
    assert "background work failed" not in caplog.text


def test_a_body_that_is_not_utf8_gets_the_same_answer(app, client, outbox):
    page = client.get(FORGOT)
    body = b"csrf_token=" + csrf_token(page.text).encode() + b"&username=%ff%fe%00anna"
    response = client.post(FORGOT, data=body, content_type="application/x-www-form-urlencoded")
    background.of(app).wait()
    assert response.status_code == 200 and b"anna" not in response.data
    assert outbox.mails() == []


def test_a_post_without_the_csrf_token_is_refused_and_sends_nothing(app, client, outbox):
    activate(app, client, outbox)
    mails = len(outbox.mails())
    response = app.test_client().post(FORGOT, data={"username": "anna"})
    background.of(app).wait()
    assert response.status_code == 400
    assert len(outbox.mails()) == mails


def test_the_pages_speak_german_and_english(client):
    german = post_form(client, FORGOT, {"username": "x"}, headers={"Accept-Language": "de"})
    assert "Bitte prüfen Sie Ihre E-Mails" in german.text
    english = post_form(client, FORGOT, {"username": "x"}, headers={"Accept-Language": "en"})
    assert "Please check your e-mail" in english.text
    assert "60 minutes" in english.text


# --- The link ----------------------------------------------------------------------------------


def test_a_reset_link_works_once_and_needs_the_pin(app, client, outbox):
    activate(app, client, outbox)
    forgot(app, client, "anna")
    mail = outbox.mails()[0]
    assert mail["subject"] == "Neues Passwort für e:service vergeben"
    assert "60 Minuten" in mail["text"]
    link = path_of(outbox.last_link())

    person = app.test_client()
    response = post_form(person, link, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert response.status_code == 303
    # Saved, not in force: until the PIN, the old password is the one.
    assert password_works(app, PASSWORD) and not password_works(app, NEW_PASSWORD)
    done = post_form(person, "/pin", {"pin": outbox.last_pin()})
    assert done.status_code == 200 and "Ihr neues Passwort ist gesetzt" in done.text
    assert password_works(app, NEW_PASSWORD) and not password_works(app, PASSWORD)

    assert app.test_client().get(link).status_code == 410
    events = dict(audit_events(app))
    assert "password.reset_requested" in events and "password.reset" in events


def test_the_request_and_the_reset_are_audited_with_the_network(app, client, outbox):
    activate(app, client, outbox)
    forgot(app, client, "anna")
    set_new_password(app.test_client(), outbox)
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(
                AuditEvent.event.in_(["password.reset_requested", "password.reset"])
            )
        ).all()
        assert [(row.event, row.actor, row.ip) for row in rows] == [
            ("password.reset_requested", "user", "127.0.0.1"),
            ("password.reset", "user", "127.0.0.1"),
        ]


def test_a_second_request_kills_the_first_link(app, client, outbox):
    activate(app, client, outbox)
    forgot(app, client, "anna")
    first = path_of(outbox.last_link())
    forgot(app, client, "anna")
    second = path_of(outbox.last_link())
    assert first != second
    assert client.get(first).status_code == 410
    refused = post_form(
        client,
        first,
        {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
        page_url=second,
    )
    assert refused.status_code == 410
    assert client.get(second).status_code == 200


def test_a_reset_link_expires_after_its_lifetime(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    forgot(app, client, "anna")
    link = path_of(outbox.last_link())
    frozen_clock.advance(seconds=app.config["PASSWORD_RESET_LIFETIME"] - 60)
    assert client.get(link).status_code == 200
    frozen_clock.advance(seconds=120)
    assert client.get(link).status_code == 410


def test_a_tampered_link_is_refused(app, client, outbox):
    activate(app, client, outbox)
    forgot(app, client, "anna")
    link = path_of(outbox.last_link())
    assert client.get(link[:-2] + ("AA" if not link.endswith("AA") else "BB")).status_code == 400


def test_another_browser_cannot_skip_the_pin(app, client, outbox):
    activate(app, client, outbox)
    forgot(app, client, "anna")
    person = app.test_client()
    post_form(
        person,
        path_of(outbox.last_link()),
        {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    # The PIN page belongs to the browser that set the password.
    stranger = app.test_client()
    assert stranger.get("/pin").status_code in (400, 410)
    assert not password_works(app, NEW_PASSWORD)


def test_five_wrong_pins_leave_the_old_password(app, client, outbox):
    activate(app, client, outbox)
    forgot(app, client, "anna")
    person = app.test_client()
    post_form(
        person,
        path_of(outbox.last_link()),
        {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    right = outbox.last_pin()
    wrong = "000000" if right != "000000" else "111111"
    token = csrf_token(person.get("/pin").text)
    for _ in range(app.config["PIN_MAX_ATTEMPTS"]):
        person.post("/pin", data={"csrf_token": token, "pin": wrong})
    assert person.post("/pin", data={"csrf_token": token, "pin": right}).status_code != 200
    assert password_works(app, PASSWORD) and not password_works(app, NEW_PASSWORD)


def test_the_reset_pin_counts_against_the_sms_caps(make_app, outbox):
    app = make_app(SMS_LIMIT_PER_ACCOUNT="1 per day")
    client = app.test_client()
    activate(app, client, outbox)  # its PIN was the day's one SMS
    forgot(app, client, "anna")
    response = post_form(
        client,
        path_of(outbox.last_link()),
        {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    assert response.status_code == 429
    assert password_works(app, PASSWORD) and not password_works(app, NEW_PASSWORD)


# --- What the new password ends, and who is told -----------------------------------------------


def test_a_reset_ends_every_session(app, client, outbox):
    activate(app, client, outbox)
    signed_in = app.test_client()
    login(signed_in, outbox)
    assert signed_in.get("/").status_code == 200
    forgot(app, client, "anna")
    assert set_new_password(app.test_client(), outbox).status_code == 200
    assert signed_in.get("/").headers["Location"] == "/login"


def test_a_reset_ends_the_tokens_and_tells_the_relying_party(
    idp, browser, make_rp, backchannel, outbox
):
    rp = make_rp("--backchannel-logout-uri", backchannel.uri)
    token = rp.sign_in(browser)
    person = idp.app.test_client()
    forgot(idp.app, person, "anna")
    assert set_new_password(person, outbox).status_code == 200

    claims = rp.verify_id_token(token["id_token"])
    logout = backchannel.wait()
    from tests.test_oidc_logout import logout_claims

    assert logout_claims(idp, logout)["sid"] == claims["sid"]
    refresh = requests.post(
        idp.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(rp.client_id, rp.client_secret),
        timeout=5,
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def test_the_whole_reset_through_smtp_and_vonage(real_senders_app, smtp_server, vonage):
    app = real_senders_app
    client = app.test_client()
    invite(app)
    text = smtp_server.mailbox.messages[-1].get_body(("plain",)).get_content()
    link = re.search(r"https?://\S+/activate/\S+", text).group(0)
    post_form(client, path_of(link), {"password": PASSWORD, "password_confirm": PASSWORD})
    assert post_form(client, "/pin", {"pin": newest_pin(vonage)}).status_code == 200
    smtp_server.mailbox.reset()

    forgot(app, client, "anna", headers={"Accept-Language": "en"})
    [request_mail] = smtp_server.mailbox.messages
    assert request_mail["To"] == "anna@example.com"
    assert request_mail["Subject"] == "Neues Passwort für e:service vergeben"
    text = request_mail.get_body(("plain",)).get_content()
    link = re.search(r"https?://\S+/activate/\S+", text).group(0)
    post_form(client, path_of(link), {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert vonage.state.received[-1]["to"] == "4915112345678"
    assert post_form(client, "/pin", {"pin": newest_pin(vonage)}).status_code == 200

    notification = smtp_server.mailbox.messages[-1]
    assert notification["Subject"] == "Ihr Passwort für e:service wurde zurückgesetzt"
    body = notification.get_body(("plain",)).get_content()
    assert "Aus dem Netz: 127.0.0.0/24" in body
    assert not re.search(r"https?://", body)


# --- Rate limits -------------------------------------------------------------------------------


def test_the_per_account_limit_stops_mails_and_not_the_answer(make_app, outbox):
    app = make_app(PASSWORD_RESET_PER_ACCOUNT_AND_NETWORK="2 per hour")
    client = app.test_client()
    activate(app, client, outbox)
    mails = len(outbox.mails())
    known = [forgot(app, client, "anna") for _ in range(3)]
    unknown = [forgot(app, client, "nobody") for _ in range(3)]
    assert {(r.status_code, r.data) for r in known + unknown} == {(200, known[0].data)}
    assert len(outbox.mails()) == mails + 2
    refused = [d["reason"] for e, d in audit_events(app) if e == "password.reset_refused"]
    assert refused == ["rate_limited"]


def test_a_name_that_is_no_account_uses_up_its_requests_too(make_app):
    """Counted alike, so that no name shows itself as none by never running out."""
    app = make_app(PASSWORD_RESET_PER_ACCOUNT_AND_NETWORK="2 per hour")
    client = app.test_client()
    for _ in range(2):
        forgot(app, client, "Nobody")
    with app.app_context():
        key = keyed_digest("password-reset", users.username_key("nobody"))
        assert not ratelimit.take_password_reset(key, "127.0.0.1")


def test_requests_for_her_name_from_elsewhere_do_not_use_up_her_own(make_app, outbox):
    """Whoever asks for her name ten times from another network blocks only that network: her
    own request still gets its link."""
    app = make_app(PASSWORD_RESET_PER_ACCOUNT_AND_NETWORK="2 per day")
    client = app.test_client()
    activate(app, client, outbox)
    mails = len(outbox.mails())
    for _ in range(10):
        forgot(app, client, "anna", environ_base={"REMOTE_ADDR": "203.0.113.7"})
    assert len(outbox.mails()) == mails + 2
    forgot(app, client, "anna", environ_base={"REMOTE_ADDR": "198.51.100.20"})
    assert len(outbox.mails()) == mails + 3


def test_the_requests_for_an_account_over_all_networks_are_bounded(make_app, outbox):
    app = make_app(PASSWORD_RESET_PER_ACCOUNT="3 per day")
    client = app.test_client()
    activate(app, client, outbox)
    mails = len(outbox.mails())
    for network in range(5):
        forgot(app, client, "anna", environ_base={"REMOTE_ADDR": f"203.0.{network}.7"})
    assert len(outbox.mails()) == mails + 3


@pytest.mark.parametrize("setting", ["PER_IP", "PER_NETWORK"])
def test_address_and_network_limits_hit_known_and_unknown_names_alike(make_app, outbox, setting):
    def statuses(names):
        app = make_app(
            RATELIMIT_ENABLED=True,
            RATELIMIT_STORAGE_URI="memory://",
            **{f"RATELIMIT_PASSWORD_FORGOT_{setting}": "3 per minute"},
        )
        client = app.test_client()
        if "anna" in names:
            activate(app, client, outbox)
        return [forgot(app, client, name).status_code for name in names]

    assert statuses(["anna"] * 5) == statuses(["nobody"] * 5) == [200, 200, 200, 429, 429]


# --- The way on --------------------------------------------------------------------------------


def test_the_finished_page_leads_back_to_the_waiting_relying_party(idp, browser, rp, outbox):
    login_page = follow(browser, rp.authorization_url())
    assert urlsplit(login_page.url).path == "/login"
    forgot_page = follow(browser, link(login_page, "Passwort vergessen?"))
    assert submit(browser, forgot_page, {"username": "anna"}, FORGOT).status_code == 200
    background.of(idp.app).wait()

    set_page = follow(browser, outbox.last_link())
    response = submit(
        browser,
        set_page,
        {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
        urlsplit(set_page.url).path,
    )
    assert response.status_code == 303
    pin_page = follow(browser, idp.url("/pin"))
    done = submit(browser, pin_page, {"pin": outbox.last_pin()}, "/pin")
    assert done.status_code == 200

    again = follow(browser, link(done, "Weiter zu Portal"))
    assert parse_qs(urlsplit(again.url).query)["next"][0].startswith("/authorize/resume/")
    response = submit(browser, again, {"username": "anna", "password": NEW_PASSWORD}, "/login")
    assert response.status_code == 303
    pin_page = follow(browser, idp.url("/pin"))
    back = submit(browser, pin_page, {"pin": outbox.last_pin()}, "/pin")
    assert_back_at_the_rp_with_a_code(rp, follow(browser, idp.url(back.headers["Location"])))


def test_without_a_waiting_request_the_finished_page_leads_to_the_portal(app, client, outbox):
    activate(app, client, outbox)
    forgot(app, client, "anna")
    done = set_new_password(app.test_client(), outbox)
    assert f'href="{app.config["PORTAL_URL"]}"' in done.text


# --- Parallel requests -------------------------------------------------------------------------


@pytest.mark.skipif(not POSTGRES_URI, reason="the row locks of PostgreSQL")
def test_a_reset_and_a_login_confirmed_meanwhile_do_not_deadlock(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    other_browser = app.test_client()
    post_form(other_browser, "/login", {"username": "anna", "password": PASSWORD})
    forgot(app, client, "anna")
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
    person = app.test_client()
    link = path_of(outbox.last_link())
    post_form(person, link, {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    pin, token = outbox.last_pin(), csrf_token(person.get("/pin").text)
    with app.app_context():
        user_id = users.find_by_username("anna").id
        waiting_login = db.session.scalar(
            select(AuthTransaction.id).where(
                AuthTransaction.purpose == TransactionPurpose.LOGIN,
                AuthTransaction.state == TransactionState.PENDING,
            )
        )
        db.session.remove()

    # The login's confirmation, held between its two writes: its transaction's row, then the
    # account's (as login.complete takes them).
    engine = create_engine(POSTGRES_URI)
    with engine.connect() as login_side, engine.connect() as observer:
        login_side.execute(text("SET lock_timeout = '10s'"))
        login_side.execute(
            text("UPDATE auth_transactions SET state = 'completed' WHERE id = :id"),
            {"id": waiting_login},
        )
        answers = []
        reset = threading.Thread(
            target=lambda: answers.append(
                person.post("/pin", data={"csrf_token": token, "pin": pin}).status_code
            )
        )
        reset.start()
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        for _ in range(100):
            if observer.execute(text(waiting)).scalar():
                break
            time.sleep(0.05)
        login_side.execute(
            text("UPDATE users SET last_login_at = now() WHERE id = :id"), {"id": user_id}
        )
        login_side.commit()
        reset.join(15)
    engine.dispose()
    assert answers == [200]
    assert password_works(app, NEW_PASSWORD)
