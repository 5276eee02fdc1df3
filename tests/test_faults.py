"""Faults survived: PostgreSQL restarted or away, Redis down, and what a relying party and a
person see meanwhile: 503 with Retry-After (`temporarily_unavailable` for relying parties, a
"one moment, please" page for people), never a 500 and never a hang; and served again right
after the server is back, without restarting the instance. Each test starts a PostgreSQL and a
Redis of its module's own (tests/outage_servers.py), never the machine's shared ones.

PostgreSQL only (the PostgreSQL run of the suite): SQLite has no server to lose."""

import threading
import time

import pytest
import requests
from flask_migrate import upgrade

from idp import create_app
from idp.platform.extensions import db
from tests.conftest import PASSWORD, POSTGRES_URI, activate, csrf_token, login, post_form
from tests.oidc_fixtures import *  # noqa: F403 (fixtures)
from tests.outage_servers import OwnPostgres, OwnRedis, need
from tests.scim_fixtures import service_client, service_token
from tests.test_oidc_flow import post_refresh

pytestmark = pytest.mark.skipif(not POSTGRES_URI, reason="a database server: PostgreSQL only")

# What the figures in the tests are held to: the next request after the server is back.
SERVED_AGAIN_WITHIN_SECONDS = 2.0


@pytest.fixture(scope="module")
def own_postgres():
    cluster = OwnPostgres()
    need(cluster.bin, "PostgreSQL (initdb)")
    try:
        yield cluster.create()
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def own_redis():
    server = OwnRedis()
    need(server.binary, "redis-server")
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def database_uri(own_postgres):
    """conftest's apps, on this module's own PostgreSQL."""
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": own_postgres.uri})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return own_postgres.uri


@pytest.fixture
def make_app(make_app, own_redis, own_postgres):
    """conftest's apps, with this module's own Redis for the counters and the request rate
    limits on, as in production (the limits on /login and /pin count there too); both
    servers up again after each test, whatever it did to them."""
    import redis

    redis.Redis.from_url(own_redis.url).flushdb()

    def build(**settings):
        return make_app(**{"REDIS_URL": own_redis.url, "RATELIMIT_ENABLED": True, **settings})

    yield build
    if own_redis.process is None:
        own_redis.start()
    if not _answers(own_postgres):
        own_postgres.start()


