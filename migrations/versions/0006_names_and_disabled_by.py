"""Users: the parts of the name (SCIM `name`), who disabled an account and why, no language

Revision ID: 8c41e2f7a9d3
Revises: 3f1d0c5ab7e2
Create Date: 2026-12-02 03:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '8c41e2f7a9d3'
down_revision = '3f1d0c5ab7e2'
branch_labels = None
depends_on = None

# Who disabled an account already disabled: the actor of its newest disabling event, so that
# provisioning can still enable an account it deactivated itself, and never one an operator did.
LAST_DISABLING = (
    "SELECT {column} FROM audit_events WHERE audit_events.user_id = users.id"
    " AND audit_events.event IN ('user.disabled', 'user.deprovisioned')"
    " ORDER BY audit_events.id DESC LIMIT 1"
)


def upgrade():
    # SQLite makes a column nullable by rebuilding the table, and dropping the old one would
    # run the foreign keys' actions: the audit events would lose their user, the accounts their
    # links, sessions and grants. They are off for the rebuild (PostgreSQL alters in place).
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        op.execute('PRAGMA foreign_keys=OFF')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('formatted_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('given_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('family_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('disabled_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('disabled_reason', sa.String(length=200), nullable=True))
        batch_op.alter_column('locale', existing_type=sa.String(length=8), nullable=True)
    op.execute(
        "UPDATE users SET"
        f" disabled_by = ({LAST_DISABLING.format(column='actor')}),"
        f" disabled_at = ({LAST_DISABLING.format(column='created_at')})"
        " WHERE state = 'disabled'"
    )
    if sqlite:
        op.execute('PRAGMA foreign_keys=ON')


def downgrade():
    sqlite = op.get_bind().dialect.name == 'sqlite'
    if sqlite:
        op.execute('PRAGMA foreign_keys=OFF')
    op.execute("UPDATE users SET locale = 'de' WHERE locale IS NULL")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('locale', existing_type=sa.String(length=8), nullable=False)
        batch_op.drop_column('disabled_reason')
        batch_op.drop_column('disabled_by')
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('family_name')
        batch_op.drop_column('given_name')
        batch_op.drop_column('formatted_name')
    if sqlite:
        op.execute('PRAGMA foreign_keys=ON')
