"""The analytics queries as they were before the rollup (migration 0031): each figure scanned the leads
in scope and, for the funnel, a LEAD() window over their whole stage history. Kept word for word as the
reference the rollup must equal (tests/test_analytics_rollup.py) and as the "before" of
scripts/benchmark_analytics.py. Returns the service's own row types.

Read models for the analytics page: which channels bring buyers, does the score predict wins,
and where deals stall. Every aggregate is computed in SQL and comes back as a few small rows.

All sections look at the same set of leads: those created in a date range (half-open,
`created_from <= created_at < created_to`) and, optionally, owned by one rep.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.queries import money
from crm_app.domain import OPEN_STAGES, Source, Stage, Tier
from crm_app.scoring.engine import HOT_MIN, WARM_MIN

# Period presets offered on the page: key -> (label, days back; None = all time).
PERIODS: dict[str, tuple[str, int | None]] = {
    "30d": ("Last 30 days", 30),
    "90d": ("Last 90 days", 90),
    "365d": ("Last 365 days", 365),
    "all": ("All time", None),
}
# The path a deal walks; a lead "reached" every stage up to the furthest one it got to.
FUNNEL_STAGES: tuple[Stage, ...] = (*OPEN_STAGES, Stage.WON)


from crm_app.services.analytics import AnalyticsFilter  # noqa: E402


def _scope(flt: AnalyticsFilter) -> tuple[str, dict]:
    """A WHERE clause over `leads` for the filter, and its parameters (fixed SQL, bound values)."""
    conditions, params = ["TRUE"], {}
    if flt.created_from is not None or flt.created_to is not None:
        # A lead imported without dates was not created in any period (its created_at is the import's).
        conditions.append("dates_known")
    if flt.created_from is not None:
        conditions.append("created_at >= :created_from")
        params["created_from"] = flt.created_from
    if flt.created_to is not None:
        conditions.append("created_at < :created_to")
        params["created_to"] = flt.created_to
    if flt.owner_id is not None:
        conditions.append("owner_id = :owner_id")
        params["owner_id"] = flt.owner_id
    return " AND ".join(conditions), params


# ---------------------------------------------------------------------------------------------
# Formatting: numbers with units and sensible rounding, "—" where there is nothing to show.

NONE_LABEL = "—"


def percent_label(rate: float | None) -> str:
    return NONE_LABEL if rate is None else f"{rate * 100:.0f}%"


def days_label(days: float | None) -> str:
    if days is None:
        return NONE_LABEL
    if days < 10:
        return f"{days:.1f} days"
    return f"{days:,.0f} days"


def money_label(amount: float | None) -> str:
    return NONE_LABEL if amount is None else money(amount)


def roi_label(roi: float | None) -> str:
    if roi is None:
        return NONE_LABEL
    return f"{roi * 100:+,.0f}%".replace("-", "−")


def _float(value) -> float | None:
    return None if value is None else float(value)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


# ---------------------------------------------------------------------------------------------
# 1. Source ROI


from crm_app.services.analytics import (  # noqa: E402 - the row types the service returns
    AnalyticsReport, FunnelRow, SourceRoiRow, TierConversionRow, TierCount, WeeklyTierRow, funnel_rows,
)


_SOURCE_ROI = """
WITH scoped AS (SELECT * FROM leads WHERE {where}),
-- Spend is stored per source for all time; each lead the source ever brought carries an equal share,
-- so a filtered view (a period, one rep) is charged only for its own leads.
source_totals AS (SELECT source, count(*) AS all_leads FROM leads GROUP BY source),
-- An import keeps the file's own word for the source ("Google", "Olark Chat") as source_detail: a row
-- per word (in any case), so twenty words mapped to a few sources are not lumped together.
per_source AS (
    SELECT source, min(nullif(custom_fields->>'source_detail', '')) AS detail,
           count(*) AS leads,
           count(*) FILTER (WHERE stage = 'won') AS won,
           count(*) FILTER (WHERE stage = 'lost') AS lost,
           coalesce(sum(deal_value) FILTER (WHERE stage = 'won'), 0) AS won_revenue,
           avg(deal_value) FILTER (WHERE stage = 'won') AS average_deal,
           avg(score) AS average_score,
           avg(extract(epoch FROM closed_at - created_at) / 86400.0)
               FILTER (WHERE stage = 'won' AND closed_at IS NOT NULL AND dates_known) AS average_days_to_close
      FROM scoped
     GROUP BY source, lower(nullif(custom_fields->>'source_detail', ''))
)
SELECT p.*,
       sc.cost * p.leads / t.all_leads AS cost,
       p.won::numeric / nullif(p.won + p.lost, 0) AS conversion,
       p.won_revenue / p.leads AS revenue_per_lead
  FROM per_source p
  JOIN source_totals t USING (source)
  LEFT JOIN source_costs sc USING (source)
 -- Quality, not volume: best conversion first, then what a lead from the source is worth.
 ORDER BY conversion DESC NULLS LAST, revenue_per_lead DESC, p.leads DESC, p.source, p.detail NULLS FIRST
