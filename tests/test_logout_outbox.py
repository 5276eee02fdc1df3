"""Back-channel logouts that are never lost: the logout outbox (idp.oidc.logout_outbox), its
pollers and `idp logout deliver`, against relying parties that are down, slow or flaky."""

import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from idp import create_app
from idp.audit.models import AuditEvent
from idp.authn import sessions
from idp.authn.models import Session
from idp.errors import ConfigurationError
from idp.oidc import logout_outbox
from idp.oidc.logout_poller import LogoutPoller
from idp.oidc.models import Client, LogoutDelivery, LogoutDeliveryState
from idp.platform import clock
from idp.platform.extensions import db
from tests.oidc_fixtures import *  # noqa: F403 (fixtures)
from tests.servers import HOST, free_port
from tests.test_oidc_logout import logout_claims

ROOT = Path(__file__).resolve().parents[1]


class RelyingPartyEndpoint:
    """A relying party's back-channel logout endpoint on a port of its own, which can be down
    (nothing listens), answer an error, or take the tokens (slowly, when asked)."""

    def __init__(self):
        self.port = free_port()
        self.uri = f"http://{HOST}:{self.port}/backchannel-logout"
        self.tokens: list[str] = []
        self.status = 200
        self.delay = 0.0
        self.endless_body = False  # answers with a body that goes on and on
        self.server = None
        self.lock = threading.Lock()

    def up(self) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = parse_qs(self.rfile.read(length).decode())
                time.sleep(endpoint.delay)
                with endpoint.lock:
                    endpoint.tokens += body.get("logout_token", [])
                self.send_response(endpoint.status)
                self.end_headers()
                ends = time.monotonic() + 3  # long enough to tell
                with contextlib.suppress(OSError):  # the IdP hangs up
                    while endpoint.endless_body and time.monotonic() < ends:
                        self.wfile.write(b"x" * 65536)
                        time.sleep(0.01)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((HOST, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def endpoint():
    rp = RelyingPartyEndpoint()
    yield rp
    rp.down()


def deliveries(app) -> list[LogoutDelivery]:
    with app.app_context():
        rows = db.session.scalars(select(LogoutDelivery).order_by(LogoutDelivery.id)).all()
        db.session.expunge_all()
        return list(rows)


def wait_until(condition, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def deliver(app) -> str:
    result = app.test_cli_runner().invoke(args=["logout", "deliver"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def log_out(idp, browser, token) -> None:
    query = urlencode({"id_token_hint": token["id_token"]})
    response = browser.http.get(idp.url(f"/end_session?{query}"), allow_redirects=False, timeout=5)
    assert response.status_code in (302, 303)


def first_try_made(idp):
    """The try made right after the logout, in the background: finished (and failed)."""
    return wait_until(lambda: [r for r in deliveries(idp.app) if r.last_problem] or None)[0]


def counted(result: str) -> float:
    return REGISTRY.get_sample_value("idp_logout_deliveries_total", {"result": result}) or 0


def test_a_relying_party_that_was_down_gets_the_logout_once_it_is_back(
    idp, browser, make_rp, endpoint, frozen_clock, caplog
):
    rp = make_rp("--backchannel-logout-uri", endpoint.uri, name="cloud.phone")
    token = rp.sign_in(browser)
    sid = rp.verify_id_token(token["id_token"])["sid"]
    log_out(idp, browser, token)  # cloud.phone is down: nothing listens

    row = first_try_made(idp)
    assert (row.attempts, row.state, row.last_problem) == (1, "pending", "ConnectionError")
    first_try = row.next_attempt_at - timedelta(seconds=5)
    # Tried again after 5 s, 10 s, 20 s...: while it is down, each failure doubles the pause.
    for pause in (5, 10, 20):
        frozen_clock.advance(seconds=pause - 1)
        assert deliver(idp.app).startswith("0 tried")
        frozen_clock.advance(seconds=1)
        assert deliver(idp.app) == "1 tried, 0 delivered, 1 owed"
    endpoint.up()
    frozen_clock.advance(seconds=40)
    assert deliver(idp.app) == "1 tried, 1 delivered, 0 owed"

    [received] = endpoint.tokens
    claims = logout_claims(idp, received)
    assert (claims["sid"], claims["aud"]) == (sid, rp.client_id)
    # Signed for this try: a token of the first try would have expired long ago.
    assert claims["iat"] >= int((first_try + timedelta(seconds=75)).timestamp())
    assert claims["exp"] - claims["iat"] <= 120
    # Delivered is done: later runs send nothing again.
    frozen_clock.advance(hours=2)
    assert deliver(idp.app) == "0 tried, 0 delivered, 0 owed"
    assert len(endpoint.tokens) == 1
    # The failures were logged, and never with the token (a credential until it expires).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("idp"))
    assert "back-channel logout to" in ours
    assert received.split(".")[2] not in caplog.text and "eyJ" not in ours


def test_a_relying_party_that_answers_slowly_is_given_up_on_after_the_timeout(idp, endpoint):
    endpoint.delay = 3
    endpoint.up()
    idp.app.config["BACKCHANNEL_LOGOUT_TIMEOUT"] = 0.5
    created = idp.create_client("--backchannel-logout-uri", endpoint.uri)
    with idp.app.app_context():
        client = db.session.scalar(select(Client).where(Client.client_id == created["client_id"]))
        fake = SimpleNamespace(sid="s" * 43, user=SimpleNamespace(subject="s"), user_id=None)
        logout_outbox.enqueue(fake, [client], clock.now())
        db.session.commit()
        started = time.monotonic()
        assert logout_outbox.deliver_due(clock.now()) == (1, 0)
        assert time.monotonic() - started < 2
    assert deliveries(idp.app)[0].last_problem == "ReadTimeout"


def test_a_relying_party_that_answers_with_an_endless_body_costs_neither_time_nor_memory(
    idp, endpoint
):
    """Its status is the answer; the body is never read."""
    endpoint.endless_body = True
    endpoint.up()
    idp.app.config["BACKCHANNEL_LOGOUT_TIMEOUT"] = 1
    created = idp.create_client("--backchannel-logout-uri", endpoint.uri)
    with idp.app.app_context():
        client = db.session.scalar(select(Client).where(Client.client_id == created["client_id"]))
        fake = SimpleNamespace(sid="e" * 43, user=SimpleNamespace(subject="e"), user_id=None)
        logout_outbox.enqueue(fake, [client], clock.now())
        db.session.commit()
        started = time.monotonic()
        assert logout_outbox.deliver_due(clock.now()) == (1, 1)
        assert time.monotonic() - started < 1


def test_each_try_carries_a_freshly_signed_token(idp, browser, make_rp, endpoint, frozen_clock):
    endpoint.status = 503  # up, but failing
    endpoint.up()
    rp = make_rp("--backchannel-logout-uri", endpoint.uri)
    log_out(idp, browser, rp.sign_in(browser))
    first_try_made(idp)
    for _ in range(2):
        frozen_clock.advance(hours=1)
        deliver(idp.app)
    claims = [logout_claims(idp, token) for token in endpoint.tokens]
    assert len(claims) == 3
    assert len({c["jti"] for c in claims}) == 3
    assert len({c["iat"] for c in claims}) == 3
    assert deliveries(idp.app)[0].last_problem == "HTTP 503"


def test_the_schedule_doubles_up_to_an_hour(app):
    with app.app_context():
        pauses = [logout_outbox.retry_delay(n).total_seconds() for n in range(1, 14)]
    assert pauses[:4] == [5, 10, 20, 40]
    assert max(pauses) == pauses[-1] == 3600


def test_a_logout_not_taken_within_a_day_is_given_up_audited_and_counted(
    idp, browser, make_rp, endpoint, frozen_clock
):
    rp = make_rp("--backchannel-logout-uri", endpoint.uri)
    log_out(idp, browser, rp.sign_in(browser))
    ended = first_try_made(idp).created_at
    given_up_before = counted("given_up")

    tries = 1
    while (row := deliveries(idp.app)[0]).state == "pending":
        assert row.next_attempt_at <= ended + timedelta(days=1)
        frozen_clock.offset += row.next_attempt_at - clock.now() + timedelta(seconds=0.5)
        assert tries < 60, "never given up"
        deliver(idp.app)
        tries += 1
    assert row.state == "given_up"
    assert row.ended_at - ended < timedelta(days=1, minutes=1)
    assert 25 < tries < 40  # about hourly once the pause has grown to an hour
    assert counted("given_up") == given_up_before + 1
    with idp.app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "logout.given_up"))
        assert event.details["client_id"] == rp.client_id
        assert event.details["problem"] == "ConnectionError"
        assert event.user_id is not None
    # Up again the day after: a given-up logout is not sent any more.
    endpoint.up()
    frozen_clock.advance(hours=1)
    assert deliver(idp.app) == "0 tried, 0 delivered, 0 owed"


def signed_in_session(idp, browser, rp):
    token = rp.sign_in(browser)
    return rp.verify_id_token(token["id_token"])["sid"]


def test_the_outbox_row_is_written_in_the_transaction_that_ends_the_session(
    idp, browser, make_rp, endpoint
):
    rp = make_rp("--backchannel-logout-uri", endpoint.uri)
    sid = signed_in_session(idp, browser, rp)
    with idp.app.app_context():
        session = db.session.scalar(select(Session).where(Session.sid == sid))
        sessions.end(session, clock.now())  # what is to run after the commit is dropped
        db.session.flush()
        assert db.session.scalar(select(func.count()).select_from(LogoutDelivery)) == 1
        db.session.rollback()  # the end of the session did not happen: nor did the logout
    assert deliveries(idp.app) == []

    with idp.app.app_context():
        session = db.session.scalar(select(Session).where(Session.sid == sid))
        sessions.end(session, clock.now())
        db.session.commit()  # committed, even with nothing run after the commit: it is owed
    [row] = deliveries(idp.app)
    assert (row.sid, row.state, row.attempts) == (sid, "pending", 0)


def test_ending_a_session_twice_owes_one_logout_per_relying_party(
    idp, browser, make_rp, endpoint, frozen_clock
):
    endpoint.up()
    portal = make_rp("--backchannel-logout-uri", endpoint.uri, name="e:service")
    phone = make_rp("--backchannel-logout-uri", endpoint.uri, name="cloud.phone")
    sid = signed_in_session(idp, browser, portal)
    phone.sign_in(browser)
    with idp.app.app_context():
        for _ in range(2):
            session = db.session.scalar(select(Session).where(Session.sid == sid))
            sessions.end(session, clock.now())
            db.session.commit()
    rows = deliveries(idp.app)
    assert len(rows) == 2 and {r.sid for r in rows} == {sid}
    assert deliver(idp.app) == "2 tried, 2 delivered, 0 owed"
    audiences = sorted(logout_claims(idp, t)["aud"] for t in endpoint.tokens)
    assert audiences == sorted([portal.client_id, phone.client_id])


def test_two_deliverers_at_once_deliver_each_logout_exactly_once(idp, make_app, endpoint):
    endpoint.delay = 0.02  # slow enough that the two overlap
    endpoint.up()
    created = idp.create_client("--backchannel-logout-uri", endpoint.uri)
    sids = [secrets.token_urlsafe(32) for _ in range(3 * logout_outbox.CLAIM_BATCH)]
    with idp.app.app_context():
        client = db.session.scalar(select(Client).where(Client.client_id == created["client_id"]))
        now = clock.now()
        for sid in sids:
            fake = SimpleNamespace(sid=sid, user=SimpleNamespace(subject="s"), user_id=None)
            logout_outbox.enqueue(fake, [client], now)
        db.session.commit()

    other = make_app(ISSUER=idp.issuer)
    start = threading.Barrier(2)
    results = []

    def deliverer(app):
        with app.app_context():
            start.wait()
            while (tried := logout_outbox.deliver_due(clock.now()))[0]:
                results.append(tried)

    threads = [threading.Thread(target=deliverer, args=(a,)) for a in (idp.app, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    received = [logout_claims(idp, token)["sid"] for token in endpoint.tokens]
    assert sorted(received) == sorted(sids)  # every one, and none twice
    assert sum(tried for tried, _ in results) == len(sids)
    assert {r.state for r in deliveries(idp.app)} == {LogoutDeliveryState.DELIVERED}


def test_finished_deliveries_are_forgotten_a_week_after_they_ended(
    idp, browser, make_rp, endpoint, frozen_clock
):
    endpoint.up()
    portal = make_rp("--backchannel-logout-uri", endpoint.uri, name="e:service")
    log_out(idp, browser, portal.sign_in(browser))
    wait_until(lambda: endpoint.tokens)
    wait_until(lambda: deliveries(idp.app)[0].state == "delivered")
    endpoint.down()
    phone = make_rp("--backchannel-logout-uri", endpoint.uri, name="cloud.phone")
    log_out(idp, browser, phone.sign_in(browser))
    first_try_made(idp)

    frozen_clock.advance(days=6, hours=23)
    deliver(idp.app)  # cloud.phone's is given up now (a day late), and kept from now on
    assert [r.state for r in deliveries(idp.app)] == ["delivered", "given_up"]
    frozen_clock.advance(hours=2)
    deliver(idp.app)
    assert [r.state for r in deliveries(idp.app)] == ["given_up"]


def test_a_deliverer_that_died_mid_try_leaves_the_row_to_another_after_its_lease(
    idp, make_rp, browser, endpoint, frozen_clock
):
    endpoint.up()
    rp = make_rp("--backchannel-logout-uri", endpoint.uri)
    sid = signed_in_session(idp, browser, rp)
    with idp.app.app_context():
        session = db.session.scalar(select(Session).where(Session.sid == sid))
        sessions.end(session, clock.now())
        db.session.commit()
        [claim] = logout_outbox.claim_due(clock.now())  # ... and then the worker is killed
        lease = logout_outbox.lease()
    assert deliver(idp.app).startswith("0 tried")  # held: no second delivery meanwhile
    frozen_clock.offset += lease
    assert deliver(idp.app) == "1 tried, 1 delivered, 0 owed"
    assert [logout_claims(idp, t)["sid"] for t in endpoint.tokens] == [sid]
    assert deliveries(idp.app)[0].attempts == claim.attempt + 1


def test_the_poller_of_a_gunicorn_worker_delivers_when_the_relying_party_is_back(
    idp, browser, make_rp, endpoint, frozen_clock, monkeypatch, tmp_path
):
    # gunicorn's settings name a metrics directory in the environment when none is set: one of
    # this test's own, forgotten afterwards (this process's metrics stay in its memory). Not at
    # import: every later test of the process would read metrics from that empty directory.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    from idp.gunicorn_conf import post_worker_init

    rp = make_rp("--backchannel-logout-uri", endpoint.uri)
    log_out(idp, browser, rp.sign_in(browser))
    first_try_made(idp)
    idp.app.config["LOGOUT_POLL_INTERVAL"] = 0.05
    post_worker_init(SimpleNamespace(wsgi=idp.app))
    poller = idp.app.extensions["idp.logout_poller"]
    try:
        endpoint.up()
        frozen_clock.advance(seconds=6)
        wait_until(lambda: endpoint.tokens)
    finally:
        poller.stop()
    assert deliveries(idp.app)[0].state == "delivered"


def test_every_gunicorn_worker_polls_the_outbox(app, database_uri, endpoint, tmp_path):
    """As production runs it (gthread workers): a logout owed, and nobody else delivering."""
    endpoint.up()
    created = app.test_cli_runner().invoke(
        args=[
            "clients",
            "create",
            "Portal",
            "--json",
            "--redirect-uri",
            f"http://{HOST}:9/cb",
            "--backchannel-logout-uri",
            endpoint.uri,
        ]
    )
    assert created.exit_code == 0, created.output
    with app.app_context():
        client = db.session.scalar(select(Client))
        fake = SimpleNamespace(sid="g" * 43, user=SimpleNamespace(subject="s"), user_id=None)
        logout_outbox.enqueue(fake, [client], clock.now())
        db.session.commit()
    port = free_port()
    env = {
        **os.environ,
        "IDP_CONFIG": "testing",
        "IDP_SQLALCHEMY_DATABASE_URI": database_uri,
        "IDP_INSTANCE_PATH": str(tmp_path / "instance"),
        "IDP_LOGOUT_POLL_INTERVAL": "0.2",
        "GUNICORN_BIND": f"{HOST}:{port}",
        "GUNICORN_WORKERS": "2",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "python:idp.gunicorn_conf", "idp.wsgi:app"]
    process = subprocess.Popen(
        gunicorn, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: endpoint.tokens, timeout=30)
        time.sleep(1)  # the other worker looks too, and finds nothing left
    finally:
        process.terminate()
        process.wait(30)
    assert [logout_claims_offline(t)["sid"] for t in endpoint.tokens] == ["g" * 43]


def logout_claims_offline(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_a_command_line_run_starts_no_poller(app):
    assert deliver(app) == "0 tried, 0 delivered, 0 owed"
    assert "idp.logout_poller" not in app.extensions
    assert not [t for t in threading.enumerate() if t.name == "logout-poller" and t.is_alive()]


def test_a_poller_survives_a_failing_database_look(app, monkeypatch, caplog):
    def failing(now):
        raise RuntimeError("database away")

    monkeypatch.setattr(logout_outbox, "deliver_due", failing)
    LogoutPoller(app, 1).poll_once()
    assert "logout poller: delivery failed" in caplog.text


@pytest.mark.parametrize(
    "changes",
    [
        {"LOGOUT_RETRY_FIRST_DELAY": 0},
        {"LOGOUT_RETRY_FIRST_DELAY": 7200},  # more than the largest pause
        {"LOGOUT_GIVE_UP_AFTER": 0},
        {"LOGOUT_POLL_INTERVAL": -1},
        {"LOGOUT_RETRY_MAX_DELAY": "an hour"},
    ],
)
def test_a_schedule_that_cannot_work_stops_the_start(database_uri, changes):
    with pytest.raises(ConfigurationError) as refused:
        create_app("testing", {"SQLALCHEMY_DATABASE_URI": database_uri, **changes})
    assert "IDP_LOGOUT_" in str(refused.value)
