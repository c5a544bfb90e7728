"""Moderation: the audit log, the words a channel's moderators ban or allow. (Passages gain the
statuses ``hidden`` and ``withheld``; the column is a plain string, so the schema does not change.)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'moderation_log',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel_key', sa.String(length=400), nullable=False),
        sa.Column('story_id', sa.Integer(), nullable=True),
        sa.Column('passage_id', sa.Integer(), nullable=True),
        sa.Column('action', sa.String(length=20), nullable=False),
        sa.Column('actor_id', sa.String(length=100), nullable=False),
        sa.Column('actor_name', sa.String(length=200), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['passage_id'], ['passages.id']),
        sa.ForeignKeyConstraint(['story_id'], ['stories.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('moderation_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_moderation_log_channel_key'), ['channel_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_moderation_log_story_id'), ['story_id'], unique=False)

    op.create_table(
        'channel_words',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('scope', sa.String(length=400), nullable=False),
        sa.Column('entry', sa.String(length=200), nullable=False),
        sa.Column('rule', sa.String(length=10), nullable=False),
        sa.Column('by_id', sa.String(length=100), nullable=False),
        sa.Column('by_name', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('scope', 'entry', name='uq_channel_words_entry'),
    )


def downgrade() -> None:
    op.drop_table('channel_words')
    with op.batch_alter_table('moderation_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_moderation_log_story_id'))
        batch_op.drop_index(batch_op.f('ix_moderation_log_channel_key'))
    op.drop_table('moderation_log')
