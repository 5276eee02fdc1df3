"""Two database roles on PostgreSQL: `idp db upgrade` connects as the owner
(MIGRATION_DATABASE_URI) and grants the role the app runs as (SQLALCHEMY_DATABASE_URI) what it
needs; on the audit trail that is adding and reading, never rewriting."""

from alembic.util.exc import CommandError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url

# Appended to and read; the head is moved on by every append (its integrity is the HMAC's
# and the anchor's), never removed.
AUDIT_TABLES = {
    "audit_events": "UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER",
    "audit_chain_head": "DELETE, TRUNCATE, REFERENCES, TRIGGER",
}


class RoleError(CommandError):
    """The running role cannot be confined (it owns the tables): the upgrade is rolled back,
    and the command says so in one line, as of any failed migration."""


def migration_engine(config) -> Engine | None:
    uri = config.get("MIGRATION_DATABASE_URI")
    return create_engine(uri) if uri else None


def grant_running_role(connection: Connection, running_uri: str) -> str | None:
    """Grants the running role its privileges in the current schema; returns its name, or
    None when there is nothing to grant (SQLite, or the same role migrates and runs)."""
    if connection.dialect.name != "postgresql":
        return None
    role = make_url(running_uri).username
    owner = connection.execute(text("SELECT current_user")).scalar_one()
    if not role or role == owner:
        return None
    quote = connection.dialect.identifier_preparer.quote
    schema = connection.execute(text("SELECT current_schema()")).scalar_one()
    owned = connection.execute(
        text("SELECT count(*) FROM pg_tables WHERE schemaname = :schema AND tableowner = :role"),
        {"schema": schema, "role": role},
    ).scalar_one()
    if owned:
        raise RoleError(
            f"the role the app runs as owns {owned} tables, so no grant can confine it: "
            f"run REASSIGN OWNED BY {quote(role)} TO {quote(owner)} (as a superuser) first"
        )
    grantee, where = quote(role), quote(schema)
    for statement in (
        f"GRANT USAGE ON SCHEMA {where} TO {grantee}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {where} FROM {grantee}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {where} TO {grantee}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {where} TO {grantee}",
        f"REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {grantee}",
        *(f"REVOKE {what} ON {table} FROM {grantee}" for table, what in AUDIT_TABLES.items()),
    ):
        connection.execute(text(statement))
    return role
