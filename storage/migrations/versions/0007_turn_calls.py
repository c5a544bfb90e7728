"""Round-robin turn calls: what the bot last told a story's channel of its turns (``bot.turns``).

``turn_called_id`` and ``turn_called_at`` name the turn it last called (whose, and when that turn
began), ``turn_call`` how far it went (called, reminded, quiet). Stories from before are marked
quiet since their last passage: a story left idle is not called out of the blue by the upgrade,
while one in play has its current turn called once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-13
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('turn_called_id', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('turn_called_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('turn_call', sa.String(length=10), nullable=True))
    op.execute("UPDATE stories SET turn_call = 'quiet', turn_called_at = turn_started_at")


def downgrade() -> None:
    with op.batch_alter_table('stories', schema=None) as batch_op:
        batch_op.drop_column('turn_call')
        batch_op.drop_column('turn_called_at')
        batch_op.drop_column('turn_called_id')
