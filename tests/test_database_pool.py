"""Pooled PostgreSQL connections: one the server dropped while it sat idle is replaced before a
request uses it; one in use moments ago is reused without a round trip."""

import time

import pytest
from sqlalchemy import create_engine, text

from idp.platform.extensions import db
from tests.conftest import POSTGRES_URI
from tests.oidc_fixtures import *  # noqa: F403 (fixtures)

pytestmark = pytest.mark.skipif(not POSTGRES_URI, reason="a server connection: PostgreSQL only")


def backend_pid(app) -> int:
    with app.app_context():
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        db.session.remove()  # back to the pool
    return pid


def terminate(pid: int) -> None:
    """What a server restart or an idle timeout does to the pooled connection."""
    admin = create_engine(POSTGRES_URI)
    with admin.begin() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()


def test_a_connection_dropped_while_idle_is_replaced_before_use(make_app):
    app = make_app(DATABASE_PING_AFTER_IDLE_SECONDS=0.05)
    dropped = backend_pid(app)
    terminate(dropped)
    time.sleep(0.2)

    assert app.test_client().get("/readyz").status_code == 200
    assert backend_pid(app) != dropped


def test_without_the_check_the_dropped_connection_fails_the_request(make_app):
    # The counterpart: what the check above prevents.
    app = make_app(DATABASE_PING_AFTER_IDLE_SECONDS=3600)
    terminate(backend_pid(app))

    response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json["checks"]["database"] == "failed"


def test_a_connection_used_moments_ago_is_not_checked(make_app, monkeypatch):
    app = make_app(DATABASE_PING_AFTER_IDLE_SECONDS=60)
    with app.app_context():
        pings = []
        original = db.engine.dialect.do_ping
        monkeypatch.setattr(
            db.engine.dialect, "do_ping", lambda conn: pings.append(1) or original(conn)
        )
    client = app.test_client()
    for _ in range(5):
        assert client.get("/readyz").status_code == 200

    assert pings == []


def test_a_token_read_on_a_lost_connection_is_retried_once_on_a_new_one(make_app):
    """A token read on psycopg's cursor (token_store_pg, the token endpoint's and userinfo's)
    that finds its connection gone (a restart since its last use, and no idle check caught it)
    invalidates that connection, as SQLAlchemy's own execution does, and runs once more on a
    new one: the relying party gets its answer, not a 503."""
    from idp.oidc import token_store
    from idp.platform.database import single_statement_connection

    def autocommit_backend_pid() -> int:
        connection = single_statement_connection(db.session)
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()

    app = make_app(DATABASE_PING_AFTER_IDLE_SECONDS=3600)
    with app.app_context():
        dropped = autocommit_backend_pid()
    with app.app_context():
        assert autocommit_backend_pid() == dropped  # pooled, and reused
        terminate(dropped)
        connection = single_statement_connection(db.session)
        assert token_store.find_token("x" * 43, "refresh") is None
        assert connection.closed  # invalidated, and let go
        assert autocommit_backend_pid() != dropped


def test_a_read_is_retried_once_only(make_app, monkeypatch):
    """The counterpart: a database that stays away fails the read (a 503 upstream), after one
    more try, not a loop of them."""
    from sqlalchemy import exc

    from idp.platform.database import read_retried_once

    tries = []

    def lost(connection):
        tries.append(connection)
        raise exc.OperationalError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)

    app = make_app()
    with app.app_context(), pytest.raises(exc.OperationalError):
        read_retried_once(db.session, lost)
    assert len(tries) == 2 and tries[0] is not tries[1]


def test_a_refresh_grant_is_two_statements_and_no_transaction_round_trips(
    idp, browser, rp, tmp_path
):
    """The token endpoint's round trips to PostgreSQL, read off libpq's protocol trace: the
    token read, and the claim with the new tokens as one statement, each in autocommit; no
    BEGIN, COMMIT or ROLLBACK, which would be as many round trips again."""
    from sqlalchemy import event

    from idp.platform.database import _AUTOCOMMIT_ENGINE
    from tests.test_oidc_flow import post_refresh

    token = rp.sign_in(browser)
    engine = idp.app.extensions[_AUTOCOMMIT_ENGINE]
    trace = (tmp_path / "libpq.trace").open("w+")

    def start_trace(dbapi_connection, record, proxy):
        dbapi_connection.pgconn.trace(trace.fileno())

    def stop_trace(dbapi_connection, record):
        dbapi_connection.pgconn.untrace()

    event.listen(engine, "checkout", start_trace)
    event.listen(engine, "checkin", stop_trace)
    try:
        assert post_refresh(idp, rp, token["refresh_token"]).status_code == 200
    finally:
        event.remove(engine, "checkout", start_trace)
        event.remove(engine, "checkin", stop_trace)
        trace.close()
    lines = (tmp_path / "libpq.trace").read_text().splitlines()
    sent = [line.split("\t") for line in lines if "\tF\t" in line]
    messages = [fields[3].split(" ")[0] for fields in sent]
    simple_queries = [fields[3] for fields in sent if fields[3].startswith("Query")]
    assert simple_queries == []
    assert messages.count("Sync") == 2


def test_a_refresh_grant_makes_no_orm_session(idp, browser, rp, monkeypatch):
    """On PostgreSQL the refresh grant runs on the autocommit connection alone: making the
    request's ORM session (and committing it empty) cost 8 % of its worker CPU."""
    from tests.test_oidc_flow import post_refresh

    token = rp.sign_in(browser)
    with idp.app.app_context():
        registry = db.session.registry
    made = []
    factory = registry.createfunc
    monkeypatch.setattr(registry, "createfunc", lambda: made.append(1) or factory())
    assert post_refresh(idp, rp, token["refresh_token"]).status_code == 200
    assert made == []
    # The counterpart: the spy sees a session being made.
    with idp.app.app_context():
        db.session()
        db.session.remove()
    assert made
