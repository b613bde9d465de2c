"""search and sort indexes for the leads table

Searching 100,000 leads by name, company or email with ILIKE '%term%' scanned the table twice
(page and count), 200-300 ms per keystroke; trigram GIN indexes answer it from the index. The
other sorts of the leads table get btree indexes with the id tie-breaker the query orders by.

Revision ID: 0004
Revises: 0003_model
Create Date: 2026-11-25
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0004"
down_revision: Union[str, None] = "0003_model"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TRIGRAM_COLUMNS = ("name", "company", "email")


def upgrade() -> None:
    # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in TRIGRAM_COLUMNS:
        op.execute(f"CREATE INDEX ix_leads_{column}_trgm ON leads USING gin ({column} gin_trgm_ops)")
    op.execute("CREATE INDEX ix_leads_value ON leads (deal_value DESC, id DESC)")
    op.execute("CREATE INDEX ix_leads_name_sort ON leads (lower(name), id)")
    op.execute("CREATE INDEX ix_leads_stage_age ON leads (stage_entered_at, id)")
    # "Hot leads of the whole team": the page and its count from one index.
    op.execute("CREATE INDEX ix_leads_tier_score ON leads (tier, score DESC, id DESC)")


def downgrade() -> None:
    for name in ("ix_leads_tier_score", "ix_leads_stage_age", "ix_leads_name_sort", "ix_leads_value"):
        op.execute(f"DROP INDEX {name}")
    for column in TRIGRAM_COLUMNS:
        op.execute(f"DROP INDEX ix_leads_{column}_trgm")
