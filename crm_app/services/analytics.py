"""Read models for the analytics page: which channels bring buyers, does the score predict wins,
and where deals stall. Every aggregate is computed in SQL and comes back as a few small rows.

All sections look at the same set of leads: those created in a date range (half-open,
`created_from <= created_at < created_to`) and, optionally, owned by one rep.

The figures are read from the analytics rollup (migration 0031, services/analytics_rollup.py): counts
and sums per day x owner x keys kept by triggers as leads and moves are written, so a view costs a few
thousand rollup rows at 1M leads instead of a scan of the leads and a window over their stage history.
They are the numbers the scans gave (tests/analytics_reference.py keeps those queries; a test
compares both on generated histories). One piece, with its formatting: every section shares it.
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
from crm_app.services.analytics_rollup import Kind, rollup_rows

# Period presets offered on the page: key -> (label, days back; None = all time).
PERIODS: dict[str, tuple[str, int | None]] = {
    "30d": ("Last 30 days", 30),
    "90d": ("Last 90 days", 90),
    "365d": ("Last 365 days", 365),
    "all": ("All time", None),
}
# The path a deal walks; a lead "reached" every stage up to the furthest one it got to.
FUNNEL_STAGES: tuple[Stage, ...] = (*OPEN_STAGES, Stage.WON)


@dataclass(frozen=True)
class AnalyticsFilter:
    """Which leads the page looks at. `owner_id` None means the whole team."""

    created_from: datetime | None = None
    created_to: datetime | None = None
    owner_id: int | None = None


def period_filter(period: str, *, now: datetime, owner_id: int | None = None) -> AnalyticsFilter:
    """The filter for a preset period ending now ("30d", "90d", "365d", "all")."""
    if period not in PERIODS:
        raise ValueError(f"Unknown period {period!r}")
    days = PERIODS[period][1]
    return AnalyticsFilter(
        created_from=None if days is None else now - timedelta(days=days),
        created_to=None if days is None else now,
        owner_id=owner_id,
    )


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


@dataclass
class SourceRoiRow:
    source: str  # the Source value, e.g. "referral"
    label: str  # "Referral"; or the file's own word for it ("Google"), kept by an import as source_detail
    detail_of: str  # "" or, for such a word, the source it counts under ("Paid search")
    leads: int
    won: int
    lost: int
    conversion: float  # won / closed; 0.0 with conversion_label "—" when nothing has closed
    won_revenue: float
    revenue_per_lead: float
    average_deal: float
    average_score: float
    average_days_to_close: float
    has_cost: bool
    cost: float  # the share of the source's spend carried by these leads
    cost_per_won: float
    roi: float
    conversion_label: str
    closed_label: str  # "2 of 3 closed"
    won_revenue_label: str
    revenue_per_lead_label: str
    average_deal_label: str
    average_score_label: str
    average_days_label: str
    cost_label: str
    cost_per_won_label: str
    roi_label: str


_SOURCE_ROI = """
WITH parts AS ({rows}),
-- Each key's sums first: a part month may come as its month row less some days' rows, so a key whose
-- leads all fall outside the period nets to zero and must not lend its spelling to min(k2) below.
keyed AS (
    SELECT k1, k2, k3, sum(n) AS n, sum(score_sum) AS score_sum, sum(value_sum) AS value_sum,
           sum(days_sum) AS days_sum, sum(days_n) AS days_n
      FROM parts GROUP BY k1, k2, k3 HAVING sum(n) <> 0
),
-- Spend is stored per source for all time; each lead the source ever brought carries an equal share,
-- so a filtered view (a period, one rep) is charged only for its own leads.
source_totals AS (SELECT k1 AS source, sum(n) AS all_leads FROM analytics_rollup WHERE kind = 1 AND monthly GROUP BY k1),
-- An import keeps the file's own word for the source ("Google", "Olark Chat") as source_detail: a row
-- per word (in any case), so twenty words mapped to a few sources are not lumped together.
per_source AS (
    SELECT k1 AS source, min(k2) AS detail,
           sum(n)::bigint AS leads,
           coalesce(sum(n) FILTER (WHERE k3 = 'won'), 0)::bigint AS won,
           coalesce(sum(n) FILTER (WHERE k3 = 'lost'), 0)::bigint AS lost,
           coalesce(sum(value_sum) FILTER (WHERE k3 = 'won'), 0) AS won_revenue,
           sum(value_sum) FILTER (WHERE k3 = 'won') / nullif(sum(n) FILTER (WHERE k3 = 'won'), 0) AS average_deal,
           sum(score_sum) / sum(n) AS average_score,
           sum(days_sum) / nullif(sum(days_n), 0) AS average_days_to_close
      FROM keyed
     GROUP BY k1, lower(k2)
    HAVING sum(n) > 0
)
SELECT p.*,
       sc.cost * p.leads / t.all_leads AS cost,
       p.won::numeric / nullif(p.won + p.lost, 0) AS conversion,
       p.won_revenue / p.leads AS revenue_per_lead
  FROM per_source p
  JOIN source_totals t ON t.source = p.source
  LEFT JOIN source_costs sc ON sc.source = p.source
 -- Quality, not volume: best conversion first, then what a lead from the source is worth.
 ORDER BY conversion DESC NULLS LAST, revenue_per_lead DESC, p.leads DESC, p.source, p.detail NULLS FIRST
