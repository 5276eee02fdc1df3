"""Abuse resistance: request limits per address, network and account; password attempts per
account and address; SMS caps that stop pumping before the provider is called; trusted proxy
addresses; limits shared by gunicorn workers through Redis."""

import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis
import requests
from flask import Config

from idp.platform.resources import resource_dir
from tests.conftest import PASSWORD, activate, csrf_token, invite, login, path_of, post_form
from tests.test_metrics import gunicorn

REDIS_URL = "redis://127.0.0.1:6379/15"


def from_address(client, address: str):
    client.environ_base["REMOTE_ADDR"] = address
    return client


def try_login(client, password=PASSWORD, username="anna", **kwargs):
    return post_form(client, "/login", {"username": username, "password": password}, **kwargs)


@pytest.fixture
def shared_redis():
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    yield REDIS_URL
    connection.flushdb()


def test_login_posts_per_address_get_a_friendly_429_with_retry_after(make_app):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_LOGIN_PER_IP="3 per minute")
    client = app.test_client()
    answers = [try_login(client, password="wrong password here") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert "Zu viele Versuche" in answers[-1].text
    # Another address is not affected.
    assert try_login(from_address(app.test_client(), "198.51.100.7")).status_code != 429


def test_pin_and_activation_posts_per_address_are_limited(make_app, outbox):
    app = make_app(
        RATELIMIT_ENABLED=True,
        RATELIMIT_PIN_PER_IP="2 per minute",
        RATELIMIT_ACTIVATION_PER_IP="2 per minute",
    )
    client = app.test_client()
    invite(app)
    link = path_of(outbox.last_link())
    mismatched = {"password": PASSWORD, "password_confirm": PASSWORD + "x"}
    answers = [post_form(client, link, mismatched) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] != [429, 429]
    assert answers[-1].status_code == 429

    client = app.test_client()
    invite(app, username="bert")
    post_form(
        client,
        path_of(outbox.last_link()),
        {"password": PASSWORD, "password_confirm": PASSWORD},
        environ_base={"REMOTE_ADDR": "198.51.100.8"},
    )
    client.environ_base["REMOTE_ADDR"] = "198.51.100.8"
    answers = [post_form(client, "/pin", {"pin": "000000"}) for _ in range(3)]
    assert 429 not in [a.status_code for a in answers[:2]]
    assert answers[-1].status_code == 429


def test_only_the_limited_views_pass_through_the_limiter(make_app, monkeypatch):
    """The limits sit on their views; protocol requests (the token endpoint, discovery) do not
    pay for a limiter check that has nothing to check."""
    from idp.platform.ratelimit import limiter

    checked = []
    original = limiter._check_request_limit
    monkeypatch.setattr(
        limiter,
        "_check_request_limit",
        lambda *args, **kwargs: checked.append(1) or original(*args, **kwargs),
    )
    app = make_app(RATELIMIT_ENABLED=True)
    client = app.test_client()
    assert client.get("/.well-known/openid-configuration").status_code == 200
    assert client.post("/token", data={"grant_type": "refresh_token"}).status_code in (400, 401)
    assert checked == []
    try_login(client, password="wrong password here")
    assert checked == [1]


def test_login_posts_per_network_count_the_whole_slash_24(make_app):
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_LOGIN_PER_NETWORK="4 per minute")
    statuses = [
        try_login(from_address(app.test_client(), f"203.0.113.{host}")).status_code
        for host in range(1, 7)
    ]
    assert statuses.count(429) == 2
    assert try_login(from_address(app.test_client(), "203.0.114.1")).status_code != 429


def test_login_posts_per_network_count_the_whole_ipv6_slash_48(make_app):
    """A /48 holds 65,536 /64s, and anyone gets one from a tunnel broker: every /64 of it
    counts against the one network."""
    app = make_app(RATELIMIT_ENABLED=True, RATELIMIT_LOGIN_PER_NETWORK="4 per minute")
    statuses = [
        try_login(from_address(app.test_client(), f"2001:db8:7:{subnet:x}::1")).status_code
        for subnet in range(1, 7)
    ]
    assert statuses.count(429) == 2
    assert try_login(from_address(app.test_client(), "2001:db8:8::1")).status_code != 429


def test_guesses_from_elsewhere_do_not_lock_the_owner_out_at_home(make_app, outbox):
    app = make_app(LOCKOUT_THRESHOLD=5)
    home = from_address(app.test_client(), "198.51.100.10")
    activate(app, home, outbox)
    login(home, outbox)  # she has signed in from her office network before
    for n in range(20):
        try_login(from_address(app.test_client(), f"203.0.{n}.1"), password="a wrong guess 42")
    # Locked for a stranger's network, even with the right password...
    stranger = try_login(from_address(app.test_client(), "192.0.2.1"))
    assert stranger.status_code == 200 and "Anmeldung ist fehlgeschlagen" in stranger.text
    # ...but not for the owner at her usual place.
    assert try_login(from_address(app.test_client(), "198.51.100.77")).status_code == 303


