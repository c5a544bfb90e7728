"""Recaps: "the story so far", a summary of the passages that fell out of the prompt.

Each version is a row (the bot's, a person's replacement, a clearing with empty text); the
story's recap is its latest. ``generation_jobs.kind`` gains the value ``recap`` (a string column:
no change to it here).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-15
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'story_recaps',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('story_id', sa.Integer(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('covers_up_to', sa.Integer(), nullable=False),
        sa.Column('author_kind', sa.String(length=10), nullable=False),
        sa.Column('author_id', sa.String(length=100), nullable=False),
        sa.Column('author_name', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['story_id'], ['stories.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('story_recaps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_story_recaps_story_id'), ['story_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('story_recaps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_story_recaps_story_id'))
    op.drop_table('story_recaps')
