"""The migrations and the models describe the same schema, and every revision goes down and up
again."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from idp import create_app
from idp.platform.extensions import db


def drift(app) -> list:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True}
        )
        return compare_metadata(context, db.metadata)


def test_no_drift_between_models_and_migrations(app):
    # The session's database was created by `upgrade()` alone (SQLite or PostgreSQL).
    assert drift(app) == []


def test_downgrade_to_base_and_upgrade_again(tmp_path):
    app = create_app(
        "testing", {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'updown.sqlite3'}"}
    )
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        assert db.inspect(db.engine).get_table_names() == ["alembic_version"]
        upgrade()
    assert drift(app) == []
    with app.app_context():
        db.engine.dispose()


def test_accounts_disabled_before_the_upgrade_keep_who_disabled_them(tmp_path):
    """So that provisioning can still enable an account it deactivated itself, and never one
    an operator disabled: the actor of each account's newest disabling event."""
    from sqlalchemy import text

    app = create_app(
        "testing", {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'backfill.sqlite3'}"}
    )
    user = (
        "INSERT INTO users (id, subject, username, username_key, email, phone, locale, state,"
        " failed_passwords, failed_pins, created_at, updated_at)"
        " VALUES (:id, :id, :name, :name, 'x@example.com', '+4915112345678', 'de', :state, 0, 0,"
        " '2026-11-01', '2026-11-01')"
    )
    event = (
        "INSERT INTO audit_events (created_at, event, user_id, actor, details)"
        " VALUES (:at, :event, :id, :actor, '{}')"
    )
    with app.app_context():
        upgrade(revision="3f1d0c5ab7e2")
        with db.engine.begin() as connection:
            accounts = [(1, "by-scim", "disabled"), (2, "by-cli", "disabled"), (3, "on", "active")]
            for id_, name, state in accounts:
                connection.execute(text(user), {"id": id_, "name": name, "state": state})
            for at, event_name, id_, actor in [
                ("2026-11-02", "user.disabled", 1, "cli:root"),
                ("2026-11-03", "user.enabled", 1, "cli:root"),
                ("2026-11-04", "user.disabled", 1, "client:ordering"),
                ("2026-11-02", "user.disabled", 2, "client:ordering"),
                ("2026-11-05", "user.disabled", 2, "cli:root"),
                ("2026-11-02", "user.disabled", 3, "cli:root"),
            ]:
                connection.execute(
                    text(event), {"at": at, "event": event_name, "id": id_, "actor": actor}
                )
        upgrade()
        with db.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT username, disabled_by, disabled_at FROM users ORDER BY id")
            ).all()
            # SQLite rebuilt the table: the events still name their accounts.
            orphans = "SELECT count(*) FROM audit_events WHERE user_id IS NULL"
            assert connection.execute(text(orphans)).scalar() == 0
        db.engine.dispose()
    assert [(name, by, str(at)[:10] if at else None) for name, by, at in rows] == [
        ("by-scim", "client:ordering", "2026-11-04"),
        ("by-cli", "cli:root", "2026-11-05"),
        ("on", None, None),
    ]
