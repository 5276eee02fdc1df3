"""The audit trail against its own database roles (PostgreSQL only): `idp db upgrade` runs as
the owner (IDP_MIGRATION_DATABASE_URI) and leaves the role the app runs as able to add and
read audit events, never to change, delete or truncate them; what the owner can still do
without the key, re-chaining a truncated trail, `idp audit verify --anchor` names."""

import json
from datetime import UTC, datetime

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from idp import audit, create_app
from idp.audit.models import AuditEvent
from idp.platform.extensions import db
from tests.conftest import POSTGRES_URI

pytestmark = pytest.mark.skipif(
    not POSTGRES_URI, reason="database roles need PostgreSQL (IDP_TEST_DATABASE_URI)"
)
SCHEMA = "audit_roles"


@pytest.fixture
def roles():
    """An owner and an app role (named after the test database, as roles are the server's),
    and a schema of the owner's in the test database; all dropped afterwards."""
    server = make_url(POSTGRES_URI)
    owner, app_role = f"{server.database}_owner", f"{server.database}_app"
    admin = create_engine(POSTGRES_URI, isolation_level="AUTOCOMMIT")

    def drop(connection):
        connection.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        for role in (app_role, owner):
            exists = connection.execute(
                text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}
            ).first()
            if exists:
                connection.execute(text(f"DROP OWNED BY {role}"))
                connection.execute(text(f"DROP ROLE {role}"))

    with admin.connect() as connection:
        drop(connection)
        for role in (owner, app_role):
            connection.execute(text(f"CREATE ROLE {role} LOGIN"))
        connection.execute(text(f"CREATE SCHEMA {SCHEMA} AUTHORIZATION {owner}"))

    def uri(role: str) -> str:
        url = server.set(username=role, query={"options": f"-csearch_path={SCHEMA}"})
        return url.render_as_string(hide_password=False)

    yield {"owner": uri(owner), "app": uri(app_role), "superuser": uri(server.username)}
    with admin.connect() as connection:
        drop(connection)
    admin.dispose()


@pytest.fixture
def installed(roles, tmp_path):
    """Migrated by the owner, with a few events the app (as its own role) wrote."""
    app = create_app(
        "testing",
        {
            "SQLALCHEMY_DATABASE_URI": roles["app"],
            "MIGRATION_DATABASE_URI": roles["owner"],
            "OUTBOX_DIR": str(tmp_path / "outbox"),
        },
    )
    with app.app_context():
        upgrade()
        upgrade()  # again: nothing to migrate, the grants given again
        for number in range(5):
            audit.record("test.event", now=datetime.now(UTC), actor="system", number=number)
            db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def run(app, *args):
    return app.test_cli_runner().invoke(args=["audit", *args])


def execute(uri: str, *statements: str):
    engine = create_engine(uri)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def test_the_owner_migrates_and_the_app_role_only_appends(installed, roles):
    engine = create_engine(roles["superuser"])
    with engine.connect() as connection:
        owners = connection.execute(
            text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = :schema"),
            {"schema": SCHEMA},
        ).scalars()
        assert list(owners) == [make_url(roles["owner"]).username]
    engine.dispose()
    assert run(installed, "verify").exit_code == 0
    for statement in (
        "UPDATE audit_events SET details = '{}'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "DELETE FROM audit_chain_head",
        "TRUNCATE audit_chain_head",
        "UPDATE alembic_version SET version_num = 'x'",
    ):
        with pytest.raises(DBAPIError, match="permission denied"):
            execute(roles["app"], statement)
    # The head moves on with every append; where the keyed chain starts it cannot move.
    with pytest.raises(DBAPIError, match="keyed_from is set once"):
        execute(roles["app"], "UPDATE audit_chain_head SET keyed_from = 1000")
    # Even the owner is refused, until it takes the triggers away (which verify then shows).
    with pytest.raises(DBAPIError, match="audit_events is append-only"):
        execute(roles["owner"], "TRUNCATE audit_events")
    with pytest.raises(DBAPIError, match="audit_events is append-only"):
        execute(roles["owner"], "DELETE FROM audit_events")


def test_the_upgrade_refuses_an_app_role_that_owns_tables(installed, roles, capfd):
    app_role = make_url(roles["app"]).username
    execute(
        roles["superuser"],
        f"CREATE TABLE {SCHEMA}.stray (id integer)",
        f"ALTER TABLE {SCHEMA}.stray OWNER TO {app_role}",
    )
    # Flask-Migrate logs a failed migration's message in one line and exits 1.
    with installed.app_context(), pytest.raises(SystemExit):
        upgrade()
    assert f"REASSIGN OWNED BY {app_role} TO" in capfd.readouterr().err


def test_a_superuser_changing_an_event_is_named(installed, roles):
    execute(
        roles["superuser"],
        "SET LOCAL session_replication_role = replica",
        "UPDATE audit_events SET details = '{\"number\": 9}' WHERE id = 3",
    )
    result = run(installed, "verify")
    assert result.exit_code != 0
    assert "audit trail broken at event 3: the row was changed or re-chained" in result.stderr


@pytest.mark.parametrize("moved", [True, False], ids=["claimed-unkeyed", "keyed-start-kept"])
def test_the_owner_truncating_and_re_chaining_without_the_key_is_named(
    installed, roles, tmp_path, moved
):
    anchor = tmp_path / "anchor.json"
    assert run(installed, "anchor", "--to", str(anchor)).exit_code == 0
    # The owner writes a shorter, plausible history again, chained as well as it can: plain
    # SHA-256 (it has no key), and the keyed start moved past it to claim the rows are old.
    with installed.app_context():
        forged, previous = [], None
        for number in range(3):
            entry = AuditEvent(
                id=number + 1,
                event="test.event",
                created_at=datetime.now(UTC),
                actor="system",
                details={"number": number},
                prev_hash=previous,
            )
            entry.hash = previous = audit.chain_hash(entry, unkeyed=True)
            forged.append(entry)
    statements = [
        "ALTER TABLE audit_events DISABLE TRIGGER USER",
        "ALTER TABLE audit_chain_head DISABLE TRIGGER USER",
        "TRUNCATE audit_events",
    ]
    for entry in forged:
        statements.append(  # our own values only
            "INSERT INTO audit_events (id, created_at, event, actor, details, prev_hash, hash) "  # noqa: S608
            f"VALUES ({entry.id}, '{entry.created_at.isoformat()}', 'test.event', 'system', "
            f"'{json.dumps(entry.details)}', {sql(entry.prev_hash)}, '{entry.hash}')"
        )
    start = ", keyed_from = 100" if moved else ""
    statements += [
        f"UPDATE audit_chain_head SET events = 3, last_event_id = 3, "  # noqa: S608
        f"last_hash = '{forged[-1].hash}'{start}",
        "ALTER TABLE audit_events ENABLE TRIGGER USER",
        "ALTER TABLE audit_chain_head ENABLE TRIGGER USER",
    ]
    execute(roles["owner"], *statements)

    result = run(installed, "verify", "--anchor", str(anchor))
    assert result.exit_code != 0
    if moved:
        assert "broken at event 1: the chain's keyed start was moved" in result.stderr
    else:
        assert "broken at event 1: the row was changed or re-chained" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def sql(value: str | None) -> str:
    return "NULL" if value is None else f"'{value}'"
