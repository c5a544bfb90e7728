"""People rate the bot's passages: one 👍 or 👎 per person per passage.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'passage_votes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('passage_id', sa.Integer(), nullable=False),
        sa.Column('voter_id', sa.String(length=100), nullable=False),
        sa.Column('voter_name', sa.String(length=200), nullable=False),
        sa.Column('value', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['passage_id'], ['passages.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('passage_id', 'voter_id', name='uq_passage_votes_voter'),
    )
    with op.batch_alter_table('passage_votes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_passage_votes_passage_id'), ['passage_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('passage_votes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_passage_votes_passage_id'))
    op.drop_table('passage_votes')