"""


def source_roi(session: Session, *, flt: AnalyticsFilter) -> list[SourceRoiRow]:
    """Per source: leads, won, lost, conversion (won / closed), revenue, averages, cost and ROI.

    Ranked by quality: conversion rate, then won revenue per lead. Sources with nothing closed come
    last. Cost and ROI only where `source_costs` has the source, ROI once something has closed.
    """
    where, params = _scope(flt)
    rows = []
    for r in session.execute(text(_SOURCE_ROI.format(where=where)), params):
        conversion = _float(r.conversion)
        cost = _float(r.cost)
        won_revenue = float(r.won_revenue)
        cost_per_won = cost / r.won if cost is not None and r.won else None
        # Before anything has closed, a return of -100% would only say "too early".
        roi = (won_revenue - cost) / cost if cost and r.won + r.lost else None
        rows.append(
            SourceRoiRow(
                source=r.source,
                label=r.detail or Source(r.source).label,
                detail_of=Source(r.source).label if r.detail else "",
                leads=r.leads,
                won=r.won,
                lost=r.lost,
                conversion=conversion or 0.0,
                won_revenue=won_revenue,
                revenue_per_lead=float(r.revenue_per_lead),
                average_deal=_float(r.average_deal) or 0.0,
                average_score=float(r.average_score),
                average_days_to_close=_float(r.average_days_to_close) or 0.0,
                has_cost=cost is not None,
                cost=cost or 0.0,
                cost_per_won=cost_per_won or 0.0,
                roi=roi or 0.0,
                conversion_label=percent_label(conversion),
                closed_label=f"{r.won} of {r.won + r.lost} closed",
                won_revenue_label=money(won_revenue),
                revenue_per_lead_label=money(r.revenue_per_lead),
                average_deal_label=money_label(_float(r.average_deal)),
                average_score_label=f"{float(r.average_score):.0f}",
                average_days_label=days_label(_float(r.average_days_to_close)),
                cost_label=money_label(cost),
                cost_per_won_label=money_label(cost_per_won),
                roi_label=roi_label(roi),
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# 2. Priority distribution


_TIER_COUNTS = """
SELECT tier, count(*) AS n FROM leads
 WHERE {where} AND stage NOT IN ('won', 'lost')
 GROUP BY tier
"""


def tier_counts(session: Session, *, flt: AnalyticsFilter) -> list[TierCount]:
    """Open leads by their tier now, Hot first (every tier listed, zero included)."""
    where, params = _scope(flt)
    counts = dict(session.execute(text(_TIER_COUNTS.format(where=where)), params).all())
    total = sum(counts.values())
    return [
        TierCount(
            tier=t.value,
            label=t.label,
            advice=t.advice,
            count=counts.get(t.value, 0),
            share_label=f"{percent_label(_ratio(counts.get(t.value, 0), total))} of open leads"
            if total
            else "No open leads",
        )
        for t in Tier
    ]


_WEEKLY_TIERS = """
SELECT date_trunc('week', created_at AT TIME ZONE 'UTC')::date AS week_start,
       count(*) FILTER (WHERE tier = 'hot') AS hot,
       count(*) FILTER (WHERE tier = 'warm') AS warm,
       count(*) FILTER (WHERE tier = 'cold') AS cold
  FROM leads
 WHERE {where} AND dates_known
 GROUP BY 1
 ORDER BY 1
"""


def weekly_tiers(session: Session, *, flt: AnalyticsFilter) -> list[WeeklyTierRow]:
    """Leads by the week (Monday, UTC) they were created, split by their tier today.

    Historic tiers are not stored, so this is not "how many were hot that week": it shows whether
    the leads that arrived in a week turned out hot, warm or cold as scored now. Leads imported without
    dates are left out: they did not arrive in the week of their import.
    """
    where, params = _scope(flt)
    return [
        WeeklyTierRow(week_start=r.week_start.isoformat(), hot=r.hot, warm=r.warm, cold=r.cold)
        for r in session.execute(text(_WEEKLY_TIERS.format(where=where)), params)
    ]


_TIER_CONVERSION = """
SELECT CASE WHEN score_at_close >= {hot} THEN 'hot' WHEN score_at_close >= {warm} THEN 'warm' ELSE 'cold' END
           AS tier,
       count(*) FILTER (WHERE stage = 'won') AS won,
       count(*) FILTER (WHERE stage = 'lost') AS lost
  FROM leads
 WHERE {where} AND stage IN ('won', 'lost') AND score_at_close IS NOT NULL
 GROUP BY 1
