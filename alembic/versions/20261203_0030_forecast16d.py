"""forecast16d: the forecast's errors on past months, kept between processes

`forecast_calibrations`: for one scope (a rep's `owner_id`, or NULL for the team) and the month the
forecast is made in, the (predicted, actual) of the forecast on each past month (crm_app/services/
forecast.py past_errors), which widen this month's interval. Rebuilding them replays the history as
of twelve month starts (minutes at 100,000 leads); done months change only when history is edited, so
a web worker that starts (or another worker) reads them instead. `fingerprint` says what they were
computed from (the scope's leads created before the month, and its closes before it: count, values,
dates); a different fingerprint, or a row older than a day, is computed again. Money figures for a
rep: readable and writable by that rep and by those who see the team, like sales_targets.

Revision ID: 0030_forecast16d
Revises: 0029_board15
Create Date: 2026-12-03
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0030_forecast16d"
down_revision: Union[str, None] = "0029_board15"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

APP_ROLE = "crm_app_user"


def upgrade() -> None:
    op.create_table(
        "forecast_calibrations",
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("errors", postgresql.JSONB(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("uq_forecast_calibrations_scope", "forecast_calibrations",
                    [sa.text("coalesce(owner_id, 0)"), "month", "months"], unique=True)
    op.execute("ALTER TABLE forecast_calibrations ENABLE ROW LEVEL SECURITY")
    op.execute(f"REVOKE ALL ON forecast_calibrations FROM {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON forecast_calibrations TO {APP_ROLE}")
    rule = "((SELECT crm_sees_team()) OR owner_id = (SELECT crm_acting_user()))"
    op.execute(f"CREATE POLICY forecast_calibrations_scope ON forecast_calibrations TO {APP_ROLE} "
               f"USING {rule} WITH CHECK {rule}")


def downgrade() -> None:
    op.drop_table("forecast_calibrations")
