"""when a lead turned Hot (leads.hot_since), kept by the database; leads by last engagement

The action queue puts a lead that turned Hot within the last hours first, with the prospect's newest
requests (services/queue.py). Scores are written by several writers (one lead after an activity, bulk
rescoring, the CSV import, the demo generator), so the moment a lead's tier becomes Hot is kept by a
trigger in one place rather than by each of them: `hot_since` is set to the scoring time when the
tier turns Hot, kept while it stays Hot and cleared when it drops.

The queue looks for fresh signals among the leads whose last engagement is recent, a few percent of
them, and among the requests of the last hours: `ix_leads_last_activity` and the partial
`ix_activities_requests` (replies, pricing and demo requests, forms) find both without reading every
lead or activity.

Leads already Hot at the upgrade count as Hot since they arrived (`created_at`): when they turned is
not known, and "just now" would put every one of them in the queue's first group at once.

Revision ID: 0017_hot_since
Revises: 0016_least_privilege_login
Create Date: 2026-11-25
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0017_hot_since"
down_revision: Union[str, None] = "0016_least_privilege_login"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# domain.REQUEST_KINDS as they were when this migration was written (a migration never changes).
REQUESTS = "'email_received', 'pricing_request', 'demo_request', 'form_submission'"


def upgrade() -> None:
    op.add_column("leads", sa.Column("hot_since", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE leads SET hot_since = created_at WHERE tier = 'hot'")
    op.create_check_constraint("ck_leads_hot_since", "leads", "(tier = 'hot') = (hot_since IS NOT NULL)")
    op.create_index("ix_leads_last_activity", "leads", ["last_activity_at"])
    op.create_index("ix_activities_requests", "activities", ["occurred_at"],
                    postgresql_where=sa.text(f"kind IN ({REQUESTS})"))
    op.execute(
        """
        CREATE FUNCTION crm_keep_hot_since() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.tier <> 'hot' THEN
            NEW.hot_since := NULL;
          ELSIF TG_OP = 'INSERT' THEN
            NEW.hot_since := coalesce(NEW.hot_since, NEW.scored_at, now());
          ELSIF OLD.tier <> 'hot' THEN
            -- The scoring time the writer stored with the tier: the app's clock, not the database's.
            NEW.hot_since := coalesce(NEW.scored_at, now());
          ELSE
            NEW.hot_since := coalesce(NEW.hot_since, OLD.hot_since, NEW.scored_at, now());
          END IF;
          RETURN NEW;
        END $$
        """
    )
    # Only writes that name the tier (every scoring write does): other updates leave it as it was.
    op.execute(
        """
        CREATE TRIGGER leads_keep_hot_since BEFORE INSERT OR UPDATE OF tier ON leads
          FOR EACH ROW EXECUTE FUNCTION crm_keep_hot_since()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS leads_keep_hot_since ON leads")
    op.execute("DROP FUNCTION IF EXISTS crm_keep_hot_since()")
    op.drop_index("ix_activities_requests", table_name="activities")
    op.drop_index("ix_leads_last_activity", table_name="leads")
    op.drop_constraint("ck_leads_hot_since", "leads", type_="check")
    op.drop_column("leads", "hot_since")
