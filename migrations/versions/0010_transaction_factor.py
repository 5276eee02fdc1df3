"""Transactions: the second factor that confirms them

Every transaction so far was confirmed by the SMS PIN; a new factor (idp.authn.factors) is
named on the transactions it confirms, and only its page may confirm them.

Revision ID: 5b8e1f3a9c42
Revises: 3d9f0b6c2e71
Create Date: 2026-12-02 12:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '5b8e1f3a9c42'
down_revision = '3d9f0b6c2e71'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('auth_transactions', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('factor', sa.String(length=32), server_default='sms', nullable=False)
        )


def downgrade():
    with op.batch_alter_table('auth_transactions', schema=None) as batch_op:
        batch_op.drop_column('factor')