def _answers(cluster: OwnPostgres) -> bool:
    import psycopg

    try:
        psycopg.connect(cluster.uri.replace("+psycopg", ""), connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_temporarily_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.json() == {"error": "temporarily_unavailable"}
    assert int(response.headers["Retry-After"]) > 0


def seconds_until(succeeds, limit: float = 10.0) -> float:
    """How long until `succeeds()` first returns true, polled without pause."""
    started = time.monotonic()
    while not succeeds():
        assert time.monotonic() - started < limit, "not served again"
    return time.monotonic() - started


# --- PostgreSQL away ----------------------------------------------------------------------------


def test_while_postgresql_is_down_relying_parties_get_temporarily_unavailable(
    idp, browser, rp, own_postgres
):
    """What a relying party sees: 503, `temporarily_unavailable`, Retry-After, at once (the
    connection is refused); its tokens are kept and work again once the database is back."""
    token = rp.sign_in(browser)
    own_postgres.stop()

    started = time.monotonic()
    assert_temporarily_unavailable(post_refresh(idp, rp, token["refresh_token"]))
    assert_temporarily_unavailable(
        requests.get(idp.url("/userinfo"), headers=bearer(token["access_token"]), timeout=10)
    )
    for endpoint in ("/introspect", "/revoke"):
        assert_temporarily_unavailable(
            requests.post(
                idp.url(endpoint),
                data={"token": token["access_token"]},
                auth=(rp.client_id, rp.client_secret),
                timeout=10,
            )
        )
    assert time.monotonic() - started < 5

    own_postgres.start()
    assert requests.get(
        idp.url("/userinfo"), headers=bearer(token["access_token"]), timeout=10
    ).json()["sub"]
    assert post_refresh(idp, rp, token["refresh_token"]).status_code == 200


def test_while_postgresql_is_down_scim_answers_503_in_its_own_format(idp, own_postgres):
    """The ordering system sees a SCIM Error with status 503 and Retry-After; nothing is
    created, and the same request succeeds once the database is back."""
    credentials = service_client(idp)
    token = service_token(idp, credentials).json()["access_token"]
    own_postgres.stop()

    response = requests.get(idp.url("/scim/v2/Users"), headers=bearer(token), timeout=10)

    assert response.status_code == 503
    assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert response.json()["status"] == "503"
    assert "Retry-After" in response.headers
    own_postgres.start()
    assert requests.get(idp.url("/scim/v2/Users"), headers=bearer(token), timeout=10).ok


@pytest.mark.parametrize(
    "language,text",
    [("de", "Einen Moment, bitte"), ("en", "One moment, please")],
)
def test_while_postgresql_is_down_people_see_a_page_that_asks_them_to_try_again(
    idp, rp, own_postgres, language, text
):
    url = rp.authorization_url()
    own_postgres.stop()

    response = requests.get(url, headers={"Accept-Language": language}, timeout=10)

    assert response.status_code == 503
    assert text in response.text
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Retry-After" in response.headers
    own_postgres.start()
    assert requests.get(url, headers={"Accept-Language": language}, timeout=10).ok


def test_after_a_postgresql_restart_the_first_requests_are_served(make_app, outbox, own_postgres):
    """Connections in the pool that were used moments ago (no idle check looks at them) die
    with the restart. The token read that meets one runs once more on a new connection: the
    relying party's first refresh and userinfo after the restart succeed, with no restart of
    the instance. (Without the retry each answered 503 once, before it 500.)"""
    from tests.oidc_fixtures import Browser, RelyingParty, serving

    with serving(lambda **s: make_app(DATABASE_PING_AFTER_IDLE_SECONDS=3600, **s)) as live:
        from tests.conftest import activate

        activate(live.app, live.app.test_client(), outbox)
        created = live.create_client(redirect_uri="http://127.0.0.1:9/callback")
        party = RelyingParty(
            live, created["client_id"], created["client_secret"], "http://127.0.0.1:9/callback"
        )
        token = party.sign_in(Browser(live, outbox))
        # Warm pools: every pooled connection was in use moments ago.
        for _ in range(3):
            assert requests.get(live.url("/userinfo"), headers=bearer(token["access_token"]))
        own_postgres.stop()
        own_postgres.start()
        back = time.monotonic()

        userinfo = requests.get(live.url("/userinfo"), headers=bearer(token["access_token"]))
        refreshed = post_refresh(live, party, token["refresh_token"])
        recovered = time.monotonic() - back

    assert userinfo.status_code == 200, userinfo.text
    assert refreshed.status_code == 200, refreshed.text
    assert recovered < SERVED_AGAIN_WITHIN_SECONDS
    print(f"\nserved again {recovered:.3f} s after PostgreSQL was back")


def test_a_postgresql_restart_under_load_answers_no_500(idp, browser, rp, own_postgres):
    """Relying parties and people keep coming while PostgreSQL restarts: each request is
    answered (200, 302 or 503), none with a 500 and none hanging; the first 200 comes within
    seconds of the server being back."""
    token = rp.sign_in(browser)
    statuses: list[int] = []
    stop = threading.Event()
    back_at: list[float] = []
    first_ok_after_back: list[float] = []

    def keep_asking(ask, needs_the_database):
        while not stop.is_set():
            status = ask().status_code
            statuses.append(status)
            if needs_the_database and status == 200 and back_at and not first_ok_after_back:
                first_ok_after_back.append(time.monotonic() - back_at[0])

    askers = [
        lambda: requests.get(
            idp.url("/userinfo"), headers=bearer(token["access_token"]), timeout=10
        ),
        lambda: requests.get(rp.authorization_url(), allow_redirects=False, timeout=10),
        lambda: requests.get(idp.url("/jwks.json"), timeout=10),
    ]
    threads = [threading.Thread(target=keep_asking, args=(ask, ask is askers[0])) for ask in askers]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        own_postgres.stop()
        time.sleep(0.5)
        own_postgres.start()
        back_at.append(time.monotonic())
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)

    assert 500 not in statuses
    assert set(statuses) <= {200, 302, 503}, set(statuses)
    assert 503 in statuses  # the outage was seen
    assert first_ok_after_back and first_ok_after_back[0] < SERVED_AGAIN_WITHIN_SECONDS
    print(f"\n{len(statuses)} requests; first 200 {first_ok_after_back[0]:.3f} s after the restart")


