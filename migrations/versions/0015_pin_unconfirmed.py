"""PINs: whether the SMS provider confirmed the SMS

A send that Vonage took but did not answer within SMS_TIMEOUT may still be delivered (and
billed): its PIN stays valid and its cooldown runs, and the PIN page says it may come late.

Revision ID: 6c1f0e9b2a47
Revises: d77df6a12d35
Create Date: 2026-12-04 13:40:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = "6c1f0e9b2a47"
down_revision = "d77df6a12d35"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("pin_challenges", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unconfirmed", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade():
    with op.batch_alter_table("pin_challenges", schema=None) as batch_op:
        batch_op.drop_column("unconfirmed")
