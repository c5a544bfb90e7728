"""Generation jobs become the outbox of the turns they write.

``message_ref`` names the platform message that shows a turn; ``show_after`` and ``shown_at``
say when an ended turn may be shown by any process, and that it was. Jobs that ended before
this revision have neither set, so nothing old is shown again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('generation_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_ref', sa.String(length=400), nullable=True))
        batch_op.add_column(sa.Column('show_after', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('shown_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_generation_jobs_show_after', ['show_after'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('generation_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_generation_jobs_show_after')
        batch_op.drop_column('shown_at')
        batch_op.drop_column('show_after')
        batch_op.drop_column('message_ref')