"""


def tier_conversion(session: Session, *, flt: AnalyticsFilter) -> list[TierConversionRow]:
    """Win rate of closed leads by the tier their score gave when the deal closed (score_at_close).

    If the score predicts wins, Hot wins more often than Warm, and Warm more than Cold.
    """
    where, params = _scope(flt)
    found = {r.tier: r for r in session.execute(text(_TIER_CONVERSION.format(where=where, hot=HOT_MIN, warm=WARM_MIN)), params)}
    rows = []
    for t in Tier:
        won, lost = (found[t.value].won, found[t.value].lost) if t.value in found else (0, 0)
        rate = _ratio(won, won + lost)
        rows.append(
            TierConversionRow(
                tier=t.value,
                label=t.label,
                won=won,
                lost=lost,
                conversion=rate or 0.0,
                conversion_label=percent_label(rate),
                closed_label=f"{won} of {won + lost} closed" if won + lost else "None closed",
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# 3. Funnel


def _stage_ordinals() -> str:
    return ", ".join(f"('{s.value}', {i})" for i, s in enumerate(FUNNEL_STAGES))


_FUNNEL = """
WITH ord(stage, n) AS (VALUES {ordinals}),
-- Leads imported without dates are left out: nothing is known of the stages they went through.
scoped AS (SELECT id, stage FROM leads WHERE {where} AND dates_known),
-- The furthest stage each lead got to: its current stage (unless lost) or any stage in its history.
furthest AS (
    SELECT l.id, greatest(coalesce(cur.n, 0), coalesce(max(hist.n), 0)) AS n
      FROM scoped l
      LEFT JOIN ord cur ON cur.stage = l.stage
      LEFT JOIN stage_changes sc ON sc.lead_id = l.id
      LEFT JOIN ord hist ON hist.stage = sc.to_stage
     GROUP BY l.id, cur.n
)
SELECT ord.stage, ord.n, count(furthest.id) AS reached
  FROM ord LEFT JOIN furthest ON furthest.n >= ord.n
 GROUP BY ord.stage, ord.n
 ORDER BY ord.n
"""

_TIME_IN_STAGE = """
WITH scoped AS (SELECT id, stage, created_at FROM leads WHERE {where} AND dates_known),
entries AS (
    SELECT sc.lead_id, sc.to_stage AS stage, sc.changed_at AS entered_at, sc.id AS seq
      FROM stage_changes sc JOIN scoped l ON l.id = sc.lead_id
    UNION ALL
    -- Leads whose arrival was not recorded as a change started, at creation, in the stage their
    -- first change left (or the one they are still in).
    SELECT l.id,
           coalesce((SELECT f.from_stage FROM stage_changes f WHERE f.lead_id = l.id
                      ORDER BY f.changed_at, f.id LIMIT 1), l.stage),
           l.created_at, 0
      FROM scoped l
     WHERE NOT EXISTS (SELECT 1 FROM stage_changes a WHERE a.lead_id = l.id AND a.from_stage IS NULL)
),
stays AS (
    SELECT stage, entered_at,
           lead(entered_at) OVER (PARTITION BY lead_id ORDER BY entered_at, seq) AS left_at
      FROM entries
)
SELECT stage, count(*) AS stays, avg(extract(epoch FROM left_at - entered_at) / 86400.0) AS average_days
  FROM stays
 WHERE left_at IS NOT NULL
 GROUP BY stage
