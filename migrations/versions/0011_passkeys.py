"""Passkeys: the WebAuthn credentials of the accounts and their challenges

Revision ID: 7c2d94e1b6fa
Revises: 5b8e1f3a9c42
Create Date: 2026-12-02 13:00:00.000000

"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '7c2d94e1b6fa'
down_revision = '5b8e1f3a9c42'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'passkeys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.LargeBinary(length=1023), nullable=False),
        sa.Column('public_key', sa.LargeBinary(), nullable=False),
        sa.Column('sign_count', sa.Integer(), nullable=False),
        sa.Column('backup_eligible', sa.Boolean(), nullable=False),
        sa.Column('backed_up', sa.Boolean(), nullable=False),
        sa.Column('transports', sa.JSON(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_used_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('credential_id'),
    )
    with op.batch_alter_table('passkeys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_passkeys_user_id'), ['user_id'], unique=False)
    op.create_table(
        'passkey_challenges',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('purpose', sa.String(length=16), nullable=False),
        sa.Column('transaction_id', sa.Integer(), nullable=True),
        sa.Column('session_id', sa.Integer(), nullable=True),
        sa.Column('challenge', sa.LargeBinary(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('used_at', sa.DateTime(), nullable=True),
        sa.Column('passkey_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ['transaction_id'], ['auth_transactions.id'], ondelete='CASCADE'
        ),
        sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['passkey_id'], ['passkeys.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('passkey_challenges', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_passkey_challenges_transaction_id'), ['transaction_id'], unique=False
        )
        batch_op.create_index(
            batch_op.f('ix_passkey_challenges_session_id'), ['session_id'], unique=False
        )


def downgrade():
    op.drop_table('passkey_challenges')
    op.drop_table('passkeys')