"""


def source_roi(session: Session, *, flt: AnalyticsFilter) -> list[SourceRoiRow]:
    """Per source: leads, won, lost, conversion (won / closed), revenue, averages, cost and ROI.

    Ranked by quality: conversion rate, then won revenue per lead. Sources with nothing closed come
    last. Cost and ROI only where `source_costs` has the source, ROI once something has closed.
    """
    parts, params = rollup_rows(flt, Kind.SOURCE)
    rows = []
    for r in session.execute(text(_SOURCE_ROI.format(rows=parts)), params):
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


@dataclass
class TierCount:
    tier: str
    label: str
    advice: str
    count: int
    share_label: str  # "42% of open leads"


@dataclass
class WeeklyTierRow:
    week_start: str  # ISO date of the Monday (UTC)
    hot: int
    warm: int
    cold: int


@dataclass
class TierConversionRow:
    tier: str
    label: str
    won: int
    lost: int
    conversion: float
    conversion_label: str
    closed_label: str


_TIER_COUNTS = """
SELECT k1 AS tier, sum(n)::bigint AS n FROM ({rows}) parts WHERE k2 = 'open' GROUP BY k1 HAVING sum(n) > 0
"""


def tier_counts(session: Session, *, flt: AnalyticsFilter) -> list[TierCount]:
    """Open leads by their tier now, Hot first (every tier listed, zero included)."""
    parts, params = rollup_rows(flt, Kind.TIER)
    counts = dict(session.execute(text(_TIER_COUNTS.format(rows=parts)), params).all())
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
SELECT date_trunc('week', day::timestamp)::date AS week_start,
       coalesce(sum(n) FILTER (WHERE k1 = 'hot'), 0)::bigint AS hot,
       coalesce(sum(n) FILTER (WHERE k1 = 'warm'), 0)::bigint AS warm,
       coalesce(sum(n) FILTER (WHERE k1 = 'cold'), 0)::bigint AS cold
  FROM ({rows}) parts
 GROUP BY 1
HAVING sum(n) > 0
 ORDER BY 1
"""


def weekly_tiers(session: Session, *, flt: AnalyticsFilter) -> list[WeeklyTierRow]:
    """Leads by the week (Monday, UTC) they were created, split by their tier today.

    Historic tiers are not stored, so this is not "how many were hot that week": it shows whether
    the leads that arrived in a week turned out hot, warm or cold as scored now. Leads imported without
    dates are left out: they did not arrive in the week of their import.
    """
    parts, params = rollup_rows(flt, Kind.TIER, dated=True, daily=True)
    return [
        WeeklyTierRow(week_start=r.week_start.isoformat(), hot=r.hot, warm=r.warm, cold=r.cold)
        for r in session.execute(text(_WEEKLY_TIERS.format(rows=parts)), params)
    ]


_TIER_CONVERSION = """
SELECT k1 AS tier,
       coalesce(sum(n) FILTER (WHERE k2 = 'won'), 0)::bigint AS won,
       coalesce(sum(n) FILTER (WHERE k2 = 'lost'), 0)::bigint AS lost
  FROM ({rows}) parts
 GROUP BY k1
"""


def tier_conversion(session: Session, *, flt: AnalyticsFilter) -> list[TierConversionRow]:
    """Win rate of closed leads by the tier their score gave when the deal closed (score_at_close).

    If the score predicts wins, Hot wins more often than Warm, and Warm more than Cold.
    """
    parts, params = rollup_rows(flt, Kind.CLOSE)
    found = {r.tier: r for r in session.execute(text(_TIER_CONVERSION.format(rows=parts)), params)}
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