"""


def funnel_reached(session: Session, *, flt: AnalyticsFilter) -> list[tuple[str, int]]:
    """(stage, leads that reached it) in funnel order; a lead reached every stage up to its furthest."""
    where, params = _scope(flt)
    return [
        (r.stage, r.reached)
        for r in session.execute(text(_FUNNEL.format(where=where, ordinals=_stage_ordinals())), params)
    ]


def stage_stays(session: Session, *, flt: AnalyticsFilter) -> dict[str, tuple[int, float]]:
    """stage -> (completed stays, their average days), from the stage history (LEAD() per lead)."""
    where, params = _scope(flt)
    return {
        r.stage: (r.stays, float(r.average_days))
        for r in session.execute(text(_TIME_IN_STAGE.format(where=where)), params)
    }


def funnel(session: Session, *, flt: AnalyticsFilter) -> list[FunnelRow]:
    """Leads that reached each stage, conversion from each stage to the next, and the average
    completed stay in each stage (from the stage history, with a LEAD() window per lead).

    A lead counts as having reached every stage up to the furthest it got to, so the funnel never
    widens. Stays still going on are left out of the averages (they have no end yet). Leads imported
    without dates are left out: a won deal from such a file did not pass every stage on the way.
    """
    return funnel_rows(funnel_reached(session, flt=flt), stage_stays(session, flt=flt))


def undated_leads(session: Session, *, flt: AnalyticsFilter) -> int:
    """Leads imported without dates that the filter's period leaves out (none without a period): the
    page says so, rather than let an imported history seem to have vanished."""
    if flt.created_from is None and flt.created_to is None:
        return 0
    owner = "" if flt.owner_id is None else " AND owner_id = :owner_id"
    return session.execute(text(f"SELECT count(*) FROM leads WHERE NOT dates_known{owner}"),
                           {"owner_id": flt.owner_id}).scalar_one()


# ---------------------------------------------------------------------------------------------
# Everything the page shows, in one call.


def analytics_report(session: Session, *, flt: AnalyticsFilter) -> AnalyticsReport:
    """All sections of the analytics page for one filter, one query after another."""
    sources = source_roi(session, flt=flt)
    return AnalyticsReport(
        sources=sources,
        tiers=tier_counts(session, flt=flt),
        weekly=weekly_tiers(session, flt=flt),
        tier_conversion=tier_conversion(session, flt=flt),
        funnel=funnel(session, flt=flt),
        total_leads=sum(r.leads for r in sources),
        undated_leads=undated_leads(session, flt=flt),
    )


def analytics_report_concurrently(
    open_session: Callable[[], Session], *, flt: AnalyticsFilter, workers: int = 4
) -> AnalyticsReport:
    """The same report with its queries run side by side, each in a session of its own: the page
    waits for the slowest query (the stage history ones, at scale) instead of for their sum."""

    def run(query):
        with open_session() as session:
            return query(session, flt=flt)

    queries = (source_roi, tier_counts, weekly_tiers, tier_conversion, funnel_reached, stage_stays,
               undated_leads)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        sources, tiers, weekly, conversion, reached, stays, undated = pool.map(run, queries)
    return AnalyticsReport(
        sources=sources,
        tiers=tiers,
        weekly=weekly,
        tier_conversion=conversion,
        funnel=funnel_rows(reached, stays),
        total_leads=sum(r.leads for r in sources),
        undated_leads=undated,
    )


# Lost deals per reason, source and the stage they were lost from (services/lost_reasons.py).
_BREAKDOWN_SQL = """
SELECT coalesce(l.lost_reason, :none) AS reason, l.source,
       coalesce(c.from_stage, 'new') AS from_stage, count(*) AS n
  FROM (SELECT id, lost_reason, source FROM leads WHERE {where} AND stage = 'lost') l
  LEFT JOIN LATERAL (
        SELECT s.from_stage FROM stage_changes s
         WHERE s.lead_id = l.id AND s.to_stage = 'lost'
         ORDER BY s.changed_at DESC, s.id DESC LIMIT 1
  ) c ON TRUE
 GROUP BY 1, 2, 3
"""


def lost_breakdown(session: Session, *, flt: AnalyticsFilter, none: str) -> set[tuple[str, str, str, int]]:
    where, params = _scope(flt)
    return {tuple(r) for r in session.execute(text(_BREAKDOWN_SQL.format(where=where)), {**params, "none": none})}


# ---------------------------------------------------------------------------------------------
# Segment insights before their rollup (migration 0039): the closed leads in scope and a GROUP BY
# over their activities on every load (services/segments.py until then, word for word).

from crm_app.domain import CONTACT_KINDS, CONTENT_READ_KINDS, Play  # noqa: E402
from crm_app.scoring import ENGAGEMENT_KINDS  # noqa: E402
from crm_app.scoring.next_action import size_band_sql  # noqa: E402
from crm_app.scoring.segments import ENGAGEMENT_THRESHOLDS, MIN_SUPPORT, READ_THRESHOLDS  # noqa: E402
from crm_app.services.analytics import _scope  # noqa: E402

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


def segment_counts(session: Session, *, flt: AnalyticsFilter, min_support: int = MIN_SUPPORT) -> list[tuple]:
    """(source, trait, closed, won) rows as the scan counted them; (None, None, ...) is every closed lead."""
    where, params = _scope(flt)
    session.execute(text("SET LOCAL jit = off"))
    session.execute(text("SET LOCAL work_mem = '64MB'"))
    return [tuple(r) for r in session.execute(
        text(_segments_sql(where)),
        {
            **params,
            "engagement_kinds": [k.value for k in ENGAGEMENT_KINDS],
            "rep_kinds": [k.value for k in CONTACT_KINDS],
            "read_kinds": [k.value for k in CONTENT_READ_KINDS],
            "min_support": min_support,
        },
    ).all()]
