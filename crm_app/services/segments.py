"""Segment insights for the analytics page: the strongest segments in closed history.

Candidate segments are a source, a trait, or a source and a trait, where traits are bounded:
company size band, industry (custom field), each play a rep used, reading 1+ / 2+ of each content
play, and 5+ / 10+ interactions. Closed leads in the page's scope (period, owner) are counted per
candidate in one SQL statement (GROUPING SETS); scoring.segments decides what is strong enough to
show and says it in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlmodel import Session

from crm_app.domain import CONTACT_KINDS, CONTENT_READ_KINDS, Play
from crm_app.scoring import ENGAGEMENT_KINDS
from crm_app.scoring.next_action import size_band_sql
from crm_app.scoring.segments import (
    ENGAGEMENT_THRESHOLDS,
    MIN_SUPPORT,
    READ_THRESHOLDS,
    SegmentCount,
    SegmentInsight,
    insights,
)
from crm_app.services.analytics import AnalyticsFilter, _scope

CONTENT_PLAYS = tuple(p for p in Play if p.is_content)


def _trait_sql() -> str:
    """One VALUES row per trait a lead may have (NULL when it does not)."""
    rows = [f"('size:' || {size_band_sql('c.company_size')})", "('industry:' || (c.custom_fields ->> 'industry'))"]
    for play in Play:
        rows.append(f"(CASE WHEN c.played_{play.value} > 0 THEN 'play:{play.value}' END)")
    for play in CONTENT_PLAYS:
        for n in READ_THRESHOLDS:
            rows.append(f"(CASE WHEN c.read_{play.value} >= {n} THEN 'read:{play.value}:{n}' END)")
    for n in ENGAGEMENT_THRESHOLDS:
        rows.append(f"(CASE WHEN c.engagements >= {n} THEN 'engaged:{n}' END)")
    return ", ".join(rows)


def _counts_sql() -> str:
    columns = ["count(*) FILTER (WHERE a.kind = ANY(:engagement_kinds)) AS engagements"]
    for play in Play:
        columns.append(f"count(*) FILTER (WHERE a.play = '{play.value}' AND a.kind = ANY(:rep_kinds)) "
                       f"AS played_{play.value}")
    for play in CONTENT_PLAYS:
        columns.append(f"count(*) FILTER (WHERE a.play = '{play.value}' AND a.kind = ANY(:read_kinds)) "
                       f"AS read_{play.value}")
    return ",\n           ".join(columns)


_SEGMENTS_SQL = """
WITH closed AS (
    SELECT id, source, company_size, custom_fields, stage = 'won' AS won
      FROM leads WHERE {where} AND stage IN ('won', 'lost')
),
counted AS (
    SELECT l.*, coalesce(x.engagements, 0) AS engagements, {zeroes}
      FROM closed l
      LEFT JOIN (
        SELECT a.lead_id,
           {counts}
          FROM activities a JOIN closed l ON l.id = a.lead_id
         GROUP BY a.lead_id
      ) x ON x.lead_id = l.id
),
traits AS (
    SELECT c.id, c.source, c.won, t.trait
      FROM counted c CROSS JOIN LATERAL (VALUES {traits}) AS t(trait)
     WHERE t.trait IS NOT NULL
)
SELECT source, trait, count(*) AS closed, count(*) FILTER (WHERE won) AS won
  FROM traits GROUP BY GROUPING SETS ((source, trait), (trait))
UNION ALL
SELECT source, NULL, count(*), count(*) FILTER (WHERE won) FROM closed GROUP BY GROUPING SETS ((source), ())
"""


def _zeroes() -> str:
    names = ([f"played_{p.value}" for p in Play] + [f"read_{p.value}" for p in CONTENT_PLAYS])
    return ", ".join(f"coalesce(x.{n}, 0) AS {n}" for n in names)


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
    where, params = _scope(flt)
    sql = _SEGMENTS_SQL.format(where=where, counts=_counts_sql(), zeroes=_zeroes(), traits=_trait_sql())
    rows = session.execute(
        text(sql),
        {
            **params,
            "engagement_kinds": [k.value for k in ENGAGEMENT_KINDS],
            "rep_kinds": [k.value for k in CONTACT_KINDS],
            "read_kinds": [k.value for k in CONTENT_READ_KINDS],
        },
    ).all()
    counts, closed, won = [], 0, 0
    for r in rows:
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