def test_a_database_that_does_not_answer_fails_the_request_within_the_connect_timeout(
    tmp_path,
):
    """A server that accepts the connection and never answers (a black hole, a half-dead
    failover): the request gets its 503 after DATABASE_CONNECT_TIMEOUT, not after the
    operating system's minutes, and the worker thread is free again."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    app = create_app(
        "testing",
        {
            "SQLALCHEMY_DATABASE_URI": f"postgresql+psycopg://postgres@127.0.0.1:{port}/idp",
            "OUTBOX_DIR": str(tmp_path / "outbox"),
            "DATABASE_CONNECT_TIMEOUT": 1,
        },
    )
    answers = []

    def ask():
        answers.append(app.test_client().get("/userinfo", headers=bearer("x" * 43)))

    started = time.monotonic()
    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(5)
    try:
        assert answers, "the request hangs"
        assert answers[0].status_code == 503
        assert answers[0].json == {"error": "temporarily_unavailable"}
        assert time.monotonic() - started < 4
    finally:
        silent.close()
        with app.app_context():
            db.engine.dispose()


def test_a_statement_that_runs_too_long_is_cancelled_by_the_server(make_app):
    """DATABASE_STATEMENT_TIMEOUT holds on the app's connections: a statement past it fails
    (a 503 for the request, idp.platform.outages) instead of holding the thread until
    gunicorn kills the worker."""
    from sqlalchemy import text

    from idp.platform.outages import DATABASE_ERRORS

    make_app()  # the first app empties the tables afterwards, without the short limit
    app = make_app(DATABASE_STATEMENT_TIMEOUT=0.2)
    with app.app_context():
        assert db.session.scalar(text("SHOW statement_timeout")) == "200ms"
        started = time.monotonic()
        with pytest.raises(DATABASE_ERRORS):
            db.session.execute(text("SELECT pg_sleep(3)"))
        assert time.monotonic() - started < 2
        db.session.rollback()


# --- Redis away -----------------------------------------------------------------------------------

SIGN_IN_NOT_POSSIBLE = {
    "de": "Die Anmeldung ist gerade nicht möglich",
    "en": "Signing in is not possible right now",
}


def assert_sign_in_not_possible(response, language: str) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert SIGN_IN_NOT_POSSIBLE[language] in response.text
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("language", ["de", "en"])
def test_while_redis_is_down_the_password_step_says_so_and_checks_and_sends_nothing(
    app, outbox, own_redis, language
):
    """Without the shared counters no password attempt can be counted: none is checked (fail
    closed) and no PIN is sent; the person reads that signing in is not possible right now
    and to try again in a moment, not an error 500."""
    client = app.test_client()
    activate(app, client, outbox)
    sent = len(outbox.sms())
    own_redis.stop()

    page = client.get("/login", headers={"Accept-Language": language})
    response = client.post(
        "/login",
        data={"csrf_token": csrf_token(page.text), "username": "anna", "password": PASSWORD},
        headers={"Accept-Language": language},
    )

    assert_sign_in_not_possible(response, language)
    assert len(outbox.sms()) == sent
    own_redis.start()
    started = time.monotonic()
    login(client, outbox)
    print(f"\nsigned in {time.monotonic() - started:.3f} s after Redis was back")


def test_a_redis_that_does_not_answer_fails_the_sign_in_within_the_redis_timeout(make_app, outbox):
    """A Redis that accepts connections and never replies (unreachable behind a proxy, stuck):
    the password step answers its 503 after REDIS_TIMEOUT, and the worker thread is free;
    without the timeout it would wait for good."""
    import socket

    app = make_app()
    activate(app, app.test_client(), outbox)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    stuck = make_app(REDIS_URL=f"redis://127.0.0.1:{silent.getsockname()[1]}/0", REDIS_TIMEOUT=0.5)
    client = stuck.test_client()
    page = client.get("/login")
    answers = []

    def sign_in():
        form = {"csrf_token": csrf_token(page.text), "username": "anna", "password": PASSWORD}
        answers.append(client.post("/login", data=form, headers={"Accept-Language": "en"}))

    started = time.monotonic()
    asking = threading.Thread(target=sign_in, daemon=True)
    asking.start()
    asking.join(10)
    silent.close()
    assert answers, "the request hangs"
    assert_sign_in_not_possible(answers[0], "en")
    assert time.monotonic() - started < 5


def test_while_redis_is_down_the_pin_step_neither_resends_nor_confirms(
    app, outbox, own_redis, frozen_clock
):
    """A login at its PIN step when Redis goes: "send a new PIN" sends none, and the right
    PIN is not compared (the PIN attempts are counted there too); both say so with a 503.
    The login is kept: once Redis is back, the same PIN completes it."""
    client = app.test_client()
    activate(app, client, outbox)
    response = post_form(client, "/login", {"username": "anna", "password": PASSWORD})
    assert response.status_code == 303
    pin = outbox.last_pin()
    sent = len(outbox.sms())
    frozen_clock.advance(seconds=app.config["PIN_RESEND_COOLDOWN"] + 1)
    own_redis.stop()

    headers = {"Accept-Language": "en"}
    assert_sign_in_not_possible(post_form(client, "/pin", {"resend": "1"}, headers=headers), "en")
    assert_sign_in_not_possible(post_form(client, "/pin", {"pin": pin}, headers=headers), "en")
    assert len(outbox.sms()) == sent

    own_redis.start()
    assert post_form(client, "/pin", {"pin": pin}).status_code == 303


def test_while_redis_is_down_relying_parties_are_served(idp, browser, rp, own_redis):
    """Discovery, JWKS, refresh grants and userinfo need no counter: they go on, and /readyz
    keeps the instance in the Service ("degraded": it cannot sign in users)."""
    token = rp.sign_in(browser)
    own_redis.stop()

    assert requests.get(idp.url("/.well-known/openid-configuration"), timeout=10).ok
    assert requests.get(idp.url("/jwks.json"), timeout=10).ok
    refreshed = post_refresh(idp, rp, token["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    userinfo = requests.get(
        idp.url("/userinfo"), headers=bearer(refreshed.json()["access_token"]), timeout=10
    )
    assert userinfo.status_code == 200
    ready = requests.get(idp.url("/readyz"), timeout=10)
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["cannot"] == ["sign in users"]

    own_redis.start()
    assert requests.get(idp.url("/readyz"), timeout=10).json()["status"] == "ready"
