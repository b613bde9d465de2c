"""plays on activities, and the per-segment play statistics behind the next best action

Activities get a nullable `play` (domain.Play): which sales play a rep's call, email or meeting was,
or which content a prospect's visit or click opened. `play_stats` holds, per open stage and
segment (source x company size band, either possibly 'any'), how often past leads moved forward
with and without each play; it is recomputed from the history in bulk, so showing a next best
action reads a few rows instead of rescanning history.

Revision ID: 0006_nba
Revises: 0005_risk
Create Date: 2026-11-25
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006_nba"
down_revision: Union[str, None] = "0005_risk"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Which activity kinds each play may tag (as domain.PLAY_KINDS, plus reads of content plays).
PLAY_KIND_RULE = (
    "(play = 'case_study' AND kind IN ('email_sent', 'meeting', 'page_visit', 'email_clicked'))"
    " OR (play = 'whitepaper' AND kind IN ('email_sent', 'page_visit', 'email_clicked'))"
    " OR (play = 'pricing_call' AND kind IN ('call', 'meeting'))"
    " OR (play = 'demo' AND kind IN ('meeting', 'call'))"
    " OR (play = 'nurture_sequence' AND kind IN ('email_sent'))"
    " OR (play = 'breakup_email' AND kind IN ('email_sent'))"
)
PLAYS = "('case_study', 'whitepaper', 'pricing_call', 'demo', 'nurture_sequence', 'breakup_email')"
OPEN_STAGES = "('new', 'contacted', 'qualified', 'meeting', 'proposal', 'negotiation')"


def upgrade() -> None:
    op.add_column("activities", sa.Column("play", sa.String(length=32), nullable=True))
    op.create_check_constraint("ck_activities_play", "activities", f"play IS NULL OR ({PLAY_KIND_RULE})")
    # The plays a lead got in its current stage: a few index rows per lead.
    op.create_index("ix_activities_lead_play", "activities", ["lead_id", "occurred_at"],
                    postgresql_where=sa.text("play IS NOT NULL"))
    op.create_table(
        "play_stats",
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("size_band", sa.String(length=16), nullable=False),
        sa.Column("play", sa.String(length=32), nullable=False),
        sa.Column("stays_with", sa.Integer(), nullable=False),
        sa.Column("moved_with", sa.Integer(), nullable=False),
        sa.Column("stays_without", sa.Integer(), nullable=False),
        sa.Column("moved_without", sa.Integer(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"stage IN {OPEN_STAGES}", name="ck_play_stats_stage"),
        sa.CheckConstraint(f"play IN {PLAYS}", name="ck_play_stats_play"),
        sa.CheckConstraint("moved_with BETWEEN 0 AND stays_with", name="ck_play_stats_with"),
        sa.CheckConstraint("moved_without BETWEEN 0 AND stays_without", name="ck_play_stats_without"),
        sa.PrimaryKeyConstraint("stage", "source", "size_band", "play"),
    )


def downgrade() -> None:
    op.drop_table("play_stats")
    op.drop_index("ix_activities_lead_play", table_name="activities")
    op.drop_constraint("ck_activities_play", "activities", type_="check")
    op.drop_column("activities", "play")
