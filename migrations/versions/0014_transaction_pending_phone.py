"""Transactions: the new number that a phone change proves

A phone change (/account/phone) is confirmed by a PIN to the current number, then by one to
the new number; the new number waits on its transactions, server-side, until both are.

Revision ID: d77df6a12d35
Revises: 049a48c9a427
Create Date: 2026-12-03 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'd77df6a12d35'
down_revision = "049a48c9a427"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('auth_transactions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_phone', sa.String(length=20), nullable=True))


def downgrade():
    with op.batch_alter_table('auth_transactions', schema=None) as batch_op:
        batch_op.drop_column('pending_phone')
