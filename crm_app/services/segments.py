"""Segment insights for the analytics page: the strongest segments in closed history.

Candidate segments are a source, a trait, or a source and a trait, where traits are bounded:
company size band, each custom field value (short ones: industry, country, ...), each play a rep
used, reading 1+ / 2+ of each content play, and 5+ / 10+ interactions. Only groups with the
minimum support leave the database. Closed leads in the page's scope (period, owner) are counted per
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
MAX_FIELD_VALUE = 60


def _trait_selects() -> str:
    """One SELECT per trait over the per-lead counts, UNION ALL'ed: a lead appears once per trait
    it has (bounded: size, custom field values, 6 plays, 2 x 2 reads, 2 engagement thresholds)."""
    conditions = [("'size:' || size_band", "TRUE")]
    for play in Play:
        conditions.append((f"'play:{play.value}'", f"played_{play.value} > 0"))
    for play in CONTENT_PLAYS:
        for n in READ_THRESHOLDS:
            conditions.append((f"'read:{play.value}:{n}'", f"read_{play.value} >= {n}"))
    for n in ENGAGEMENT_THRESHOLDS:
        conditions.append((f"'engaged:{n}'", f"engagements >= {n}"))
    selects = [f"SELECT source, won, {trait} AS trait FROM counted WHERE {condition}" for trait, condition in conditions]
    # Custom field values: short text only (a value is a category, not a note).
    selects.append(
        "SELECT source, won, 'field:' || f.key || ':' || f.value FROM counted "
        "CROSS JOIN LATERAL jsonb_each_text(custom_fields) AS f(key, value) "
        f"WHERE length(f.value) BETWEEN 1 AND {MAX_FIELD_VALUE}"
    )
    return "\n    UNION ALL ".join(selects)


def _count_columns() -> list[tuple[str, str]]:
    """(name, FILTER condition) of the per-lead activity counts the traits need."""
    columns = [("engagements", "a.kind = ANY(:engagement_kinds)")]
    columns += [(f"played_{p.value}", f"a.play = '{p.value}' AND a.kind = ANY(:rep_kinds)") for p in Play]
    columns += [(f"read_{p.value}", f"a.play = '{p.value}' AND a.kind = ANY(:read_kinds)") for p in CONTENT_PLAYS]
    return columns


_SEGMENTS_SQL = """
WITH closed AS MATERIALIZED (
    SELECT id, source, {band} AS size_band, custom_fields, stage = 'won' AS won
      FROM leads WHERE {where} AND stage IN ('won', 'lost')
),
per_lead AS (
    SELECT a.lead_id, {counts}
      FROM activities a
     WHERE a.lead_id IN (SELECT id FROM closed)
     GROUP BY a.lead_id
),
counted AS MATERIALIZED (
    SELECT l.source, l.won, l.size_band, l.custom_fields, {zeroes}
      FROM closed l LEFT JOIN per_lead x ON x.lead_id = l.id
),
traits AS (
    {traits}
)
SELECT source, trait, count(*) AS closed, count(*) FILTER (WHERE won) AS won
  FROM traits GROUP BY GROUPING SETS ((source, trait), (trait))
HAVING count(*) >= :min_support
UNION ALL
SELECT source, NULL, count(*), count(*) FILTER (WHERE won) FROM closed GROUP BY GROUPING SETS ((source), ())
"""


def _segments_sql(where: str) -> str:
    columns = _count_columns()
    return _SEGMENTS_SQL.format(
        where=where,
        band=size_band_sql("company_size"),
        counts=", ".join(f"count(*) FILTER (WHERE {condition}) AS {name}" for name, condition in columns),
        zeroes=", ".join(f"coalesce(x.{name}, 0) AS {name}" for name, _ in columns),
        traits=_trait_selects(),
    )


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
    # The statement is big enough for PostgreSQL to JIT-compile it, which costs more (about 1 s at
    # 100,000 leads) than it saves on a one-pass aggregate; off for this transaction only.
    session.execute(text("SET LOCAL jit = off"))
    # The per-lead counts are hashed in memory rather than spilled to disk (one statement's worth).
    session.execute(text("SET LOCAL work_mem = '64MB'"))
    rows = session.execute(
        text(_segments_sql(where)),
        {
            **params,
            "engagement_kinds": [k.value for k in ENGAGEMENT_KINDS],
            "rep_kinds": [k.value for k in CONTACT_KINDS],
            "read_kinds": [k.value for k in CONTENT_READ_KINDS],
            "min_support": min_support,
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
