"""The audit trail: every security event, chained by an HMAC under IDP_AUDIT_KEY, so that
`idp audit verify` finds a changed, removed, inserted or re-chained row, and with an anchor
file (`idp audit anchor`) a cut-off tail; `idp audit export` writes JSON lines."""

import json
import os
import stat
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from idp import audit
from idp.accounts import invitations
from idp.audit.models import AuditChainHead, AuditEvent
from idp.platform.extensions import db
from tests.conftest import activate, invite, login
from tests.scim_fixtures import new_user


@pytest.fixture
def journey(app, client, outbox):
    activate(app, client, outbox)
    login(client, outbox)
    with app.app_context():
        events = [row.event for row in AuditEvent.query.order_by(AuditEvent.id)]
    return events


def run(app, *args):
    return app.test_cli_runner().invoke(args=["audit", *args])


def tamper(app, *statements: str, **parameters) -> None:
    """What an attacker with database access does: past the append-only triggers."""
    with app.app_context(), db.engine.begin() as connection:
        postgres = connection.dialect.name == "postgresql"
        tables = ("audit_events", "audit_chain_head")
        if postgres:
            for table in tables:
                connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        for statement in statements:
            connection.execute(text(statement), parameters)
        if postgres:
            for table in tables:
                connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def rechain(app, *, key: str | None, keyed_from: int | None = None, keep: int | None = None):
    """Rewrites every hash as an attacker without IDP_AUDIT_KEY would: plain SHA-256 (key None,
    claiming the events predate the key) or an HMAC under a guessed key; keep: only the first
    so many events survive (a truncated trail written again)."""
    with app.app_context():
        entries = AuditEvent.query.order_by(AuditEvent.id).all()[:keep]
        db.session.expunge_all()
    real_key = app.config["AUDIT_KEY"]
    app.config["AUDIT_KEY"] = key or "unused"
    try:
        with app.app_context():
            previous = None
            for entry in entries:
                entry.prev_hash = previous
                entry.hash = previous = audit.chain_hash(entry, unkeyed=key is None)
    finally:
        app.config["AUDIT_KEY"] = real_key
    # Our own ids and hex digests only go into these statements.
    last = entries[-1].id
    statements = [f"DELETE FROM audit_events WHERE id > {last}"]  # noqa: S608
    statements += [
        f"UPDATE audit_events SET prev_hash = {sql(e.prev_hash)}, hash = '{e.hash}' "  # noqa: S608
        f"WHERE id = {e.id}"
        for e in entries
    ]
    moved = f", keyed_from = {keyed_from}" if keyed_from is not None else ""
    statements.append(
        f"UPDATE audit_chain_head SET last_hash = '{entries[-1].hash}', "  # noqa: S608
        f"last_event_id = {last}, events = {len(entries)}{moved}"
    )
    tamper(app, *statements)


def sql(value: str | None) -> str:
    return "NULL" if value is None else f"'{value}'"


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
    assert "audit trail broken at event " in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.splitlines()) == 1


@pytest.fixture
def anchored(app, journey, tmp_path):
    path = tmp_path / "anchor.json"
    result = run(app, "anchor", "--to", str(path))
    assert result.exit_code == 0, result.output
    return path


def test_the_anchor_is_a_small_signed_file_only_its_owner_reads(app, journey, anchored):
    assert stat.S_IMODE(os.stat(anchored).st_mode) == 0o600
    document = json.loads(anchored.read_text())
    assert document["events"] == len(journey)
    with app.app_context():
        head = db.session.get(AuditChainHead, 1)
        assert (document["last_event_id"], document["head"]) == (head.last_event_id, head.last_hash)
    assert set(document) == {"version", "last_event_id", "events", "head", "keyed_from", "mac"}
    assert app.config["AUDIT_KEY"] not in anchored.read_text()
    assert not list(anchored.parent.glob(".anchor.json.*"))  # no temporary file left behind


def test_the_honest_trail_verifies_against_its_anchor_and_grows_past_it(app, journey, anchored):
    with app.app_context():
        audit.record("test.later", now=datetime.now(UTC), actor="system")
        db.session.commit()
    result = run(app, "verify", "--anchor", str(anchored))
    assert result.exit_code == 0, result.output
    assert f"{len(journey) + 1} events" in result.output


def test_a_shortened_trail_is_named_against_the_anchor(app, journey, anchored):
    with app.app_context():
        last = db.session.get(AuditChainHead, 1).last_event_id
    # The newest two removed and the head set back by hand: the chain alone looks whole.
    with app.app_context():
        survivor = AuditEvent.query.order_by(AuditEvent.id).all()[-3]
        survivor_id, survivor_hash = survivor.id, survivor.hash
    tamper(
        app,
        "DELETE FROM audit_events WHERE id > :id",
        "UPDATE audit_chain_head SET last_event_id = :id, last_hash = :hash",
        id=survivor_id,
        hash=survivor_hash,
    )
    assert run(app, "verify").exit_code == 0
    result = run(app, "verify", "--anchor", str(anchored))
    assert result.exit_code != 0
    assert (
        f"broken at event {survivor_id + 1}: the trail ends before the anchor's event {last}"
        in (result.stderr)
    )


@pytest.mark.parametrize("keep", [None, 3], ids=["re-chained", "truncated-and-re-chained"])
def test_a_trail_re_chained_without_the_key_is_named(app, journey, anchored, keep):
    # Claimed to predate the key: plain SHA-256 and the keyed start moved past the end.
    rechain(app, key=None, keyed_from=10_000, keep=keep)
    result = run(app, "verify", "--anchor", str(anchored))
    assert result.exit_code != 0
    assert "the chain's keyed start was moved" in result.stderr
    # The keyed start left alone: the first event gives the plain hash away.
    rechain(app, key=None, keyed_from=1, keep=keep)
    result = run(app, "verify")
    assert result.exit_code != 0
    assert "broken at event 1: the row was changed or re-chained" in result.stderr


