"""The leads table's index diet (issues #15, #20): the index no page reads any more, dropped

Every update of a lead that is not HOT (a rescore changes `score`, an import's matched UPDATE, a stage
move) writes one entry into every index on `leads`: 28 before this migration, each entry of a new page
a full-page image in the WAL after a checkpoint. Which ones serve a query was measured on a copy of
the demo's million leads: pg_stat_user_indexes.idx_scan over the page, queue, board and analytics
benchmarks, and each hot statement EXPLAINed as a rep under row security and as the manager
(scripts/benchmark.py, benchmark_board.py, benchmark_analytics.py). Dropped:

- ix_leads_tier_score (tier, score DESC, id DESC), 0 scans: the leads list and the board filter a
  tier as its range of scores now (queries.tier_condition; ck_leads_tier_matches_score makes them
  the same leads), walked in the index of the list's sort and owner (ix_leads_score,
  ix_leads_owner_score, ix_leads_stage_score, ix_leads_owner_stage_score), as the queue's Hot group
  already did.

ix_leads_open_queue ((owner_id, stage) INCLUDE 10 columns, open stages only; 47 MB at 1M) was
measured too: only Today's one-pass read of a book of at most SMALL_BOOK open leads uses it (13 scans
at 1M, where no book is that small), but that is every rep's Today at 100,000 leads, whose queue read
the rows instead without it (p50 ~205 -> ~290 ms, load 6.5). The first page a rep opens at the size
most teams have outweighs a write cost measured in one noisy pair (100k rows into 1M: 235 -> 184 s
with both dropped), so it stays.

Kept though suspected (each still serves a query no other index serves as well, at 1M): the
owner-first twins of the team's indexes (ix_leads_owner_score, _owner_stage_score,
_owner_stage_entered, _owner_created, _owner_last_activity: without the last a rep's Today counts
walked the team's fresh leads, 293 -> 549 ms), ix_leads_source (the Leads page's count under a
source filter: a bitmap 1.1-1.7 s, the scan without it 2.1-2.6 s), the sorts the Leads page offers
(value, name, newest, longest in stage: 0 scans as no benchmark sorts so, but each the only way to
a page without sorting the table), the sweeps' expiry indexes, the three trigram indexes (search)
and the unique ones.

Revision ID: 0042_idx18
Revises: 0041_pages17
Create Date: 2026-12-06
"""
from typing import Sequence, Union

from alembic import op

revision: str = "0042_idx18"
down_revision: Union[str, None] = "0041_pages17"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Each dropped index as the migration that made it wrote it: the downgrade makes it again.
DROPPED = {
    "ix_leads_tier_score": "ON leads (tier, score DESC, id DESC)",
}


def upgrade() -> None:
    for name in DROPPED:
        op.execute(f"DROP INDEX IF EXISTS {name}")


def downgrade() -> None:
    for name, definition in DROPPED.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} {definition}")