def test_the_home_network_over_ipv6_is_her_own_slash_64_not_the_providers_slash_48(
    make_app, outbox
):
    """The limits count a /48, but being at home is narrower: a stranger in another /64 of
    her provider's /48 is bound by the lock that guesses from elsewhere set."""
    app = make_app(LOCKOUT_THRESHOLD=5)
    home = from_address(app.test_client(), "2001:db8:5:1::10")
    activate(app, home, outbox)
    login(home, outbox)
    for n in range(20):
        try_login(from_address(app.test_client(), f"2001:db8:{n + 100:x}::1"), password="wrong 42")
    neighbour = try_login(from_address(app.test_client(), "2001:db8:5:2::1"))
    assert neighbour.status_code == 200 and "Anmeldung ist fehlgeschlagen" in neighbour.text
    assert try_login(from_address(app.test_client(), "2001:db8:5:1::77")).status_code == 303


def test_password_attempts_per_account_and_address(make_app, outbox):
    app = make_app(LOGIN_ATTEMPTS_PER_ACCOUNT_AND_NETWORK="3 per 15 minutes", LOCKOUT_THRESHOLD=100)
    outbox_app_client = app.test_client()
    activate(app, outbox_app_client, outbox)
    guesser = from_address(app.test_client(), "192.0.2.66")
    neighbour = from_address(app.test_client(), "192.0.2.67")  # the same /24
    for _ in range(3):
        try_login(guesser, password="a wrong guess 123")
    sms_before = len(outbox.sms())
    # The right password is not even checked from this network, and the page says so (not
    # "check username and password"), with the time the next attempt is allowed.
    refused = try_login(neighbour)
    assert refused.status_code == 429 and "Zu viele Anmeldeversuche" in refused.text
    assert "Anmeldung ist fehlgeschlagen" not in refused.text
    assert re.search(r"um \d{2}:\d{2} Uhr", refused.text)
    assert len(outbox.sms()) == sms_before
    # The real administrator, elsewhere, signs in as always.
    assert try_login(from_address(app.test_client(), "198.51.100.1")).status_code == 303


def test_a_blocked_login_says_until_when_and_looks_the_same_for_unknown_names(make_app, outbox):
    app = make_app(LOGIN_ATTEMPTS_PER_ACCOUNT_AND_NETWORK="3 per 15 minutes", LOCKOUT_THRESHOLD=100)
    activate(app, app.test_client(), outbox)
    started = time.time()
    pages = {}
    for username in ("anna", "ghost"):
        guesser = from_address(app.test_client(), "192.0.2.66")
        for _ in range(3):
            try_login(guesser, username=username, password="a wrong guess 1")
        blocked = try_login(guesser, username=username, headers={"Accept-Language": "en"})
        assert blocked.status_code == 429
        # The typed name comes back in the field and in the language switch's link.
        page = blocked.text.replace(f'value="{username}"', 'value="?"')
        pages[username] = page.replace(f"username%3D{username}", "username%3D?")
    finished = time.time()

    # The time with its zone: "6:33 AM CET".
    until = re.search(r"Please try again at (\d{1,2}:\d{2}\W[AP]M) \S+\.", pages["anna"])
    assert until, pages["anna"]
    assert "check your username and password" not in pages["anna"]
    # In Berlin's time, rounded up to the minute: when the first of the three leaves the window.
    berlin = ZoneInfo("Europe/Berlin")
    expected = {
        f"{moment.hour % 12 or 12}:{moment.minute:02d}"
        for second in (started, finished)
        for moment in [datetime.fromtimestamp(math.ceil((second + 900) / 60) * 60, berlin)]
    }
    assert until.group(1)[:-3] in expected, (until.group(1), expected)

    def without_the_time(page):
        page = re.sub(r'name="csrf_token" value="[^"]+"', "", page)
        return re.sub(r"again at [^.]+\.", "", page)

    assert without_the_time(pages["anna"]) == without_the_time(pages["ghost"])


