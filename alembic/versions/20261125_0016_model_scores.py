"""model scores: each closed deal's score from a model that did not learn from it, and the open leads'
scores a model would give, per stored model

Training scores every closed deal it learns from with a model that never saw it (the fold models of
its cross-validation; a held-out deal with the model itself): that honest score is what a closed deal
shows while that model scores the team (lists, export, Analytics' win rate by tier at close for
imported history), so no stored score is the model grading its own homework. Training also scores
the open leads as the model would, so the model page can say what switching to it changes (tiers
before and after) without writing a lead. Rows go with their model (ON DELETE CASCADE) and their lead.

Row security as for the scoring state (migration 0012), but read by managers only: the scores of
leads a rep may not see are none of a rep's business, and only the model page (managers) reads them;
the training and rescoring workers run as the tables' owner.

Revision ID: 0016_model_scores
Revises: 0015_sessions_security
Create Date: 2026-12-03
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016_model_scores"
down_revision: Union[str, None] = "0015_sessions_security"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"


def upgrade() -> None:
    op.create_table(
        "model_scores",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=False),
        sa.Column("reasons", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("out_of_fold", sa.Boolean(), nullable=False),
        sa.CheckConstraint("score BETWEEN 0 AND 100", name="ck_model_scores_score"),
        sa.CheckConstraint("tier IN ('hot', 'warm', 'cold')", name="ck_model_scores_tier"),
        sa.ForeignKeyConstraint(["model_id"], ["scoring_models.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_id", "lead_id"),
    )
    # "Has a model learned from this closed deal?" (every rescore asks it per lead) and the cascade.
    op.create_index("ix_model_scores_lead", "model_scores", ["lead_id"], postgresql_where=sa.text("out_of_fold"))
    op.execute("ALTER TABLE model_scores ENABLE ROW LEVEL SECURITY")
    for command in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        check = {"SELECT": "USING ((SELECT crm_sees_team()))", "INSERT": "WITH CHECK ((SELECT crm_sees_team()))",
                 "UPDATE": "USING ((SELECT crm_sees_team())) WITH CHECK ((SELECT crm_sees_team()))",
                 "DELETE": "USING ((SELECT crm_sees_team()))"}[command]
        op.execute(f"CREATE POLICY model_scores_team_{command.lower()} ON model_scores FOR {command} "
                   f"TO {APP_ROLE} {check}")


def downgrade() -> None:
    op.drop_table("model_scores")
