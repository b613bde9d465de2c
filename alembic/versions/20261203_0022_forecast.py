"""forecast: monthly sales targets per rep and for the team, and the team's closing history in aggregate

- `sales_targets`: the monthly won-revenue target a manager set for one rep (`user_id`) or for the
  whole team (`user_id` NULL), one row each. Under the app role a manager or admin reads and writes
  every row; a rep reads only their own (the forecast page's gap, Today's warning) and writes none.
- `crm_forecast_history(cutoff)`: what the team's history said at `cutoff`, in aggregate: per basis
  (each stage a deal entered, and 'created'), whole days from entering it to the close (or to the
  cut-off for a deal still open then), how many of those days it stayed in the stage (`stay`), the
  outcome as known then (won, lost or open) and how many deals. Only deals created before the cut-off, stage changes before it and closes before it count,
  so a backtest rebuilt at a past cut-off sees nothing later. SECURITY DEFINER so a rep's forecast
  learns from the whole team's pace and win rates: it returns counts per day, never a lead, an
  owner or a value. Days are NULL for leads imported without dates.

Revision ID: 0022_forecast
Revises: 0020_model_scores
Create Date: 2026-12-03
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0022_forecast"
down_revision: Union[str, None] = "0020_model_scores"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"
OPEN_STAGES = "('new', 'contacted', 'qualified', 'meeting', 'proposal', 'negotiation')"


def upgrade() -> None:
    op.create_table(
        "sales_targets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
        sa.Column("monthly_target", sa.Numeric(12, 2), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.CheckConstraint("monthly_target >= 0", name="ck_sales_targets_amount"),
    )
    # One target per rep and one for the team (user_id NULL).
    op.create_index("uq_sales_targets_user", "sales_targets", [sa.text("coalesce(user_id, 0)")], unique=True)

    op.execute("ALTER TABLE sales_targets ENABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON sales_targets FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON sales_targets TO {APP_ROLE}")
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE sales_targets_id_seq TO {APP_ROLE}")
    op.execute(f"CREATE POLICY sales_targets_read ON sales_targets FOR SELECT TO {APP_ROLE} "
               "USING ((SELECT crm_sees_team()) OR user_id = (SELECT crm_acting_user()))")
    for command in ("INSERT", "UPDATE", "DELETE"):
        rule = "WITH CHECK" if command == "INSERT" else "USING"
        extra = " WITH CHECK ((SELECT crm_sees_team()))" if command == "UPDATE" else ""
        op.execute(f"CREATE POLICY sales_targets_{command.lower()} ON sales_targets FOR {command} "
                   f"TO {APP_ROLE} {rule} ((SELECT crm_sees_team())){extra}")

    op.execute(
        f"""
        CREATE FUNCTION crm_forecast_history(cutoff timestamptz)
          RETURNS TABLE (basis text, stay integer, days integer, outcome text, deals bigint)
          LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
            WITH known AS (
                SELECT l.id, l.created_at, l.dates_known,
                       CASE WHEN l.closed_at < cutoff AND l.stage IN ('won', 'lost') THEN l.stage
                            ELSE 'open' END AS outcome,
                       CASE WHEN l.closed_at < cutoff AND l.stage IN ('won', 'lost') THEN l.closed_at
                            ELSE cutoff END AS until
                  FROM leads l
                 WHERE l.created_at < cutoff
            ), changes AS (
                SELECT sc.lead_id, sc.to_stage, sc.changed_at,
                       lead(sc.changed_at) OVER (PARTITION BY sc.lead_id ORDER BY sc.changed_at, sc.id) AS left_at
                  FROM stage_changes sc
                 WHERE sc.changed_at < cutoff
            ), visits AS (
                SELECT c.to_stage::text AS basis, k.outcome, k.dates_known,
                       floor(extract(epoch FROM least(coalesce(c.left_at, k.until), k.until) - c.changed_at)
                             / 86400)::integer AS stay,
                       floor(extract(epoch FROM k.until - c.changed_at) / 86400)::integer AS days
                  FROM known k JOIN changes c ON c.lead_id = k.id
                 WHERE c.changed_at <= k.until AND c.to_stage IN {OPEN_STAGES}
                UNION ALL
                SELECT 'created', k.outcome, k.dates_known,
                       floor(extract(epoch FROM k.until - k.created_at) / 86400)::integer,
                       floor(extract(epoch FROM k.until - k.created_at) / 86400)::integer
                  FROM known k
            )
            SELECT v.basis, CASE WHEN v.dates_known THEN greatest(v.stay, 0) END,
                   CASE WHEN v.dates_known THEN greatest(v.days, 0) END, v.outcome, count(*)
              FROM visits v
             GROUP BY 1, 2, 3, 4
        $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION crm_forecast_history(timestamptz) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION crm_forecast_history(timestamptz) TO {APP_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS crm_forecast_history(timestamptz)")
    op.drop_table("sales_targets")
