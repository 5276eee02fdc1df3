"""Users: a PIN lock of its own, and the time of the account's last PIN SMS

Revision ID: 7a13dd4279a5
Revises: 7c2e4b9d1a30
Create Date: 2026-12-01 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7a13dd4279a5'
down_revision = '7c2e4b9d1a30'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pins_locked_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_pin_sent_at', sa.DateTime(), nullable=True))
    # Until now one lock served both steps; a running lock of an account with the default
    # threshold's worth of wrong PINs (5) was theirs, and keeps holding the PIN step.
    op.execute(
        "UPDATE users SET pins_locked_until = locked_until "
        "WHERE failed_pins >= 5 AND locked_until IS NOT NULL"
    )


def downgrade():
    op.execute(
        "UPDATE users SET locked_until = pins_locked_until "
        "WHERE pins_locked_until IS NOT NULL "
        "AND (locked_until IS NULL OR locked_until < pins_locked_until)"
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('last_pin_sent_at')
        batch_op.drop_column('pins_locked_until')
