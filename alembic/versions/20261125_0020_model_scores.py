"""model scores: each closed deal's score from a model that did not learn from it, and the open leads'
scores a model would give, per stored model

Training scores every closed deal it learns from with a model that never saw it (the fold models of
its cross-validation; a held-out deal with the model itself): that honest score is what a closed deal
shows while that model scores the team (lists, export, Analytics' win rate by tier at close for
imported history), so no stored score is the model grading its own homework. Training also scores
the open leads as the model would, so the model page can say what switching to it changes (tiers
before and after) without writing a lead. Rows go with their model (ON DELETE CASCADE) and their lead.

Under the app role a row is read by whoever may see its lead (a manager: all, the model page's preview
counts them; a rep: their own leads' rows, which scoring an edit of a closed deal reads, so that it
keeps its out-of-fold score) and written by nobody: training, the rescoring jobs and the command line
write as the tables' owner.

Revision ID: 0020_model_scores
Revises: 0019_source_throttles
Create Date: 2026-12-03
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020_model_scores"
down_revision: Union[str, None] = "0019_source_throttles"
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
    # "Has a model learned from this closed deal?" (rescoring asks it per lead), and deleting a lead.
    op.create_index("ix_model_scores_lead", "model_scores", ["lead_id"])
    op.execute("ALTER TABLE model_scores ENABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON model_scores FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT ON model_scores TO {APP_ROLE}")
    # The leads subquery applies the leads policy for the caller; a manager skips it.
    op.execute(f"CREATE POLICY model_scores_read ON model_scores FOR SELECT TO {APP_ROLE} "
               "USING ((SELECT crm_sees_team()) "
               "OR EXISTS (SELECT 1 FROM leads l WHERE l.id = model_scores.lead_id))")


def downgrade() -> None:
    op.drop_table("model_scores")
