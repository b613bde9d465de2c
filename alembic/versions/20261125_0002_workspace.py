"""workspace: follow-ups, stage rules, source costs, snooze

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 04:03:25.514062
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('source_costs',
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('cost', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("source IN ('linkedin', 'website', 'referral', 'webinar', 'paid_search', 'cold_outreach', 'events')", name='ck_source_costs_source'),
    sa.CheckConstraint('cost >= 0', name='ck_source_costs_cost'),
    sa.PrimaryKeyConstraint('source')
    )
    op.create_table('stage_rules',
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('stagnation_days', sa.Integer(), nullable=False),
    sa.CheckConstraint("stage IN ('new', 'contacted', 'qualified', 'meeting', 'proposal', 'negotiation')", name='ck_stage_rules_stage'),
    sa.CheckConstraint('stagnation_days BETWEEN 1 AND 365', name='ck_stage_rules_days'),
    sa.PrimaryKeyConstraint('stage')
    )
    op.create_table('follow_ups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    # Sensible defaults a manager can edit in settings: days a deal may sit in a stage.
    op.bulk_insert(
        sa.table('stage_rules', sa.column('stage', sa.String), sa.column('stagnation_days', sa.Integer)),
        [
            {'stage': stage, 'stagnation_days': days}
            for stage, days in [('new', 7), ('contacted', 14), ('qualified', 21), ('meeting', 7),
                                ('proposal', 14), ('negotiation', 14)]
        ],
    )
    op.create_index('ix_follow_ups_lead', 'follow_ups', ['lead_id'], unique=False)
    op.create_index('ix_follow_ups_open_owner_due', 'follow_ups', ['owner_id', 'due_at'], unique=False, postgresql_where=sa.text('done_at IS NULL'))
    op.add_column('leads', sa.Column('score_at_close', sa.Integer(), nullable=True))
    op.add_column('leads', sa.Column('snoozed_until', sa.DateTime(timezone=True), nullable=True))
    # Autogenerate does not see CHECK constraints on existing tables.
    op.create_check_constraint(
        'ck_leads_score_at_close', 'leads', 'score_at_close IS NULL OR score_at_close BETWEEN 0 AND 100'
    )
    op.create_index('ix_leads_owner_stage_score', 'leads', ['owner_id', 'stage', sa.literal_column('score DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('ix_leads_stage_entered', 'leads', ['stage', 'stage_entered_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_leads_stage_entered', table_name='leads')
    op.drop_index('ix_leads_owner_stage_score', table_name='leads')
    op.drop_constraint('ck_leads_score_at_close', 'leads', type_='check')
    op.drop_column('leads', 'snoozed_until')
    op.drop_column('leads', 'score_at_close')
    op.drop_index('ix_follow_ups_open_owner_due', table_name='follow_ups', postgresql_where=sa.text('done_at IS NULL'))
    op.drop_index('ix_follow_ups_lead', table_name='follow_ups')
    op.drop_table('follow_ups')
    op.drop_table('stage_rules')
    op.drop_table('source_costs')
