"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 03:57:04.033935
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('role', sa.String(length=16), server_default='rep', nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("role IN ('rep', 'manager', 'admin')", name='ck_users_role'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('uq_users_email', 'users', [sa.literal_column('lower(email)')], unique=True)
    op.create_table('leads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=120), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('phone', sa.String(length=40), nullable=True),
    sa.Column('title', sa.String(length=120), nullable=True),
    sa.Column('company', sa.String(length=200), nullable=True),
    sa.Column('company_size', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('stage', sa.String(length=16), server_default='new', nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('deal_value', sa.Numeric(precision=12, scale=2), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('stage_entered_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_activity_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_contacted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('score', sa.Integer(), server_default='0', nullable=False),
    sa.Column('tier', sa.String(length=8), server_default='cold', nullable=False),
    sa.Column('score_reasons', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('scored_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('score_valid_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('custom_fields', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.CheckConstraint("source IN ('linkedin', 'website', 'referral', 'webinar', 'paid_search', 'cold_outreach', 'events')", name='ck_leads_source'),
    sa.CheckConstraint("stage IN ('new', 'contacted', 'qualified', 'meeting', 'proposal', 'negotiation', 'won', 'lost')", name='ck_leads_stage'),
    sa.CheckConstraint("tier IN ('hot', 'warm', 'cold')", name='ck_leads_tier'),
    sa.CheckConstraint("tier = CASE WHEN score >= 70 THEN 'hot' WHEN score >= 40 THEN 'warm' ELSE 'cold' END", name='ck_leads_tier_matches_score'),
    sa.CheckConstraint('company_size IS NULL OR company_size >= 0', name='ck_leads_company_size'),
    sa.CheckConstraint('deal_value >= 0', name='ck_leads_deal_value'),
    sa.CheckConstraint('length(btrim(name)) > 0', name='ck_leads_name_not_blank'),
    sa.CheckConstraint('score BETWEEN 0 AND 100', name='ck_leads_score_range'),
    sa.CheckConstraint('version >= 1', name='ck_leads_version'),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_leads_created_at', 'leads', ['created_at'], unique=False)
    op.create_index('ix_leads_owner_score', 'leads', ['owner_id', sa.literal_column('score DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('ix_leads_score', 'leads', [sa.literal_column('score DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('ix_leads_score_valid_until', 'leads', ['score_valid_until'], unique=False)
    op.create_index('ix_leads_source', 'leads', ['source'], unique=False)
    op.create_index('ix_leads_stage_score', 'leads', ['stage', sa.literal_column('score DESC'), sa.literal_column('id DESC')], unique=False)
    op.create_index('uq_leads_email', 'leads', [sa.literal_column('lower(email)')], unique=True)
    op.create_index('uq_leads_external_id', 'leads', ['external_id'], unique=True)
    op.create_table('activities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('subject', sa.String(length=300), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('email_opened', 'email_clicked', 'email_received', 'page_visit', 'pricing_page_visit', 'pricing_request', 'demo_request', 'form_submission', 'meeting', 'call', 'email_sent', 'note')", name='ck_activities_kind'),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_activities_lead_occurred', 'activities', ['lead_id', sa.literal_column('occurred_at DESC')], unique=False)
    op.create_index('ix_activities_user', 'activities', ['user_id'], unique=False)
    op.create_table('stage_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sa.Integer(), nullable=False),
    sa.Column('from_stage', sa.String(length=16), nullable=True),
    sa.Column('to_stage', sa.String(length=16), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("from_stage IS NULL OR from_stage IN ('new', 'contacted', 'qualified', 'meeting', 'proposal', 'negotiation', 'won', 'lost')", name='ck_stage_changes_from'),
    sa.CheckConstraint("to_stage IN ('new', 'contacted', 'qualified', 'meeting', 'proposal', 'negotiation', 'won', 'lost')", name='ck_stage_changes_to'),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_stage_changes_changed_at', 'stage_changes', ['changed_at'], unique=False)
    op.create_index('ix_stage_changes_lead_changed', 'stage_changes', ['lead_id', 'changed_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_stage_changes_lead_changed', table_name='stage_changes')
    op.drop_index('ix_stage_changes_changed_at', table_name='stage_changes')
    op.drop_table('stage_changes')
    op.drop_index('ix_activities_user', table_name='activities')
    op.drop_index('ix_activities_lead_occurred', table_name='activities')
    op.drop_table('activities')
    op.drop_index('uq_leads_external_id', table_name='leads')
    op.drop_index('uq_leads_email', table_name='leads')
    op.drop_index('ix_leads_stage_score', table_name='leads')
    op.drop_index('ix_leads_source', table_name='leads')
    op.drop_index('ix_leads_score_valid_until', table_name='leads')
    op.drop_index('ix_leads_score', table_name='leads')
    op.drop_index('ix_leads_owner_score', table_name='leads')
    op.drop_index('ix_leads_created_at', table_name='leads')
    op.drop_table('leads')
    op.drop_index('uq_users_email', table_name='users')
    op.drop_table('users')
