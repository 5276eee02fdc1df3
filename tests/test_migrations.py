"""The migrations and the models describe the same schema, and every revision goes down and up
again."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from idp import create_app
from idp.extensions import db


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
