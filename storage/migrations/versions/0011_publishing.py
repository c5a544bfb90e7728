"""Publishing: which stories the web archive lists, and the keys of their share links.

``stories.published_at`` (set: listed and readable in the archive) and ``published_by_id``;
``publish_authors`` (false: the archive shows the passages without their authors; true for
older stories, which were never published); ``share_key`` (the random part of a story's share
links; none: never shared, or revoked). ``site_secrets`` holds the secret the bot makes for
itself on first use to sign share links when the config names none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-20
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('published_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('published_by_id', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('publish_authors', sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.add_column(sa.Column('share_key', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_stories_published_at'), ['published_at'], unique=False)
    op.create_table(
        'site_secrets',
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('value', sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('site_secrets')
    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stories_published_at'))
        batch_op.drop_column('share_key')
        batch_op.drop_column('publish_authors')
        batch_op.drop_column('published_by_id')
        batch_op.drop_column('published_at')