@dataclass
class FunnelRow:
    stage: str
    label: str
    reached: int
    reached_share: float  # of all leads in scope
    next_conversion: float  # share that went on to the next stage; 0 for the last
    has_next: bool
    average_days: float  # average completed stay in this stage
    stays: int  # completed stays the average is taken over
    reached_label: str
    reached_share_label: str
    next_conversion_label: str
    average_days_label: str


_FURTHEST = "SELECT k1::integer AS n, sum(n)::bigint AS leads FROM ({rows}) parts GROUP BY 1"

# The stays each lead completed, as the scan's window gave them: entries are the lead's stage changes
# and, when its arrival was not recorded, its creation in the stage its first change left; a stay runs
# from one entry to the next (by time, then id). Summed per lead and stage by the rollup's triggers.
_TIME_IN_STAGE = """
SELECT k1 AS stage, sum(n)::bigint AS stays, sum(days_sum) / sum(n) AS average_days
  FROM ({rows}) parts
 GROUP BY k1
HAVING sum(n) > 0
"""


def funnel_reached(session: Session, *, flt: AnalyticsFilter) -> list[tuple[str, int]]:
    """(stage, leads that reached it) in funnel order; a lead reached every stage up to its furthest
    (its current stage unless lost, or any stage in its history). Leads imported without dates are
    left out: nothing is known of the stages they went through."""
    parts, params = rollup_rows(flt, Kind.FURTHEST, dated=True)
    at = dict(session.execute(text(_FURTHEST.format(rows=parts)), params).all())
    reached, total = [], 0
    for n in reversed(range(len(FUNNEL_STAGES))):
        total += at.get(n, 0)
        reached.append((FUNNEL_STAGES[n].value, total))
    return reached[::-1]


def stage_stays(session: Session, *, flt: AnalyticsFilter) -> dict[str, tuple[int, float]]:
    """stage -> (completed stays, their average days), from the stays stored as moves were written."""
    parts, params = rollup_rows(flt, Kind.STAYS, dated=True)
    return {
        r.stage: (r.stays, float(r.average_days))
        for r in session.execute(text(_TIME_IN_STAGE.format(rows=parts)), params)
    }


def funnel_rows(reached: list[tuple[str, int]], stays: dict[str, tuple[int, float]]) -> list[FunnelRow]:
    """The funnel table from its two queries' results."""
    total = reached[0][1] if reached else 0
    rows = []
    for i, (stage, count) in enumerate(reached):
        has_next = i + 1 < len(reached)
        next_rate = _ratio(reached[i + 1][1], count) if has_next else None
        stay_count, average = stays.get(stage, (0, None))
        closed = Stage(stage).is_closed
        rows.append(
            FunnelRow(
                stage=stage,
                label=Stage(stage).label,
                reached=count,
                reached_share=_ratio(count, total) or 0.0,
                next_conversion=next_rate or 0.0,
                has_next=has_next,
                average_days=average or 0.0,
                stays=stay_count,
                reached_label=f"{count:,}",
                reached_share_label=percent_label(_ratio(count, total)),
                next_conversion_label=percent_label(next_rate) if has_next else NONE_LABEL,
                average_days_label=NONE_LABEL if closed else days_label(average),
            )
        )
    return rows


def funnel(session: Session, *, flt: AnalyticsFilter) -> list[FunnelRow]:
    """Leads that reached each stage, conversion from each stage to the next, and the average
    completed stay in each stage (the stays stored as moves were written, summed in the rollup).

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
    return session.execute(
        text(f"SELECT coalesce(sum(n), 0)::bigint FROM analytics_rollup WHERE kind = :kind AND monthly AND NOT dates_known{owner}"),
        {"kind": int(Kind.SOURCE), "owner_id": flt.owner_id},
    ).scalar_one()


# ---------------------------------------------------------------------------------------------
# Everything the page shows, in one call.


@dataclass
class AnalyticsReport:
    sources: list[SourceRoiRow]
    tiers: list[TierCount]
    weekly: list[WeeklyTierRow]
    tier_conversion: list[TierConversionRow]
    funnel: list[FunnelRow]
    total_leads: int
    undated_leads: int = 0  # imported without dates, left out by the period (see undated_leads)


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
