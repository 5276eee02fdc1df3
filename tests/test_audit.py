"""The audit trail: every security event, hash-chained, so that `idp audit verify` finds a
changed, removed or inserted row; `idp audit export` writes JSON lines."""

import json

import pytest
from sqlalchemy import text

from idp.audit.models import AuditEvent
from idp.platform.extensions import db
from tests.conftest import activate, login


@pytest.fixture
def journey(app, client, outbox):
    activate(app, client, outbox)
    login(client, outbox)
    with app.app_context():
        events = [row.event for row in AuditEvent.query.order_by(AuditEvent.id)]
    return events


def run(app, *args):
    return app.test_cli_runner().invoke(args=["audit", *args])


def tamper(app, statement: str) -> None:
    """What an attacker with database access does: past the append-only trigger."""
    with app.app_context(), db.engine.begin() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        connection.execute(text(statement))
        if postgres:
            connection.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))


def test_the_journey_is_audited_with_the_operator(app, journey):
    assert journey[:1] == ["user.invited"]
    for expected in ("pin.sent", "password.set", "user.activated", "login.succeeded"):
        assert expected in journey
    with app.app_context():
        invited = AuditEvent.query.filter_by(event="user.invited").one()
    assert invited.actor.startswith("cli:")


def test_intact_chain_verifies(app, journey):
    result = run(app, "verify")
    assert result.exit_code == 0, result.output
    assert f"{len(journey)} events" in result.output


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor = 'someone else' WHERE id = 2",
        "UPDATE audit_events SET details = '{}' WHERE event = 'login.succeeded'",
        "DELETE FROM audit_events WHERE id = 3",
        "DELETE FROM audit_events WHERE id = (SELECT MAX(id) FROM audit_events)",
    ],
    ids=["changed-actor", "changed-details", "removed-middle", "removed-newest"],
)
def test_tampering_is_detected(app, journey, statement):
    tamper(app, statement)
    result = run(app, "verify")
    assert result.exit_code != 0
    assert "audit trail broken" in result.stderr


def test_postgres_refuses_to_rewrite_history(app, journey):
    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            pytest.skip("the append-only trigger exists on PostgreSQL")
        with pytest.raises(Exception, match="append-only"), db.engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_events"))


def test_export_writes_json_lines_since_a_date(app, journey):
    result = run(app, "export", "--since", "2000-01-01")
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["event"] for line in lines] == journey
    assert all(line["hash"] for line in lines)
    assert run(app, "export", "--since", "2999-01-01").output == ""


def test_export_rejects_a_bad_date(app):
    result = run(app, "export", "--since", "yesterday")
    assert result.exit_code != 0
    assert "ISO date" in result.stderr
