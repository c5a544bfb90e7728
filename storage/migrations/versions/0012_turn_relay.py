"""Bot turns across processes: a worker writes, a chat process shows.

``generation_jobs.partial_text`` is the text so far of a turn a worker process writes for a chat
process to show (``storybot worker`` beside ``--no-worker`` chat processes); ``streamed_by`` and
``streamed_until`` say which chat process shows it while it is written, and until when that
claim holds unless renewed, so that two chat processes never both post "writing…".

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-28
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('generation_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('partial_text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('streamed_by', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('streamed_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('generation_jobs', schema=None) as batch_op:
        batch_op.drop_column('streamed_until')
        batch_op.drop_column('streamed_by')
        batch_op.drop_column('partial_text')
