"""Pipeline health for one rep or the whole team: what is open per stage, how fresh leads arrive,
how the open leads split by tier and how many deals are stuck. The per-stage figures come from
the totals the database keeps (services/pipeline.kept_totals), the weekly counts from one query.

Drying-up rule: the baseline is the average number of new leads a week over the four complete
weeks before last week. The pipeline is drying up when last week brought fewer than 60% of the
baseline, or when this week, with at least three days gone, is on pace for fewer than 60% of it
(new leads so far / days gone x 7). No warning while the baseline is under two leads a week: too
few to tell a trend from noise. Weeks start on Monday 00:00 in `now`'s time zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.queries import money
from crm_app.domain import OPEN_STAGES
from crm_app.services.analytics import AnalyticsFilter
from crm_app.services.analytics_rollup import Kind, rollup_rows
from crm_app.services.forecast import weighting
from crm_app.services.pipeline import kept_totals, stuck_counts

WEEKS_SHOWN = 8
BASELINE_WEEKS = 4
DRY_SHARE = 0.6
MIN_DAYS_FOR_PACE = 3
MIN_BASELINE = 2.0


@dataclass
class StageHealth:
    stage: str
    label: str
    count: int
    value: float
    value_label: str
    stuck: int
    weighted_label: str = ""  # value x P(win) (services/forecast.Weighting)


@dataclass
class WeekCount:
    label: str  # "9 Nov": the Monday it starts
    count: int
    current: bool  # this (incomplete) week


@dataclass
class PipelineHealth:
    stages: list[StageHealth] = field(default_factory=list)
    open_count: int = 0
    open_value_label: str = "$0"
    weighted_value_label: str = "$0"
    weighting_label: str = ""
    hot: int = 0
    warm: int = 0
    cold: int = 0
    stuck: int = 0
    weeks: list[WeekCount] = field(default_factory=list)  # oldest first, this week last
    baseline: float = 0.0
    drying_up: bool = False
    drying_message: str = ""


_WEEKS_SQL = """
SELECT date_bin('7 days', l.created_at, CAST(:origin AS timestamptz)) AS week, count(*) AS count
  FROM leads l
 WHERE l.created_at >= :since AND l.created_at <= :now AND l.dates_known
   AND (CAST(:owner_id AS integer) IS NULL OR l.owner_id = :owner_id)
 GROUP BY 1
