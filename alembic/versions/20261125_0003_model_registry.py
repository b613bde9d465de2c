"""model registry: trained scoring models, at most one active

Revision ID: 0003_model
Revises: 0002
Create Date: 2026-11-25 04:27:18.640386
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '0003_model'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('scoring_models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('trained_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('features', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('metrics', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('is_active', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('model', sa.LargeBinary(), nullable=False),
    sa.Column('trained_by', sa.Integer(), nullable=True),
    sa.CheckConstraint('rows > 0', name='ck_scoring_models_rows'),
    sa.CheckConstraint('version >= 1', name='ck_scoring_models_version'),
    sa.ForeignKeyConstraint(['trained_by'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    # A partial unique index: any number of inactive models, never two active ones.
    op.create_index('uq_scoring_models_active', 'scoring_models', ['is_active'], unique=True, postgresql_where=sa.text('is_active'))
    op.create_index('uq_scoring_models_version', 'scoring_models', ['version'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_scoring_models_version', table_name='scoring_models')
    op.drop_index('uq_scoring_models_active', table_name='scoring_models', postgresql_where=sa.text('is_active'))
    op.drop_table('scoring_models')
