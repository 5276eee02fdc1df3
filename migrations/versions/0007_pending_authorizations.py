"""Pending authorization requests, kept server-side for the way back to the relying party

Revision ID: 7c2e4b9d1a30
Revises: 8c41e2f7a9d3
Create Date: 2026-12-02 03:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7c2e4b9d1a30'
down_revision = '8c41e2f7a9d3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('pending_authorizations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('handle_digest', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('login_asked_at', sa.DateTime(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['client_id'], ['oauth_clients.id'], name=op.f('fk_pending_authorizations_client_id_oauth_clients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_pending_authorizations_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_authorizations')),
    sa.UniqueConstraint('handle_digest', name=op.f('uq_pending_authorizations_handle_digest'))
    )
    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_authorizations_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pending_authorizations_expires_at'), ['expires_at'], unique=False)


def downgrade():
    with op.batch_alter_table('pending_authorizations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_authorizations_expires_at'))
        batch_op.drop_index(batch_op.f('ix_pending_authorizations_client_id'))
    op.drop_table('pending_authorizations')