"""


def _week_counts(session: Session, *, owner_id: int | None, now: datetime, origin: datetime,
                 since: datetime) -> dict[datetime, int]:
    """New leads (with known dates) per week from `since` to `now`, by the week's start. When weeks start
    at UTC midnight, from the analytics rollup's day rows (one per lead under kind SOURCE, migration
    0031) and today's leads up to now: at 1M leads the scan of the ~186,000 leads created in seven
    weeks took ~160 ms for the team. In another time zone, from the leads."""
    if now.utcoffset() != timedelta(0):
        return {r.week: r.count for r in session.execute(
            text(_WEEKS_SQL), {"owner_id": owner_id, "now": now, "origin": origin, "since": since})}
    flt = AnalyticsFilter(created_from=since, created_to=now + timedelta(microseconds=1), owner_id=owner_id)
    rows_sql, params = rollup_rows(flt, Kind.SOURCE, dated=True, daily=True)
    counts: dict[datetime, int] = {}
    first = origin.date()
    for day, n in session.execute(text(f"SELECT day, sum(n) FROM ({rows_sql}) r GROUP BY day"), params):
        week = origin + timedelta(weeks=(day - first).days // 7)
        counts[week] = counts.get(week, 0) + int(n)
    return {week: n for week, n in counts.items() if n}


@dataclass
class _StageRow:
    count: int = 0
    value: Decimal = Decimal(0)
    value_score: Decimal = Decimal(0)
    hot: int = 0
    warm: int = 0
    cold: int = 0
    stuck: int = 0


def week_start(now: datetime) -> datetime:
    """Monday 00:00 of `now`'s week, in `now`'s time zone."""
    return datetime.combine(now.date() - timedelta(days=now.weekday()), time(0), tzinfo=now.tzinfo)


def drying_up(weeks: list[int], days_into_week: float) -> tuple[bool, float, str]:
    """Apply the drying-up rule (module docstring) to weekly counts, oldest first, this week last.

    Returns whether to warn, the baseline and the sentence that says why."""
    if len(weeks) < BASELINE_WEEKS + 2:
        return False, 0.0, ""
    this_week, last_week = weeks[-1], weeks[-2]
    baseline = sum(weeks[-2 - BASELINE_WEEKS:-2]) / BASELINE_WEEKS
    if baseline < MIN_BASELINE:
        return False, baseline, ""
    floor = DRY_SHARE * baseline
    if last_week < floor:
        return True, baseline, (
            f"Last week brought {last_week} new leads, against {baseline:.1f} a week before that. "
            "Time to prospect or ask marketing for more."
        )
    if days_into_week >= MIN_DAYS_FOR_PACE:
        pace = this_week / days_into_week * 7
        if pace < floor:
            return True, baseline, (
                f"This week is on pace for {pace:.0f} new leads, against {baseline:.1f} a week "
                "before. Time to prospect or ask marketing for more."
            )
    return False, baseline, ""


def pipeline_health(session: Session, *, owner_id: int | None, now: datetime) -> PipelineHealth:
    """Counts and values per open stage, tiers, stuck deals and new leads per week, in SQL."""
    params = {"owner_id": owner_id, "now": now}
    open_stages = [s.value for s in OPEN_STAGES]
    # From the totals the database keeps per owner x stage x tier (migration 0029), and the stuck
    # deals through their index: no pass over the leads.
    kept = kept_totals(session, owner_id=owner_id, stages=open_stages)
    stuck = stuck_counts(session, owner_id=owner_id, stages=open_stages, now=now)
    by_stage: dict[str, _StageRow] = {}
    for (stage, tier), (deals, value, value_score) in kept.items():
        row = by_stage.setdefault(stage, _StageRow(stuck=stuck.get(stage, 0)))
        row.count += deals
        row.value += value
        row.value_score += value_score
        setattr(row, tier, getattr(row, tier) + deals)
    weights = weighting(session, now)
    health = PipelineHealth(weighting_label=weights.label)
    weighted_total = 0.0
    for stage in OPEN_STAGES:
        r = by_stage.get(stage.value)
        count, value = (r.count, float(r.value)) if r else (0, 0.0)
        weighted = weights.weighted(stage.value, value, float(r.value_score) if r else 0.0)
        weighted_total += weighted
        health.stages.append(
            StageHealth(stage=stage.value, label=stage.label, count=count, value=value,
                        value_label=money(value), stuck=r.stuck if r else 0,
                        weighted_label="—" if weights.pending else money(weighted))
        )
        if r:
            health.hot += r.hot
            health.warm += r.warm
            health.cold += r.cold
            health.stuck += r.stuck
    health.open_count = sum(s.count for s in health.stages)
    health.open_value_label = money(sum(s.value for s in health.stages))
    health.weighted_value_label = "—" if weights.pending else money(weighted_total)

    origin = week_start(now)
    since = origin - timedelta(weeks=WEEKS_SHOWN - 1)
    counts = _week_counts(session, owner_id=owner_id, now=now, origin=origin, since=since)
    starts = [since + timedelta(weeks=i) for i in range(WEEKS_SHOWN)]
    health.weeks = [
        WeekCount(label=f"{start.day} {start:%b}", count=counts.get(start, 0), current=start == origin)
        for start in starts
    ]
    days_in = (now - origin).total_seconds() / 86400
    health.drying_up, health.baseline, health.drying_message = drying_up(
        [w.count for w in health.weeks], days_in
    )
    return health
