"""model previews as one row of arrays per model, and the kind in the activities' per-lead index

Training stores what each open lead would score under the new model, so that the model page can count
the tiers a switch would change. These previews were rows of `model_scores`: at a million leads
480,000 rows a training, each inserted with two index entries and a foreign-key check that locks
its lead (FOR KEY SHARE dirties the lead's page): 11-21 s of a retrain. The page only ever counts
them, joined to the open leads, so they are now one row per model in `model_previews` (lead ids and
scores as two arrays, in id order; the tier follows from the score): one COPY line. A lead deleted
later keeps its number in an older preview, which the count's join to `leads` ignores; the row goes
with its model (ON DELETE CASCADE) or when training prunes old versions. Under the app role only a
manager reads it (the preview names every open lead); it is written as the tables' owner.

`ix_activities_lead_occurred` (lead_id, occurred_at DESC) is rebuilt under the same name with the kind
INCLUDEd: training reads the prospect's kinds of each closed deal before a moment of its open life,
which is then one index-only probe per deal instead of a scan of every activity (16 s of a retrain
at a million leads for the newest 100,000 deals). Same key, so every other read keeps its plan;
the index grows by about a quarter.

Revision ID: 0040_train16
Revises: 0039_pages16
Create Date: 2026-12-04
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0040_train16"
down_revision: Union[str, None] = "0039_pages16"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
# scoring.engine's tiers (HOT_MIN, WARM_MIN), for turning previews back into rows on a downgrade.
TIER_OF_SCORE = "CASE WHEN p.score >= 70 THEN 'hot' WHEN p.score >= 40 THEN 'warm' ELSE 'cold' END"


def upgrade() -> None:
    op.create_table(
        "model_previews",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("lead_ids", postgresql.ARRAY(sa.Integer()), nullable=False),
        sa.Column("scores", postgresql.ARRAY(sa.SmallInteger()), nullable=False),
        sa.CheckConstraint("cardinality(lead_ids) = cardinality(scores)", name="ck_model_previews_sizes"),
        sa.ForeignKeyConstraint(["model_id"], ["scoring_models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_id"),
    )
    op.execute("ALTER TABLE model_previews ENABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON model_previews FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT ON model_previews TO {APP_ROLE}")
    op.execute(f"CREATE POLICY model_previews_read ON model_previews FOR SELECT TO {APP_ROLE} "
               "USING ((SELECT crm_sees_team()))")
    op.execute("""
        INSERT INTO model_previews (model_id, lead_ids, scores)
        SELECT model_id, array_agg(lead_id ORDER BY lead_id), array_agg(score ORDER BY lead_id)
          FROM model_scores WHERE NOT out_of_fold GROUP BY model_id
    """)
    op.execute("DELETE FROM model_scores WHERE NOT out_of_fold")

    op.execute("DROP INDEX ix_activities_lead_occurred")
    op.execute("CREATE INDEX ix_activities_lead_occurred ON activities (lead_id, occurred_at DESC) INCLUDE (kind)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_activities_lead_occurred")
    op.execute("CREATE INDEX ix_activities_lead_occurred ON activities (lead_id, occurred_at DESC)")

    op.execute(f"""
        INSERT INTO model_scores (model_id, lead_id, score, tier, reasons, out_of_fold)
        SELECT m.model_id, p.lead_id, p.score, {TIER_OF_SCORE}, NULL, false
          FROM model_previews m, unnest(m.lead_ids, m.scores) AS p(lead_id, score)
         WHERE EXISTS (SELECT 1 FROM leads l WHERE l.id = p.lead_id)
    """)
    op.drop_table("model_previews")
