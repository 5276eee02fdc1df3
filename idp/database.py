"""How the app talks to its database: engine options, SQLite's foreign keys, and the check of
a pooled server connection before it is reused."""

import time

from flask import Flask
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine


def configure_engine_options(app: Flask) -> None:
    """Before Flask-SQLAlchemy creates the engine."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if uri.startswith("sqlite"):
        # Wait for a writer instead of failing at once when requests run in parallel.
        options.setdefault("connect_args", {"timeout": 30})
    # Error messages (and so logs) must not quote SQL parameters: hashes and token digests.
    options.setdefault("hide_parameters", True)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def install_idle_ping(engine: Engine, idle_seconds: float) -> None:
    """Checks a pooled connection that sat idle for `idle_seconds` or longer before handing it
    out, and replaces it when the server dropped it (restart, failover, idle timeout of a
    proxy). A connection in use moments ago is handed out unchecked: under load that saves a
    round trip on every request, which is what SQLAlchemy's pool_pre_ping costs. HikariCP
    does the same (aliveBypassWindowMs, 500 ms). A server that dies mid-stream still fails the
    requests in flight, with or without a check; SQLAlchemy then discards the whole pool."""
    if engine.dialect.name == "sqlite":
        return  # a file, not a server: nothing drops the connection

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def remember_when_idle(dbapi_connection, record):
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection, record, proxy):
        idle_since = record.info.pop("idle_since", None)
        if idle_since is not None and time.monotonic() - idle_since < idle_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error:
            alive = False
        if not alive:
            # The pool closes this connection and checks out a new one.
            raise exc.DisconnectionError("the database dropped an idle connection")


@event.listens_for(Engine, "connect")
def _sqlite_foreign_keys(dbapi_connection, connection_record):
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
