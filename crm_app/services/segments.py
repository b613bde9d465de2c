"""Segment insights for the analytics page: the strongest segments in closed history.

Candidate segments are a source, a trait, or a source and a trait, where traits are bounded:
company size band, each custom field value (short ones: industry, country, ...), each play a rep
used, reading 1+ / 2+ of each content play, and 5+ / 10+ interactions. Only groups with the
minimum support leave the database. Closed leads in the page's scope (period, owner) are counted per
candidate from `segment_rollup` (migration 0039: closed and won leads per day x owner x source x
trait, kept by triggers on leads and activities, with each lead's activity counts in
`lead_activity_counts`), read as the analytics rollup is (services/analytics_rollup.py: whole months,
whole days, and the part days from `segment_facts`), in one statement (GROUPING SETS);
scoring.segments decides what is strong enough to show and says it in words. The scan it replaced
(closed leads and their activities on every load) is tests/analytics_reference.segment_counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlmodel import Session

from crm_app.scoring.segments import MIN_SUPPORT, SegmentCount, SegmentInsight, insights
from crm_app.services.analytics import AnalyticsFilter
from crm_app.services.analytics_rollup import rollup_rows

_SEGMENTS_SQL = """
WITH r AS ({rows})
SELECT source, trait, sum(closed)::bigint AS closed, sum(won)::bigint AS won
  FROM r WHERE trait IS NOT NULL
 GROUP BY GROUPING SETS ((source, trait), (trait))
HAVING sum(closed) >= :min_support
UNION ALL
SELECT source, NULL, coalesce(sum(closed), 0)::bigint, coalesce(sum(won), 0)::bigint
  FROM r WHERE trait IS NULL GROUP BY GROUPING SETS ((source), ())
-- A source only where it has closed leads in scope (a part month's rows less its other days' net to 0).
HAVING GROUPING(source) = 1 OR sum(closed) <> 0
"""


def segment_rows(flt: AnalyticsFilter) -> tuple[str, dict]:
    """Rows (source, trait, day, closed, won) of the segment rollup whose sums are the filter's counts
    (trait NULL: each closed lead once)."""
    return rollup_rows(flt, None, table="segment_rollup", facts="segment_facts",
                       keys="source, trait, day", measures="closed, won", count="closed")


def segment_counts(session: Session, *, flt: AnalyticsFilter, min_support: int = MIN_SUPPORT) -> list:
    """(source, trait, closed, won) per candidate with at least `min_support` closed leads, and per
    source and in all (trait None; source None too: every closed lead in scope)."""
    rows_sql, params = segment_rows(flt)
    return session.execute(text(_SEGMENTS_SQL.format(rows=rows_sql)), {**params, "min_support": min_support}).all()


@dataclass
class SegmentReport:
    insights: list[SegmentInsight] = field(default_factory=list)
    closed: int = 0
    won: int = 0
    average_label: str = ""  # "24% of 1,530 closed leads won"
    min_support: int = MIN_SUPPORT


def segment_insights(session: Session, *, flt: AnalyticsFilter, min_support: int = MIN_SUPPORT) -> SegmentReport:
    """The strongest segments among closed leads in scope (lift over the average win rate, 95%
    Wilson interval above it, at least `min_support` closed leads), strongest first."""
    counts, closed, won = [], 0, 0
    for r in segment_counts(session, flt=flt, min_support=min_support):
        if r.source is None and r.trait is None:
            closed, won = r.closed, r.won
        else:
            counts.append(SegmentCount(r.source, r.trait, r.closed, r.won))
    rate = f"{won / closed * 100:.0f}%" if closed else "—"
    return SegmentReport(
        insights=insights(counts, overall_closed=closed, overall_won=won, min_support=min_support),
        closed=closed,
        won=won,
        average_label=f"{rate} of {closed:,} closed leads won" if closed else "No closed leads yet",
        min_support=min_support,
    )
