"""Pending authorizations: an index on the request's fingerprint

A request that comes again (its handle gone from the flow cookie) keeps the step-up binding of
its earlier rows, found by the fingerprint.

Revision ID: 3d9f0b6c2e71
Revises: 7a13dd4279a5
Create Date: 2026-12-02 09:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '3d9f0b6c2e71'
down_revision = '7a13dd4279a5'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_pending_authorizations_fingerprint'), ['fingerprint'], unique=False
        )


def downgrade():
    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_authorizations_fingerprint'))