def real_verifies_of_parallel_guesses(app, addresses: list[str]) -> int:
    """Fires one wrong password per address at once; returns how many were checked against
    the account's real hash (the rest met a limit and cost a dummy verify)."""
    from idp.accounts.passwords import PasswordHashing

    counted = []
    original = PasswordHashing.verify

    def counting_verify(self, password_hash, password):
        counted.append(password_hash is not None)
        return original(self, password_hash, password)

    guessers = [from_address(app.test_client(), address) for address in addresses]
    tokens = [csrf_token(guesser.get("/login").text) for guesser in guessers]

    def guess(pair):
        guesser, token = pair
        form = {"csrf_token": token, "username": "anna", "password": "parallel wrong guess"}
        return guesser.post("/login", data=form).status_code

    PasswordHashing.verify = counting_verify
    try:
        with ThreadPoolExecutor(10) as pool:
            statuses = list(pool.map(guess, zip(guessers, tokens, strict=True)))
    finally:
        PasswordHashing.verify = original
    # Checked and wrong (200), or not checked past a limit that says so (429).
    assert set(statuses) <= {200, 429}
    assert len(counted) == len(addresses)  # every answer costs one verify
    return counted.count(True)


def test_parallel_guesses_from_one_network_get_no_extra_attempts(make_app, outbox):
    app = make_app(LOGIN_ATTEMPTS_PER_ACCOUNT_AND_NETWORK="5 per 15 minutes", LOCKOUT_THRESHOLD=100)
    activate(app, app.test_client(), outbox)
    addresses = [f"192.0.2.{n}" for n in range(1, 21)]
    assert real_verifies_of_parallel_guesses(app, addresses) == 5


def test_parallel_guesses_from_many_networks_stop_at_the_lock(make_app, outbox):
    app = make_app(LOCKOUT_THRESHOLD=5)
    activate(app, app.test_client(), outbox)
    addresses = [f"203.0.{n}.1" for n in range(20)]
    assert real_verifies_of_parallel_guesses(app, addresses) == 5


def test_sms_cap_per_account_stops_pumping_through_logins(make_app, outbox, frozen_clock):
    """1,000 login requests from 100 addresses by someone who knows the password, each after
    the resend cooldown: the SMS count stays at the account's daily cap."""
    app = make_app(
        SMS_LIMIT_PER_ACCOUNT="5 per day",
        SMS_LIMIT_PER_NUMBER="6 per day",
        LOGIN_ATTEMPTS_PER_ACCOUNT_AND_NETWORK="10 per 15 minutes",
        LOCKOUT_THRESHOLD=10_000,
    )
    activate(app, app.test_client(), outbox)  # one SMS for the activation
    clients = [from_address(app.test_client(), f"100.64.{n}.1") for n in range(100)]
    token_of = {id(c): csrf_token(c.get("/login").text) for c in clients}
    statuses = []
    for _round in range(10):
        for client in clients:
            frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"])
            answer = client.post(
                "/login",
                data={
                    "csrf_token": token_of[id(client)],
                    "username": "anna",
                    "password": PASSWORD,
                },
            )
            statuses.append(answer.status_code)
            if answer.status_code == 303:  # a new flow: the next form needs a fresh token
                token_of[id(client)] = csrf_token(client.get("/login").text)
    assert len(statuses) == 1000
    # The activation's SMS counts too: five in all, then no more today.
    assert len(outbox.sms()) == 5
    assert statuses.count(303) == 4
    assert statuses.count(429) == 996


def test_restarting_the_login_is_no_way_around_the_resend_cooldown(app, outbox, stopped_clock):
    """20 logins with the right password within a minute, each from a new start: one SMS.
    Each login within the cooldown sends none and says when a new PIN can be asked for."""
    activate(app, app.test_client(), outbox)
    sent = len(outbox.sms())
    cooldown = app.config["PIN_RESEND_COOLDOWN"]
    for restart in range(20):
        browser = app.test_client()
        assert try_login(browser).status_code == 303
        page = browser.get("/pin", headers={"Accept-Language": "en"})
        if restart:
            assert "No PIN has been sent for this attempt yet" in page.text
            wait = int(re.search(r"ask for a new PIN in (\d+) seconds", page.text).group(1))
            # The clock moves only by the test's steps: to the second, however loaded the machine.
            assert wait == cooldown - 2 * restart
        stopped_clock.advance(seconds=2)
    assert len(outbox.sms()) == sent + 1
    # The last one asks for its PIN once the wait is over, and signs in with it.
    stopped_clock.advance(seconds=wait - 2)
    page = browser.get("/pin")
    answer = browser.post("/pin", data={"csrf_token": csrf_token(page.text), "resend": "1"})
    assert answer.status_code == 200
    assert len(outbox.sms()) == sent + 2
    assert post_form(browser, "/pin", {"pin": outbox.last_pin()}).status_code == 303


