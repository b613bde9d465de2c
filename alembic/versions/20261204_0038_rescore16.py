"""the replies and notes whose tone is not stored yet, found without reading the activities

Deal risk is now assessed set-based in the database (services/risk_sql.py), which reads the stored
sentiment of replies and notes. Those stored without one (an older database, an import) are scored in
Python first, range by range, before the range's statement runs. Finding them read every activity of
the range (~10 per lead); this partial index holds only the unscored ones (normally none: a reply or
note is scored when it is written), so the check costs an empty index probe per range.

Revision ID: 0038_rescore16
Revises: 0037_imp16
Create Date: 2026-12-04
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0038_rescore16"
down_revision: Union[str, None] = "0037_imp16"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

WHERE = "sentiment IS NULL AND body IS NOT NULL AND kind IN ('email_received', 'note')"


def upgrade() -> None:
    op.execute(f"CREATE INDEX ix_activities_unscored ON activities (lead_id) WHERE {WHERE}")


def downgrade() -> None:
    op.execute("DROP INDEX ix_activities_unscored")
