"""Clients: access token format (RFC 9068 JWT or opaque)

Revision ID: 3f1d0c5ab7e2
Revises: 63cca08c8ff4
Create Date: 2026-11-26 15:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3f1d0c5ab7e2'
down_revision = '63cca08c8ff4'
branch_labels = None
depends_on = None


def upgrade():
    # Every existing client keeps the JWT access tokens it has been getting.
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('access_token_format', sa.String(length=8), server_default='jwt', nullable=False))


def downgrade():
    with op.batch_alter_table('oauth_clients', schema=None) as batch_op:
        batch_op.drop_column('access_token_format')