def test_the_default_sms_caps_fit_a_busy_administrators_day(make_app, outbox, frozen_clock):
    """A morning login, 20 bookings confirmed by a step-up, every other one with a resend, an
    afternoon login: all within the shipped per-account and per-number caps."""
    shipped = Config(".")
    shipped.from_pyfile(str(resource_dir("config") / "default.py"))
    app = make_app(
        SMS_LIMIT_PER_ACCOUNT=shipped["SMS_LIMIT_PER_ACCOUNT"],
        SMS_LIMIT_PER_NUMBER=shipped["SMS_LIMIT_PER_NUMBER"],
    )
    browser = app.test_client()
    activate(app, browser, outbox)
    login(browser, outbox)
    for booking in range(20):
        frozen_clock.advance(minutes=15)
        step_up = post_form(
            browser, "/login", {"username": "anna", "password": PASSWORD}, page_url="/login?next=/"
        )
        assert step_up.status_code == 303, (booking, step_up.text)
        if booking % 2:
            frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"])
            assert post_form(browser, "/pin", {"resend": "1"}).status_code == 200, booking
        assert post_form(browser, "/pin", {"pin": outbox.last_pin()}).status_code == 303
    frozen_clock.advance(hours=3)
    login(app.test_client(), outbox)
    assert len(outbox.sms()) == 1 + 1 + 20 + 10 + 1


def test_sms_refusal_is_explained_and_sends_nothing(make_app, outbox):
    app = make_app(SMS_LIMIT_PER_ACCOUNT="1 per day")
    client = app.test_client()
    activate(app, client, outbox)  # uses the one SMS
    answer = try_login(client)
    assert answer.status_code == 429
    assert "keine weiteren SMS" in answer.text
    assert len(outbox.sms()) == 1


@pytest.mark.parametrize(
    ("phone", "message"),
    [("+493012345678", "not a mobile number"), ("+12025550123", "not in an allowed country")],
)
def test_invitations_need_a_mobile_number_of_an_allowed_country(app, phone, message):
    result = app.test_cli_runner().invoke(
        args=["users", "invite", "carl", "--email", "carl@example.com", "--phone", phone]
    )
    assert result.exit_code != 0
    assert message in result.stderr


def test_forwarded_addresses_count_only_behind_trusted_proxies(make_app):
    untrusted = make_app(RATELIMIT_ENABLED=True, RATELIMIT_LOGIN_PER_IP="2 per minute")
    client = untrusted.test_client()
    statuses = [
        try_login(client, headers={"X-Forwarded-For": f"192.0.2.{n}"}).status_code for n in range(3)
    ]
    assert statuses[-1] == 429  # a forged header does not buy new addresses

    trusted = make_app(
        RATELIMIT_ENABLED=True, RATELIMIT_LOGIN_PER_IP="2 per minute", TRUSTED_PROXIES=1
    )
    client = trusted.test_client()
    statuses = [
        try_login(client, headers={"X-Forwarded-For": f"192.0.2.{n}"}).status_code for n in range(3)
    ]
    assert 429 not in statuses


def test_two_gunicorn_workers_share_the_limits_through_redis(tmp_path, database_uri, shared_redis):
    settings = {
        "IDP_RATELIMIT_ENABLED": "true",
        "IDP_RATELIMIT_LOGIN_PER_IP": "6 per minute",
        "IDP_REDIS_URL": shared_redis,
    }
    with gunicorn(tmp_path, database_uri, **settings) as (base, _):
        statuses = []
        for _ in range(12):
            # A new connection each time, so that both workers answer.
            with requests.Session() as browser:
                browser.headers["Connection"] = "close"
                page = browser.get(f"{base}/login", timeout=10)
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                answer = browser.post(
                    f"{base}/login",
                    timeout=10,
                    data={
                        "csrf_token": token,
                        "username": "nobody",
                        "password": "x" * 12,
                    },
                )
                statuses.append(answer.status_code)
    assert statuses.count(200) == 6
    assert statuses.count(429) == 6


def test_production_gunicorn_refuses_several_workers_without_redis(monkeypatch, tmp_path):
    import importlib.util
    from pathlib import Path

    # The settings file names a metrics directory in the environment when none is set: one of
    # this test's own, which it forgets afterwards (the test process's metrics stay in memory).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    spec = importlib.util.spec_from_file_location(
        "gunicorn_conf", Path(__file__).resolve().parents[1] / "gunicorn.conf.py"
    )
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    assert conf.shared_counters_missing({}, 2)
    assert not conf.shared_counters_missing({"IDP_REDIS_URL": "redis://r"}, 2)
    assert not conf.shared_counters_missing({}, 1)
    assert not conf.shared_counters_missing({"IDP_CONFIG": "development"}, 2)
