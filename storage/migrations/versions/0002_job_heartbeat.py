"""Generation jobs get a heartbeat, so several processes can share one job table.

A process refreshes ``heartbeat_at`` on the jobs it is writing; a running job whose heartbeat
is older than ``generation.job_lease_s`` belonged to a process that died, and is run again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('generation_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('generation_jobs', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')
