"""scoring engine choice and background scoring jobs

`scoring_settings` holds the team's one choice of engine (rules, model or a blend and its weight):
a single row, so every worker reads the same answer with one primary-key lookup. `scoring_jobs`
records each training run and each bulk rescoring with its progress, so any worker (and a reloaded
page) can show it; a partial unique index lets only one job of each kind run at a time.

Revision ID: 0007_model_ui
Revises: 0006_nba
Create Date: 2026-11-25
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0007_model_ui"
down_revision: Union[str, None] = "0006_nba"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "scoring_settings",
        sa.Column("id", sa.Integer(), server_default="1", nullable=False),
        sa.Column("engine", sa.String(length=8), server_default="rules", nullable=False),
        sa.Column("blend_weight", sa.Float(), server_default="0.5", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.CheckConstraint("id = 1", name="ck_scoring_settings_single_row"),
        sa.CheckConstraint("engine IN ('rules', 'model', 'blend')", name="ck_scoring_settings_engine"),
        sa.CheckConstraint("blend_weight BETWEEN 0 AND 1", name="ck_scoring_settings_blend_weight"),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    # The row always exists, so readers never have to create it (and never race to).
    op.execute("INSERT INTO scoring_settings (id) VALUES (1)")
    op.create_table(
        "scoring_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="running", nullable=False),
        sa.Column("percent", sa.Integer(), server_default="0", nullable=False),
        sa.Column("message", sa.String(length=300), server_default="", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.CheckConstraint("kind IN ('train', 'rescore')", name="ck_scoring_jobs_kind"),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="ck_scoring_jobs_status"),
        sa.CheckConstraint("percent BETWEEN 0 AND 100", name="ck_scoring_jobs_percent"),
        sa.CheckConstraint("(status = 'running') = (finished_at IS NULL)", name="ck_scoring_jobs_finished"),
        sa.ForeignKeyConstraint(["model_id"], ["scoring_models.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["requested_by"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    # One training and one rescoring at a time, whichever worker starts them.
    op.create_index("uq_scoring_jobs_running", "scoring_jobs", ["kind"], unique=True,
                    postgresql_where=sa.text("status = 'running'"))
    op.create_index("ix_scoring_jobs_kind_started", "scoring_jobs", ["kind", sa.text("started_at DESC")])


def downgrade() -> None:
    op.drop_index("ix_scoring_jobs_kind_started", table_name="scoring_jobs")
    op.drop_index("uq_scoring_jobs_running", table_name="scoring_jobs", postgresql_where=sa.text("status = 'running'"))
    op.drop_table("scoring_jobs")
    op.drop_table("scoring_settings")
