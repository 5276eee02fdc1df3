"""How the app talks to its database: engine options, SQLite's foreign keys, the check of a
pooled server connection before it is reused, and autocommit for single statements."""

import hashlib
import time
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g
from sqlalchemy import create_engine, event, exc, make_url, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import scoped_session


def configure_engine_options(app: Flask) -> None:
    """Before Flask-SQLAlchemy creates the engine."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    options = dict(app.config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
    if uri.startswith("sqlite"):
        # Wait for a writer instead of failing at once when requests run in parallel.
        options.setdefault("connect_args", {"timeout": 30})
    elif uri.startswith("postgresql"):
        options["connect_args"] = {
            **server_timeouts(app.config, uri),
            **options.get("connect_args", {}),
        }
    # Error messages (and so logs) must not quote SQL parameters: hashes and token digests.
    options.setdefault("hide_parameters", True)
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = options


def server_timeouts(config, uri: str) -> dict:
    """libpq's connection parameters that bound a request's wait for the database: a server
    that does not answer (down, unreachable, failing over) fails the connect after
    DATABASE_CONNECT_TIMEOUT seconds instead of the operating system's minutes, and a statement
    that runs longer than DATABASE_STATEMENT_TIMEOUT is cancelled by the server (0: never);
    both end in a 503, before gunicorn's worker timeout would kill the worker. What the URI
    says itself stays: its connect_timeout, and its `options` (a search_path, say), to which
    the statement timeout is added unless they set one."""
    query = make_url(uri).query
    parameters = {}
    if "connect_timeout" not in query:
        parameters["connect_timeout"] = max(1, round(config["DATABASE_CONNECT_TIMEOUT"]))
    given = query.get("options", "")
    given = " ".join(given) if isinstance(given, tuple) else given
    statement_ms = round(config["DATABASE_STATEMENT_TIMEOUT"] * 1000)
    if statement_ms and "statement_timeout" not in given:
        parameters["options"] = f"{given} -c statement_timeout={statement_ms}".strip()
    return parameters


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


T = TypeVar("T")

_AUTOCOMMIT_ENGINE = "idp.autocommit_engine"
_AUTOCOMMIT_CONNECTION = "idp_autocommit_connection"


def init_database(app: Flask, engine: Engine) -> None:
    """After Flask-SQLAlchemy made the app's engine: the idle check, and on PostgreSQL a second
    pool whose connections stay in autocommit (see single_statement_connection)."""
    idle_seconds = app.config["DATABASE_PING_AFTER_IDLE_SECONDS"]
    install_idle_ping(engine, idle_seconds)
    if engine.dialect.name != "postgresql":
        return
    autocommit = create_engine(
        engine.url, isolation_level="AUTOCOMMIT", **app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    )
    install_idle_ping(autocommit, idle_seconds)
    app.extensions[_AUTOCOMMIT_ENGINE] = autocommit

    @app.teardown_appcontext
    def return_autocommit_connection(_error) -> None:
        connection = g.pop(_AUTOCOMMIT_CONNECTION, None)
        if connection is not None:
            connection.close()


def dispose_autocommit_pool(app: Flask) -> None:
    """Closes the pooled autocommit connections, as Engine.dispose does for the app's engine
    (tests that build many apps)."""
    autocommit = app.extensions.get(_AUTOCOMMIT_ENGINE)
    if autocommit is not None:
        autocommit.dispose()


def single_statement_connection(sessions: scoped_session) -> Connection:
    """A connection for work that is one statement at a time, each complete alone (a read, a
    conditional UPDATE, an INSERT that claims in the same statement). On PostgreSQL, one in
    autocommit, kept for the rest of the request: psycopg would otherwise spend a round trip on
    BEGIN before the first statement and one on COMMIT or ROLLBACK after the last, as many as
    the statements themselves on the token endpoint; and a pool of its own saves switching
    the session's connections in and out of autocommit. Within a transaction that the request's
    session began already, that transaction's connection. `sessions`: the scoped session
    (db.session), asked without making a session where the request has none yet."""
    autocommit = current_app.extensions.get(_AUTOCOMMIT_ENGINE)
    if autocommit is None or (sessions.registry.has() and sessions().in_transaction()):
        return sessions.connection()
    connection = g.get(_AUTOCOMMIT_CONNECTION)
    if connection is None:
        connection = autocommit.connect()
        setattr(g, _AUTOCOMMIT_CONNECTION, connection)
    return connection


def read_retried_once(sessions: scoped_session, read: Callable[[Connection], T]) -> T:
    """`read` on the single-statement connection; once more on a new connection when that one
    was found dead (the server restarted, or dropped it, since it was last used). Only a read
    alone in autocommit is retried: it changed nothing, and no transaction depends on it. A
    write, or a statement inside the session's transaction, fails as it is (a 503)."""
    connection = single_statement_connection(sessions)
    try:
        return read(connection)
    except exc.DBAPIError as error:
        if not error.connection_invalidated or g.get(_AUTOCOMMIT_CONNECTION) is not connection:
            raise
    g.pop(_AUTOCOMMIT_CONNECTION).close()
    return read(single_statement_connection(sessions))


def claims_in_one_statement(connection: Connection) -> bool:
    """Whether a conditional UPDATE and the INSERT that depends on it can be one statement
    (a data-modifying WITH): PostgreSQL, not SQLite."""
    return connection.dialect.name == "postgresql"


def one_at_a_time(session, purpose: str) -> None:
    """Until the session's transaction ends, no other instance passes this point for the same
    `purpose` (a PostgreSQL advisory lock; SQLite is one process, whose threads the caller
    serializes itself)."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


@event.listens_for(Engine, "connect")
def _sqlite_foreign_keys(dbapi_connection, connection_record):
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
