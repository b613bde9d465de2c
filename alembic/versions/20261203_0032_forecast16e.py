"""forecast16e: the forecast, its backtest and the stage win rates, precomputed by the job queue

`forecast_snapshots`: what the job worker's periodic `crm.forecast_refresh` (crm_app/tasks.py,
crm_app/services/forecast_snapshots.py) computed, one row per kind and scope, that pages read instead
of computing it themselves (at 100,000 leads the forecast's first view cost ~29 s and the stage win
rates behind the kanban's, Today's and the Leads table's weighted value 6-13 s):

- `stage_rates` (owner_id NULL): won / closed per open stage from the team's closed deals, counts
  only; every signed-in user reads it (as `crm_forecast_history` lets them).
- `forecast`: a scope's forecast (owner_id NULL: the team; else one rep), as of `as_of`, with
  `scope_version` the state of the deals in scope it was built from (a page compares it with the
  current one to say "deals changed since").
- `backtest`: a scope's backtest of the months before `month`; `scope_version` the fingerprint of the
  scope's past months.

Money figures for a rep: readable by that rep and by those who see the team, like
forecast_calibrations. Only the tables' owner (the job worker) writes.

Revision ID: 0032_forecast16e
Revises: 0031_rollup15
Create Date: 2026-12-03
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0032_forecast16e"
down_revision: Union[str, None] = "0031_rollup15"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"


def upgrade() -> None:
    op.create_table(
        "forecast_snapshots",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scope_version", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.CheckConstraint("kind IN ('stage_rates', 'forecast', 'backtest')",
                           name="ck_forecast_snapshots_kind"),
        sa.CheckConstraint("kind <> 'stage_rates' OR owner_id IS NULL",
                           name="ck_forecast_snapshots_team_rates"),
    )
    op.create_index("uq_forecast_snapshots_scope", "forecast_snapshots",
                    ["kind", sa.text("coalesce(owner_id, 0)")], unique=True)
    op.execute("ALTER TABLE forecast_snapshots ENABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON forecast_snapshots FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT ON forecast_snapshots TO {APP_ROLE}")
    op.execute(f"CREATE POLICY forecast_snapshots_scope ON forecast_snapshots FOR SELECT TO {APP_ROLE} "
               "USING (kind = 'stage_rates' OR (SELECT crm_sees_team()) "
               "OR owner_id = (SELECT crm_acting_user()))")


def downgrade() -> None:
    op.drop_table("forecast_snapshots")
