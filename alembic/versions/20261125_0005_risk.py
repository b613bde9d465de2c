"""deal risk on leads, sentiment on activities

Risk (scoring/risk.py) is stored on the lead so the action queue and the board select and sort
at-risk deals in SQL; the sentiment of a reply or note is computed once, when it is written, and
stored on the activity, so reassessing risk never reads message bodies again. Existing open deals
are marked due for assessment (risk_valid_until = now): the app's sweep assesses them within
minutes of starting, and fills in the sentiment of older replies and notes as it goes.

Revision ID: 0005_risk
Revises: 0004
Create Date: 2026-11-25
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005_risk"
down_revision: Union[str, None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("activities", sa.Column("sentiment", sa.Float(), nullable=True))
    op.create_check_constraint("ck_activities_sentiment", "activities", "sentiment BETWEEN -1 AND 1")

    op.add_column("leads", sa.Column("risk_level", sa.String(8), nullable=True))
    op.add_column("leads", sa.Column("risk_points", sa.Integer(), nullable=True))
    op.add_column("leads", sa.Column("risk_reasons", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")))
    op.add_column("leads", sa.Column("risk_at", TS, nullable=True))
    op.add_column("leads", sa.Column("risk_valid_until", TS, nullable=True))
    op.add_column("leads", sa.Column("last_reply_at", TS, nullable=True))
    op.add_column("leads", sa.Column("last_reply_sentiment", sa.Float(), nullable=True))
    op.create_check_constraint("ck_leads_risk_level", "leads", "risk_level IN ('low', 'medium', 'high')")
    op.create_check_constraint("ck_leads_risk_points", "leads", "risk_points BETWEEN 0 AND 100")
    op.create_check_constraint(
        "ck_leads_risk_level_matches_points", "leads",
        "(risk_level IS NULL AND risk_points IS NULL) OR risk_level = CASE WHEN risk_points >= 55 THEN 'high' "
        "WHEN risk_points >= 25 THEN 'medium' ELSE 'low' END",
    )
    op.create_check_constraint(
        "ck_leads_last_reply_sentiment", "leads", "last_reply_sentiment BETWEEN -1 AND 1"
    )
    # The sweep: leads whose risk time alone has changed.
    op.create_index("ix_leads_risk_valid_until", "leads", ["risk_valid_until"])
    # At-risk deals of one rep, riskiest first (queue, board filter).
    op.execute(
        "CREATE INDEX ix_leads_owner_risk ON leads (owner_id, risk_points DESC, id DESC) "
        "WHERE risk_level IN ('medium', 'high')"
    )
    op.execute("UPDATE leads SET risk_valid_until = now() WHERE stage NOT IN ('won', 'lost')")


def downgrade() -> None:
    op.drop_index("ix_leads_owner_risk", table_name="leads")
    op.drop_index("ix_leads_risk_valid_until", table_name="leads")
    for name in ("ck_leads_last_reply_sentiment", "ck_leads_risk_level_matches_points", "ck_leads_risk_points",
                 "ck_leads_risk_level"):
        op.drop_constraint(name, "leads", type_="check")
    for column in ("last_reply_sentiment", "last_reply_at", "risk_valid_until", "risk_at", "risk_reasons",
                   "risk_points", "risk_level"):
        op.drop_column("leads", column)
    op.drop_constraint("ck_activities_sentiment", "activities", type_="check")
    op.drop_column("activities", "sentiment")
