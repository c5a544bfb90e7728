"""Candidate votes: a bot turn may write several passages for the channel to choose among.

``generation_jobs.candidates`` (how many the turn writes; 1: no vote) and ``vote_closes_at``
(when its vote closes at the latest); ``candidate_votes`` holds each person's vote, one per turn.
``generation_jobs.status`` gains ``voting`` and ``passages.status`` gains ``candidate`` (string
columns: no change to them here).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('generation_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('candidates', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('vote_closes_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        'candidate_votes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('job_id', sa.Integer(), nullable=False),
        sa.Column('passage_id', sa.Integer(), nullable=False),
        sa.Column('voter_id', sa.String(length=100), nullable=False),
        sa.Column('voter_name', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['job_id'], ['generation_jobs.id']),
        sa.ForeignKeyConstraint(['passage_id'], ['passages.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('job_id', 'voter_id', name='uq_candidate_votes_voter'),
    )
    with op.batch_alter_table('candidate_votes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_candidate_votes_job_id'), ['job_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('candidate_votes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_candidate_votes_job_id'))
    op.drop_table('candidate_votes')
    with op.batch_alter_table('generation_jobs', schema=None) as batch_op:
        batch_op.drop_column('vote_closes_at')
        batch_op.drop_column('candidates')
