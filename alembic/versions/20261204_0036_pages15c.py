"""Today's new signals walked in the group's own order: last engagement, then score, value and id

The action queue pages a long "New signals" group (services/queue.py) by walking the open leads in view
by last engagement, newest first, and keeping the members it is certain of. With the time alone as the
walk's key, a member was certain only once its signal was strictly newer than the last lead walked, so
leads engaged in the same second (a bulk load, an import: 788 of 2,076 leads engaged in the window at
100,000 leads, ~8,000 at 1M) were walked whole before the first item could be shown. The walk now
breaks ties as the group does (score, deal value, id), so a member is certain as soon as it ranks
before the walk's last lead, and it needs these two indexes in that order, one for the team and one
per rep. They replace the two on the time alone (same names): every read of those ranges (the
one-pass statement's fresh leads, sweeps by last engagement) uses the longer key as well, and the
leads table keeps its number of indexes, which every rescoring write pays for.

Revision ID: 0036_pages15c
Revises: 0035_train15b
Create Date: 2026-12-04
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0036_pages15c"
down_revision: Union[str, None] = "0035_train15b"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ORDER = "last_activity_at DESC, score DESC, deal_value DESC, id"


def upgrade() -> None:
    op.execute("DROP INDEX ix_leads_last_activity")
    op.execute(f"CREATE INDEX ix_leads_last_activity ON leads ({ORDER})")
    op.execute("DROP INDEX ix_leads_owner_last_activity")
    op.execute(f"CREATE INDEX ix_leads_owner_last_activity ON leads (owner_id, {ORDER})")


def downgrade() -> None:
    op.execute("DROP INDEX ix_leads_owner_last_activity")
    op.execute("CREATE INDEX ix_leads_owner_last_activity ON leads (owner_id, last_activity_at)")
    op.execute("DROP INDEX ix_leads_last_activity")
    op.execute("CREATE INDEX ix_leads_last_activity ON leads (last_activity_at)")