def test_a_trail_re_chained_with_a_guessed_key_is_named(app, journey):
    rechain(app, key="guessed-" + "x" * 32)
    result = run(app, "verify")
    assert result.exit_code != 0
    assert "broken at event 1: the row was changed or re-chained" in result.stderr


@pytest.mark.parametrize(
    "change",
    [
        lambda document: document.update(events=document["events"] - 1),
        lambda document: document.update(last_event_id=document["last_event_id"] - 1),
        lambda document: document.update(keyed_from=10_000),
        lambda document: document.pop("mac"),
    ],
    ids=["count", "event", "keyed-start", "no-mac"],
)
def test_a_changed_anchor_file_is_refused(app, anchored, change):
    document = json.loads(anchored.read_text())
    change(document)
    anchored.write_text(json.dumps(document))
    result = run(app, "verify", "--anchor", str(anchored))
    assert result.exit_code != 0
    assert "the anchor file was changed or signed with another IDP_AUDIT_KEY" in result.stderr


def test_an_anchor_of_another_key_or_none_is_refused(make_app, app, anchored, tmp_path):
    other = make_app(AUDIT_KEY="another-" + "k" * 32)
    result = run(other, "verify", "--anchor", str(anchored))
    assert "signed with another IDP_AUDIT_KEY" in result.stderr
    result = run(app, "verify", "--anchor", str(tmp_path / "missing.json"))
    assert result.exit_code != 0
    assert "cannot read the anchor file: No such file or directory" in result.stderr
    assert "Traceback" not in result.output


def test_events_from_before_the_key_still_verify(app, journey, tmp_path):
    """An upgraded installation: its events were chained with plain SHA-256, the migration put
    the keyed start after them; new events are keyed, the whole trail verifies."""
    with app.app_context():
        count = AuditEvent.query.count()
    rechain(app, key=None, keyed_from=count + 1_000)  # as the old code wrote them
    with app.app_context():
        last = db.session.get(AuditChainHead, 1).last_event_id
    tamper(app, "UPDATE audit_chain_head SET keyed_from = :start", start=last + 1)
    with app.app_context():
        later = audit.record("test.after_the_upgrade", now=datetime.now(UTC), actor="system")
        db.session.commit()
        assert later.id == last + 1
        assert later.hash == audit.chain_hash(later) != audit.chain_hash(later, unkeyed=True)
    assert run(app, "verify").exit_code == 0
    path = tmp_path / "anchor.json"
    assert run(app, "anchor", "--to", str(path)).exit_code == 0
    assert json.loads(path.read_text())["keyed_from"] == last + 1
    # Claiming the new event as unkeyed too: the anchor knows where the key started.
    rechain(app, key=None, keyed_from=last + 2)
    result = run(app, "verify", "--anchor", str(path))
    assert result.exit_code != 0
    assert "keyed start was moved (the anchor has event" in result.stderr


def test_a_broken_trail_is_not_anchored(app, journey, tmp_path):
    tamper(app, "UPDATE audit_events SET actor = 'x' WHERE id = 2")
    result = run(app, "anchor", "--to", str(tmp_path / "anchor.json"))
    assert result.exit_code != 0
    assert "broken at event 2" in result.stderr
    assert not (tmp_path / "anchor.json").exists()


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


# --- Mail leaves before the audit chain head is locked ------------------------------------------


@pytest.fixture
def mail_moments(monkeypatch):
    """Wraps the mail sender: notes, at the moment each mail leaves, the audit events that the
    sending transaction sees and whether another connection can lock the chain head."""
    moments = []
    original = invitations.send_mail

    def observed(mail):
        seen = db.session.scalars(select(AuditEvent.event).order_by(AuditEvent.id)).all()
        head_free = True
        with db.engine.connect() as other:
            if other.dialect.name == "postgresql":
                other.execute(text("SET LOCAL lock_timeout = '200ms'"))
                try:
                    other.execute(text("SELECT 1 FROM audit_chain_head FOR UPDATE"))
                except OperationalError:  # the lock timeout: the head is held
                    head_free = False
                other.rollback()
        moments.append((mail.to, seen, head_free))
        return original(mail)

    monkeypatch.setattr(invitations, "send_mail", observed)
    return moments


def test_cli_mails_are_sent_before_the_audit_event(app, outbox, mail_moments):
    invite(app)
    result = app.test_cli_runner().invoke(args=["users", "reset-password", "anna"])
    assert result.exit_code == 0, result.output
    assert mail_moments == [
        ("anna@example.com", [], True),
        ("anna@example.com", ["user.invited"], True),
    ]
    with app.app_context():
        events = db.session.scalars(select(AuditEvent.event).order_by(AuditEvent.id)).all()
    assert events == ["user.invited", "password.reset_requested"]
    assert len(outbox.mails()) == 2


def test_provisioning_mail_is_sent_before_the_audit_event(idp, ordering, outbox, mail_moments):
    created = ordering.scim.create(new_user(ordering))
    assert created.id
    [(to, seen, head_free)] = mail_moments
    assert to == "anna@example.com" and head_free
    assert "user.provisioned" not in seen
    assert len(outbox.mails()) == 1
    with idp.app.app_context():
        events = db.session.scalars(select(AuditEvent.event)).all()
    assert events.count("user.provisioned") == 1
