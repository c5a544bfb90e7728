"""Branches: a story copied from another up to one of its passages (``/story branch``).

``parent_id`` names the story it was copied from, ``branched_at`` the parent's passage number it
branched at. Older stories are no branches: both stay null.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-14
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('branched_at', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_stories_parent_id'), ['parent_id'], unique=False)
        batch_op.create_foreign_key('fk_stories_parent_id_stories', 'stories', ['parent_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.drop_constraint('fk_stories_parent_id_stories', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_stories_parent_id'))
        batch_op.drop_column('branched_at')
        batch_op.drop_column('parent_id')
