"""audit chain keyed: where the HMAC chain starts; TRUNCATE refused

Revision ID: b3d7062c5a65
Revises: 7c2d94e1b6fa
Create Date: 2026-12-02 13:15:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b3d7062c5a65'
down_revision = '7c2d94e1b6fa'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('audit_chain_head', schema=None) as batch_op:
        batch_op.add_column(sa.Column('keyed_from', sa.Integer(), nullable=True))
    # Events written so far keep their plain SHA-256; from the next one on the chain is keyed.
    op.execute(
        "INSERT INTO audit_chain_head (id, events) SELECT 1, 0 "
        "WHERE NOT EXISTS (SELECT 1 FROM audit_chain_head WHERE id = 1)"
    )
    op.execute(
        "UPDATE audit_chain_head SET keyed_from = "
        "(SELECT COALESCE(MAX(id), 0) + 1 FROM audit_events) WHERE id = 1"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION audit_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        # The head is moved on by every append; where the keyed chain starts is set once.
        op.execute(
            """
            CREATE FUNCTION audit_chain_head_guard() RETURNS trigger AS $$
            BEGIN
                IF OLD.keyed_from IS NOT NULL
                   AND NEW.keyed_from IS DISTINCT FROM OLD.keyed_from THEN
                    RAISE EXCEPTION 'audit_chain_head.keyed_from is set once';
                END IF;
                RETURN NEW;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_chain_head_guard BEFORE UPDATE ON audit_chain_head "
            "FOR EACH ROW EXECUTE FUNCTION audit_chain_head_guard()"
        )
        op.execute(
            "CREATE TRIGGER audit_chain_head_append_only BEFORE DELETE ON audit_chain_head "
            "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
        )
        for table in ("audit_events", "audit_chain_head"):
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
            )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in ("audit_events", "audit_chain_head"):
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER audit_chain_head_append_only ON audit_chain_head")
        op.execute("DROP TRIGGER audit_chain_head_guard ON audit_chain_head")
        op.execute("DROP FUNCTION audit_chain_head_guard()")
        op.execute("DROP FUNCTION audit_append_only()")
    with op.batch_alter_table('audit_chain_head', schema=None) as batch_op:
        batch_op.drop_column('keyed_from')
