"""Pooled PostgreSQL connections: one the server dropped while it sat idle is replaced before a
request uses it; one in use moments ago is reused without a round trip."""

import time

import pytest
from sqlalchemy import create_engine, text

from idp.extensions import db
from tests.conftest import POSTGRES_URI

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
