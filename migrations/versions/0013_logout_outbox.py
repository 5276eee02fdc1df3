"""logout outbox: back-channel logouts owed to relying parties, delivered with retries

Revision ID: 049a48c9a427
Revises: b3d7062c5a65
Create Date: 2026-12-03 10:00:00.000000

"""

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = "049a48c9a427"
down_revision = "b3d7062c5a65"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "logout_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("sid", sa.String(length=43), nullable=False),
        sa.Column("subject", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_problem", sa.String(length=120), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["oauth_clients.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id", "sid", name="uq_logout_delivery_rp_sid"),
    )
    op.create_index("ix_logout_deliveries_due", "logout_deliveries", ["state", "next_attempt_at"])


def downgrade():
    op.drop_index("ix_logout_deliveries_due", table_name="logout_deliveries")
    op.drop_table("logout_deliveries")
