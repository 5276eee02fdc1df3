"""Parallel requests against the real database (SQLite here, PostgreSQL when
IDP_TEST_DATABASE_URI is set): counters are bumped in single conditional statements, so that no
number of parallel requests buys an extra guess or a second session."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from idp.accounts.models import Invitation, User
from idp.authn.models import AuthTransaction, Session
from idp.platform.extensions import db
from tests.conftest import PASSWORD, activate, csrf_token, invite, path_of, post_form

# Rate limits per address would hide what the database does; they have their own tests.
SETTINGS = {"RATELIMIT_ENABLED": False}


@pytest.fixture
def app(make_app):
    return make_app(**SETTINGS)


def in_parallel(count: int, request) -> list:
    """Runs request(i) in `count` threads that start together; returns the responses."""
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait(timeout=30)
        return request(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def browsers_sharing_the_flow(app, client, count):
    """`count` separate clients that carry the same flow cookie (and so the same CSRF token)."""
    name = app.config["SESSION_COOKIE_NAME"]
    token = csrf_token(client.get("/pin").text)
    flow = client.get_cookie(name).value
    clients = []
    for _ in range(count):
        browser = app.test_client()
        browser.set_cookie(name, flow)
        clients.append(browser)
    return clients, token


def flow_of(app, browser) -> str:
    return browser.get_cookie(app.config["SESSION_COOKIE_NAME"]).value


def wrong(pin: str) -> str:
    return "000000" if pin != "000000" else "111111"


def test_parallel_wrong_pins_count_as_exactly_the_allowed_tries(app, client, outbox):
    activate(app, client, outbox)
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    right = outbox.last_pin()
    browsers, token = browsers_sharing_the_flow(app, client, 50)
    flow = flow_of(app, client)

    responses = in_parallel(
        50, lambda i: browsers[i].post("/pin", data={"csrf_token": token, "pin": wrong(right)})
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {410, 422}, statuses
    assert statuses.count(422) == app.config["PIN_MAX_ATTEMPTS"] - 1
    with app.app_context():
        transaction = db.session.scalar(
            db.select(AuthTransaction).where(AuthTransaction.purpose == "login")
        )
        assert transaction.pin_attempts == app.config["PIN_MAX_ATTEMPTS"]
        assert transaction.state == "failed"
        user = db.session.scalar(db.select(User))
        assert user.failed_pins == app.config["PIN_MAX_ATTEMPTS"]
        assert db.session.scalars(db.select(Session)).all() == []
    # The right PIN after all that gets nowhere, even with the flow cookie kept.
    browsers[0].set_cookie(app.config["SESSION_COOKIE_NAME"], flow)
    response = browsers[0].post("/pin", data={"csrf_token": token, "pin": right})
    assert response.status_code == 410


def test_parallel_mixed_pins_never_exceed_the_tries(app, client, outbox):
    """49 wrong and one right PIN at once: the right one may win only within the five tries."""
    activate(app, client, outbox)
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    right = outbox.last_pin()
    browsers, token = browsers_sharing_the_flow(app, client, 50)

    responses = in_parallel(
        50,
        lambda i: browsers[i].post(
            "/pin", data={"csrf_token": token, "pin": right if i == 25 else wrong(right)}
        ),
    )
    statuses = [r.status_code for r in responses]
    with app.app_context():
        transaction = db.session.scalar(
            db.select(AuthTransaction).where(AuthTransaction.purpose == "login")
        )
        sessions = db.session.scalars(db.select(Session)).all()
        assert transaction.pin_attempts <= app.config["PIN_MAX_ATTEMPTS"]
        assert len(sessions) == statuses.count(303) <= 1
    assert statuses.count(422) + statuses.count(303) <= app.config["PIN_MAX_ATTEMPTS"]


def test_parallel_right_pins_create_exactly_one_session(app, client, outbox):
    activate(app, client, outbox)
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    right = outbox.last_pin()
    browsers, token = browsers_sharing_the_flow(app, client, 20)

    responses = in_parallel(
        20, lambda i: browsers[i].post("/pin", data={"csrf_token": token, "pin": right})
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(303) == 1, statuses
    assert set(statuses) <= {303, 410}
    with app.app_context():
        assert len(db.session.scalars(db.select(Session)).all()) == 1
    winners = [r for r in responses if r.status_code == 303]
    assert app.config["AUTH_COOKIE_NAME"] in winners[0].headers["Set-Cookie"]


def test_parallel_right_pins_activate_once(app, client, outbox):
    invite(app)
    link = path_of(outbox.last_link())
    post_form(client, link, {"password": PASSWORD, "password_confirm": PASSWORD})
    right = outbox.last_pin()
    browsers, token = browsers_sharing_the_flow(app, client, 20)

    responses = in_parallel(
        20, lambda i: browsers[i].post("/pin", data={"csrf_token": token, "pin": right})
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1, statuses
    with app.app_context():
        assert db.session.scalar(db.select(Invitation)).state == "activated"
        assert db.session.scalar(db.select(User)).state == "active"


def test_parallel_password_failures_are_all_counted(make_app, client, outbox):
    # No lock during the test, so that every failure must show up in the counter.
    app = make_app(LOCKOUT_THRESHOLD=1000, **SETTINGS)
    client = app.test_client()
    activate(app, client, outbox)
    browsers = [app.test_client() for _ in range(30)]
    tokens = [csrf_token(b.get("/login").text) for b in browsers]

    responses = in_parallel(
        30,
        lambda i: browsers[i].post(
            "/login",
            data={"csrf_token": tokens[i], "username": "anna", "password": f"wrong {i} {PASSWORD}"},
        ),
    )
    assert {r.status_code for r in responses} == {200}
    with app.app_context():
        assert db.session.scalar(db.select(User)).failed_passwords == 30


def test_parallel_password_failures_lock_the_account(app, client, outbox):
    activate(app, client, outbox)
    browsers = [app.test_client() for _ in range(20)]
    tokens = [csrf_token(b.get("/login").text) for b in browsers]
    sms_before = len(outbox.sms())

    in_parallel(
        20,
        lambda i: browsers[i].post(
            "/login",
            data={"csrf_token": tokens[i], "username": "anna", "password": f"wrong {i} {PASSWORD}"},
        ),
    )
    with app.app_context():
        user = db.session.scalar(db.select(User))
        assert app.config["LOCKOUT_THRESHOLD"] <= user.failed_passwords <= 20
        assert user.locked_until is not None
    # Locked: the right password opens nothing now.
    response = post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    assert response.status_code == 200
    assert len(outbox.sms()) == sms_before


def test_parallel_resends_send_exactly_one_pin(app, client, outbox, frozen_clock):
    activate(app, client, outbox)
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
    browsers, token = browsers_sharing_the_flow(app, client, 10)
    sent = len(outbox.sms())

    responses = in_parallel(
        10, lambda i: browsers[i].post("/pin", data={"csrf_token": token, "resend": "1"})
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 429}
    assert len(outbox.sms()) == sent + 1
    with app.app_context():
        transaction = db.session.scalar(
            db.select(AuthTransaction).where(AuthTransaction.purpose == "login")
        )
        assert transaction.pins_sent == 2


def test_parallel_wrong_pins_on_many_open_logins_stop_at_the_account_lock(
    make_app, outbox, frozen_clock
):
    """Someone with the password opens ten logins (each after the cooldown, so that each has
    its PIN) and fires five wrong PINs at each at once: the account takes LOCKOUT_THRESHOLD of
    them, not fifty."""
    app = make_app(PIN_RESEND_COOLDOWN=1, **SETTINGS)
    activate(app, app.test_client(), outbox)
    browsers, tokens, pins = [], [], []
    for _ in range(10):
        frozen_clock.advance(seconds=1)
        browser = app.test_client()
        login = post_form(browser, "/login", {"username": "anna", "password": PASSWORD})
        assert login.status_code == 303
        browsers.append(browser)
        tokens.append(csrf_token(browser.get("/pin").text))
        pins.append(outbox.last_pin())

    responses = in_parallel(
        50,
        lambda i: browsers[i % 10].post(
            "/pin", data={"csrf_token": tokens[i % 10], "pin": wrong(pins[i % 10])}
        ),
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {410, 422, 429}, statuses
    threshold = app.config["LOCKOUT_THRESHOLD"]
    with app.app_context():
        compared = db.session.scalar(
            db.select(db.func.sum(AuthTransaction.pin_attempts)).where(
                AuthTransaction.purpose == "login"
            )
        )
        assert compared == threshold
        assert db.session.scalar(db.select(User)).failed_pins == threshold
    assert statuses.count(422) + statuses.count(410) == threshold


def test_parallel_logins_with_the_right_password_send_one_pin(make_app, outbox):
    """Restarting the login, many times at once, is no way around the resend cooldown."""
    # Parallel attempts count before they are checked: more than the threshold at once would
    # lock the account (that defence has its own tests).
    app = make_app(LOCKOUT_THRESHOLD=100, **SETTINGS)
    client = app.test_client()
    activate(app, client, outbox)
    browsers = [app.test_client() for _ in range(10)]
    tokens = [csrf_token(b.get("/login").text) for b in browsers]
    sent = len(outbox.sms())

    responses = in_parallel(
        10,
        lambda i: browsers[i].post(
            "/login", data={"csrf_token": tokens[i], "username": "anna", "password": PASSWORD}
        ),
    )
    assert [r.status_code for r in responses] == [303] * 10
    assert len(outbox.sms()) == sent + 1
    with app.app_context():
        sent_per_login = db.session.scalars(
            db.select(AuthTransaction.pins_sent).where(AuthTransaction.purpose == "login")
        ).all()
        assert sorted(sent_per_login) == [0] * 9 + [1]


def test_parallel_resends_and_tries_on_one_login_all_get_an_answer(
    app, client, outbox, frozen_clock
):
    """A resend locks the account's row (its cooldown) and the login's; a try locks both as
    well. Taken in the same order, parallel resends and tries wait for each other: no request
    fails (on PostgreSQL a deadlock would end one with a 500)."""
    activate(app, client, outbox)
    post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    right = outbox.last_pin()
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
    browsers, token = browsers_sharing_the_flow(app, client, 20)

    def resend_or_try(i):
        form = {"csrf_token": token, **({"resend": "1"} if i % 2 else {"pin": wrong(right)})}
        return browsers[i].post("/pin", data=form)

    statuses = [r.status_code for r in in_parallel(20, resend_or_try)]
    assert set(statuses) <= {200, 410, 422, 429}, statuses
    assert statuses.count(200) == 1  # one resend passed the cooldown


def test_instances_starting_together_make_one_first_signing_key(make_app):
    # Two pods of a fresh installation answer their first readiness checks at once; two first
    # keys would leave each signing with its own while a relying party caches the other's JWKS.
    from idp.oidc import keys
    from idp.oidc.models import SigningKey
    from idp.platform import clock

    instances = [make_app(**SETTINGS) for _ in range(4)]

    def first_key(index: int) -> str:
        with instances[index].app_context():
            kid = keys.signing_key(keys.DEFAULT_ALG, clock.now()).kid
            db.session.remove()
            return kid

    kids = in_parallel(len(instances), first_key)
    with instances[0].app_context():
        stored = db.session.scalars(db.select(SigningKey.kid)).all()
    assert len(set(kids)) == 1 and stored == kids[:1]
