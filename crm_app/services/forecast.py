"""The revenue forecast's use cases: read the facts in SQL, hand them to crm_app/forecasting.

- `build_forecast`: won revenue this month, next month and over the next three, for the team or one
  rep, with the deals that carry it, the target and the gap.
- `run_backtest`: the last months rebuilt from what was known on their first day, three methods.
- `stage_win_rates` / `weighted_value_sql`: P(win) per open lead in SQL, for the weighted pipeline
  the kanban, Today and the Leads table show.
- `sales_targets` / `set_sales_target`: the monthly targets managers set.

Months are calendar months in UTC. Under row-level security a rep's session sees their own leads
(and the pool, which the forecast leaves out: nobody will close it); the team's closing pace and win
rates come from `crm_forecast_history` (migration 0022), counts only.

One module of ~500 lines on purpose: its sections (months, facts in SQL, targets, the forecast, the
backtest, the weighted pipeline) share the month arithmetic and the queries, and the math they feed
already lives apart in crm_app/forecasting.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
from sqlalchemy import select, text
from sqlmodel import Session

from crm_app import live
from crm_app.db.engine import get_engine
from crm_app.db.models import SalesTarget
from crm_app.db.queries import money
from crm_app.domain import OPEN_STAGES, Stage
from crm_app.forecasting import (
    BOOTSTRAPS,
    FreshHistory,
    MonthWindow,
    OpenDeal,
    TimingModel,
    forecast_windows,
)
from crm_app.forecasting.backtest import (
    BacktestMonth,
    MethodScore,
    Prediction,
    backtest_month,
    calibrate,
    score_methods,
)
from crm_app.forecasting.timing import AGE_STEP, CREATED, fit_timing_columns
from crm_app.services.analytics import AnalyticsFilter, tier_conversion
from crm_app.services.errors import InvalidInput
from crm_app.services.permissions import CurrentUser, require_manager
from crm_app.services.scoring import engine_config
from crm_app.services.settings import parse_cost

DAY_SECONDS = 86_400
HORIZON_MONTHS = 3
FRESH_MONTHS = 3
BACKTEST_MONTHS = 12
CALIBRATION_MONTHS = 12  # past months whose forecast errors calibrate the interval
CACHE_FROM_CLOSED = 2000  # below this many closed deals the current fit is not cached (cheap, and each close counts)
PAST_TTL_SECONDS = 3600  # past months' forecasts and the backtest: done months change rarely
# The interval's bootstrap over the history (forecasting.forecast.BOOTSTRAPS draws, each a refit) only
# while the history is small enough for its noise to show: past this many closed deals its draws
# differ by a few percent (noise shrinks as 1 / sqrt(n)) and the ten refits cost minutes at 100,000 leads.
BOOTSTRAP_UNTIL_CLOSED = 5000
OPEN_STAGE_VALUES = [s.value for s in OPEN_STAGES]


# ---------------------------------------------------------------------------------------------
# Months

def month_start(moment: datetime, offset: int = 0) -> datetime:
    """The first instant (UTC) of the month `offset` months after `moment`'s."""
    moment = moment.astimezone(timezone.utc)
    index = moment.year * 12 + moment.month - 1 + offset
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)


def month_label(start: datetime) -> str:
    return f"{start:%b %Y}"


def month_windows(now: datetime, months: int = HORIZON_MONTHS) -> list[MonthWindow]:
    """The rest of this month, then whole months, in days from `now`."""
    windows = []
    for k in range(months):
        start, end = max(month_start(now, k), now), month_start(now, k + 1)
        whole = (end - month_start(now, k)).total_seconds()
        windows.append(MonthWindow(
            label=month_label(month_start(now, k)),
            start_days=(start - now).total_seconds() / DAY_SECONDS,
            end_days=(end - now).total_seconds() / DAY_SECONDS,
            fraction_of_month=(end - start).total_seconds() / whole,
        ))
    return windows


# ---------------------------------------------------------------------------------------------
# Facts, in SQL

_timing_cache: dict[tuple, tuple[float, TimingModel]] = {}
_timing_lock = threading.Lock()
_timing_fitting: dict[tuple, threading.Lock] = {}


def _fit_timing_at(session: Session, cutoff: datetime) -> TimingModel:
    rows = session.execute(text(
        "SELECT basis, coalesce(stay, -1), coalesce(days, -1), coalesce(entered, -1), outcome, deals "
        "FROM crm_forecast_history(:cutoff)"), {"cutoff": cutoff}).all()
    columns = list(zip(*rows)) if rows else [()] * 6
    basis, outcome = np.array(columns[0], dtype=object), np.array(columns[4], dtype=object)
    stay, days = np.array(columns[1], dtype=int), np.array(columns[2], dtype=int)
    deals = np.array(columns[5], dtype=float)
    # Ages at entry in whole weeks, as the open deals' ages are compared (timing.AGE_STEP): the same
    # curves from fewer rows (131,825 -> 78,963 at 100,000 leads).
    entered = np.array(columns[3], dtype=int)
    entered = np.where(entered >= 0, entered // AGE_STEP * AGE_STEP, entered)
    if len(deals):
        codes = {name: i for i, name in enumerate(sorted(set(basis.tolist()) | set(outcome.tolist())))}
        names = np.array(sorted(codes, key=codes.get), dtype=object)
        keys = np.stack([np.array([codes[b] for b in basis]), stay, days, entered,
                         np.array([codes[o] for o in outcome])], axis=1)
        keys, inverse = np.unique(keys, axis=0, return_inverse=True)
        deals = np.bincount(inverse.reshape(-1), weights=deals)
        basis, outcome = names[keys[:, 0]], names[keys[:, 4]]
        stay, days, entered = keys[:, 1], keys[:, 2], keys[:, 3]
    return fit_timing_columns(basis=basis, stay=stay, days=days, entered=entered, outcome=outcome,
                              deals=deals)


def timing_at(session: Session, cutoff: datetime, *, current: bool = False) -> TimingModel:
    """Win rates and time-to-close curves from the team's history as known at `cutoff`.

    Team-wide (the same for every owner), so cached per database: with `current` ("now") for
    RATES_TTL_SECONDS whatever moved meanwhile (the team's pace changes slowly; a fit from a few minutes
    earlier is as good, and one move must not cost a refit of the whole history); a past cut-off (a
    month's first day, for the backtest and the interval's calibration) for PAST_TTL_SECONDS. The fit
    is the cost at scale: one SQL aggregate over every stage change."""
    bind = session.get_bind()
    key = (str(bind.engine.url), None if current else cutoff)
    ttl = RATES_TTL_SECONDS if current else PAST_TTL_SECONDS
    with _timing_lock:
        fitting = _timing_fitting.setdefault(key, threading.Lock())
    # One fit per key at a time: a page's calibration and a manager's backtest (or two viewers) that
    # need the same month start wait for the first fit instead of running the same aggregate twice.
    with fitting:
        with _timing_lock:
            cached = _timing_cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < ttl:
            return cached[1]
        timing = _fit_timing_at(session, cutoff)
        if current and timing.estimates[CREATED].closed < CACHE_FROM_CLOSED:
            # A small history fits in milliseconds and each close moves it: a team's first closed
            # deals must count at once, not after the cache's ten minutes.
            return timing
        with _timing_lock:
            if len(_timing_cache) > 64:
                _timing_cache.clear()
            _timing_cache[key] = (time.monotonic(), timing)
    return timing


_OPEN_NOW = """
SELECT l.id, l.name, l.owner_id, l.stage, l.deal_value, l.score,
       extract(epoch FROM (:now - l.stage_entered_at)) / 86400 AS days_in_stage,
       extract(epoch FROM (:now - l.created_at)) / 86400 AS age_days
  FROM leads l
 WHERE l.stage = ANY(:open_stages) AND l.owner_id IS NOT NULL
   AND (CAST(:owner_id AS integer) IS NULL OR l.owner_id = :owner_id)
 ORDER BY l.id
"""

# The deals open at a past cut-off, in the stage they were in then (their last stage change before
# it); a deal closed after the cut-off was still open then.
_OPEN_AT = """
SELECT l.id, l.name, l.owner_id, sc.to_stage AS stage, l.deal_value,
       extract(epoch FROM (:cutoff - sc.changed_at)) / 86400 AS days_in_stage,
       extract(epoch FROM (:cutoff - l.created_at)) / 86400 AS age_days
  FROM leads l
  JOIN LATERAL (SELECT s.to_stage, s.changed_at FROM stage_changes s
                 WHERE s.lead_id = l.id AND s.changed_at < :cutoff
                 ORDER BY s.changed_at DESC, s.id DESC LIMIT 1) sc ON TRUE
 WHERE l.created_at < :cutoff AND l.dates_known AND l.owner_id IS NOT NULL
   AND (l.closed_at IS NULL OR l.closed_at >= :cutoff)
   AND sc.to_stage = ANY(:open_stages)
   AND (CAST(:owner_id AS integer) IS NULL OR l.owner_id = :owner_id)
 ORDER BY l.id
"""


def open_deals_now(session: Session, *, owner_id: int | None, now: datetime,
                   model_scores: bool = False) -> list[OpenDeal]:
    """The open deals someone owns; with `model_scores` each carries its calibrated P(win) (the page's
    forecast does not ask for it: see build_forecast)."""
    rows = session.execute(text(_OPEN_NOW), {"now": now, "owner_id": owner_id, "open_stages": OPEN_STAGE_VALUES})
    return [
        OpenDeal(lead_id=r.id, value=float(r.deal_value), stage=r.stage,
                 days_in_stage=max(float(r.days_in_stage), 0.0), age_days=max(float(r.age_days), 0.0),
                 model_probability=r.score / 100 if model_scores else None, name=r.name, owner_id=r.owner_id)
        for r in rows
    ]


def model_probabilities(session: Session, lead_ids: Sequence[int]) -> dict[int, float]:
    """The scoring model's calibrated P(win) (score / 100) of these leads, to show beside the history's."""
    if not lead_ids:
        return {}
    rows = session.execute(text("SELECT id, score FROM leads WHERE id = ANY(:ids)"), {"ids": list(lead_ids)})
    return {r.id: r.score / 100 for r in rows}


def open_deals_at(session: Session, *, owner_id: int | None, cutoff: datetime) -> list[OpenDeal]:
    """The deals open at `cutoff`, as they stood then. No model probability: past scores are not
    kept, so the backtest's P(win) is the stage's win rate as known then. Values are today's."""
    rows = session.execute(text(_OPEN_AT), {"cutoff": cutoff, "owner_id": owner_id,
                                            "open_stages": OPEN_STAGE_VALUES})
    return [
        OpenDeal(lead_id=r.id, value=float(r.deal_value), stage=r.stage,
                 days_in_stage=max(float(r.days_in_stage), 0.0), age_days=max(float(r.age_days), 0.0),
                 name=r.name, owner_id=r.owner_id)
        for r in rows
    ]


_WON_PER_MONTH = """
SELECT date_trunc('month', l.closed_at AT TIME ZONE 'UTC') AS month, sum(l.deal_value) AS won
  FROM leads l
 WHERE l.stage = 'won' AND l.dates_known AND l.closed_at >= :start AND l.closed_at < :end
   AND (CAST(:owner_id AS integer) IS NULL OR l.owner_id = :owner_id)
 GROUP BY 1
"""


def won_per_month(session: Session, *, owner_id: int | None, start: datetime, months: int) -> list[float]:
    """Won revenue in each of `months` calendar months from `start` (a month start), oldest first."""
    end = month_start(start, months)
    found = {r.month.replace(tzinfo=timezone.utc): float(r.won) for r in session.execute(
        text(_WON_PER_MONTH), {"start": start, "end": end, "owner_id": owner_id})}
    return [found.get(month_start(start, i), 0.0) for i in range(months)]


_WON_BETWEEN = """
SELECT coalesce(sum(l.deal_value), 0) FROM leads l
 WHERE l.stage = 'won' AND l.closed_at >= :start AND l.closed_at < :end AND l.dates_known
   AND (CAST(:owner_id AS integer) IS NULL OR l.owner_id = :owner_id)
"""

# Won deals that were not in the pipeline `k` months before the month they were won in: created
# after the first day of month m - k and won in month m, for the FRESH_MONTHS months before the cut-off.
_FRESH = """
SELECT k.k, l.deal_value
  FROM generate_series(0, :offsets - 1) AS k(k)
  JOIN leads l ON l.stage = 'won' AND l.dates_known
   AND l.closed_at >= :since AND l.closed_at < :cutoff
   AND l.created_at >= date_trunc('month', l.closed_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                        - k.k * interval '1 month'
 WHERE (CAST(:owner_id AS integer) IS NULL OR l.owner_id = :owner_id)
 ORDER BY k.k, l.id
"""


def fresh_history(session: Session, *, owner_id: int | None, cutoff: datetime,
                  offsets: int = HORIZON_MONTHS) -> FreshHistory:
    """The values of deals won without being in the pipeline at their window's start, per offset, over
    the FRESH_MONTHS complete months before `cutoff`'s month."""
    since = month_start(cutoff, -FRESH_MONTHS)
    until = month_start(cutoff)
    values: list[list[float]] = [[] for _ in range(offsets)]
    for r in session.execute(text(_FRESH), {"offsets": offsets, "since": since, "cutoff": until,
                                            "owner_id": owner_id}):
        values[r.k].append(float(r.deal_value))
    return FreshHistory(months=FRESH_MONTHS, values=values)


# ---------------------------------------------------------------------------------------------
# Targets

@dataclass
class TargetRow:
    user_id: int  # 0: the team
    key: str  # str(user_id): what the page's editor keys its drafts and errors by
    name: str
    target: str  # as the editor shows it: "" when none is set
    target_label: str


def target_for(session: Session, owner_id: int | None) -> float | None:
    """The monthly target of a rep (or of the team for None), if one is set and visible."""
    condition = SalesTarget.user_id.is_(None) if owner_id is None else SalesTarget.user_id == owner_id
    value = session.execute(select(SalesTarget.monthly_target).where(condition)).scalar_one_or_none()
    return None if value is None else float(value)


def sales_targets(session: Session, team: Sequence) -> list[TargetRow]:
    """The team's target and each rep's, for the managers' editor (`team`: UserOption rows)."""
    stored = {r.user_id or 0: r.monthly_target
              for r in session.execute(select(SalesTarget.user_id, SalesTarget.monthly_target))}
    rows = [(0, "Whole team")] + [(u.id, u.name) for u in team if u.role == "rep"]
    return [
        TargetRow(user_id=uid, key=str(uid), name=name,
                  target="" if stored.get(uid) is None else f"{stored[uid]:f}".rstrip("0").rstrip("."),
                  target_label="Not set" if stored.get(uid) is None else money(stored[uid]))
        for uid, name in rows
    ]


def set_sales_target(session: Session, *, user_id: int | None, typed: str, now: datetime,
                     actor: CurrentUser | None) -> float | None:
    """Store a monthly target (blank removes it) and commit; returns it. Raises InvalidInput, and
    Forbidden unless `actor` is a manager."""
    require_manager(session, actor, "set sales targets")
    try:
        amount: Decimal | None = parse_cost(typed)
    except InvalidInput as error:
        raise InvalidInput(str(error).replace("A cost", "A target"), field="target") from None
    condition = SalesTarget.user_id.is_(None) if user_id is None else SalesTarget.user_id == user_id
    row = session.execute(select(SalesTarget).where(condition).with_for_update()).scalar_one_or_none()
    actor_id = actor.id if actor else None
    if amount is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(SalesTarget(user_id=user_id, monthly_target=amount, updated_at=now, updated_by=actor_id))
    else:
        row.monthly_target, row.updated_at, row.updated_by = amount, now, actor_id
        session.add(row)
    session.commit()
    return None if amount is None else float(amount)


# ---------------------------------------------------------------------------------------------
# The forecast

@dataclass
class WindowRow:
    label: str
    won_label: str  # already won (this month only)
    expected_label: str  # expected from here on
    total_label: str  # won + expected
    interval_label: str  # "$80,000 – $140,000"
    pipeline_label: str
    fresh_label: str


@dataclass
class DealRow:
    lead_id: int
    name: str
    stage: str
    value_label: str
    probability_label: str  # "34% (stage win rate)"
    expected_label: str
    share_label: str


@dataclass
class Forecast:
    windows: list[WindowRow] = field(default_factory=list)
    this_month_total: float = 0.0
    this_month_low: float = 0.0
    this_month_high: float = 0.0
    won_so_far: float = 0.0
    expected_rest: float = 0.0
    deals: list[DealRow] = field(default_factory=list)
    top_share_label: str = ""  # "Top 10 deals carry 61% of this month's expected pipeline revenue"
    target: float | None = None
    gap: float | None = None  # target - (won + expected); > 0: short
    gap_message: str = ""
    probability_note: str = ""
    open_deals: int = 0
    # This month's interval as simulated, before the forecast's past errors widen it (calibrated_with):
    # the page shows the forecast at once and the calibration when past_errors is ready.
    calibrated: bool = False
    simulated: Prediction = field(default_factory=lambda: Prediction(0.0, 0.0, 0.0))


def calibrated_with(forecast: Forecast, errors: Sequence[tuple[float, float]]) -> Forecast:
    """`forecast` (not changed) with this month's interval widened by the forecast's past errors
    (backtest.calibrate): the interval the page shows once past_errors is known."""
    out = copy.deepcopy(forecast)
    widened = calibrate(forecast.simulated, errors, already=forecast.won_so_far)
    out.this_month_low, out.this_month_high = widened.low, widened.high
    if out.windows:
        out.windows[0].interval_label = _interval_label(widened.low, widened.high)
    out.calibrated = True
    return out


def with_current_target(session: Session, forecast: Forecast, *, owner_id: int | None) -> Forecast:
    """`forecast` (a stored one: forecast_snapshots) with the target as it is now, and the gap and what
    would close it recomputed if the target changed since it was built."""
    target = target_for(session, owner_id)
    if target == forecast.target:
        return forecast
    out = copy.deepcopy(forecast)
    out.target = target
    out.gap = None if target is None else target - out.this_month_total
    out.gap_message = "" if out.gap is None else _gap_message(session, owner_id=owner_id, gap=out.gap)
    return out


def _interval_label(low: float, high: float) -> str:
    return f"{money(low)} – {money(high)}"


def _gap_message(session: Session, *, owner_id: int | None, gap: float) -> str:
    """What would close a gap, in leads of each tier at the usual conversion (Analytics' win rate by
    tier at close) and the average value of an open lead of that tier."""
    if gap <= 0:
        return "On track: the forecast meets the target."
    rates = {r.tier: r for r in tier_conversion(session, flt=AnalyticsFilter(owner_id=owner_id))}
    values = dict(session.execute(text(
        "SELECT tier, avg(deal_value) FROM leads WHERE stage = ANY(:open_stages) AND owner_id IS NOT NULL "
        "AND (CAST(:owner_id AS integer) IS NULL OR owner_id = :owner_id) GROUP BY tier"),
        {"open_stages": OPEN_STAGE_VALUES, "owner_id": owner_id}).all())
    parts = []
    for tier in ("hot", "warm"):
        row, value = rates.get(tier), values.get(tier)
        if row is None or not row.conversion or not value:
            continue
        per_lead = row.conversion * float(value)
        parts.append(f"{math.ceil(gap / per_lead)} more {row.label} leads worked to a close "
                     f"(they win {row.conversion_label}, average deal {money(value)})")
    if not parts:
        return f"{money(gap)} short of the target; too little closed history to say what would close it."
    return f"{money(gap)} short of the target. Closing it takes about " + ", or ".join(parts) + "."


_errors_cache: dict[tuple, tuple[float, list[tuple[float, float]]]] = {}
_errors_lock = threading.Lock()


def month_forecast_at(session: Session, *, owner_id: int | None, cutoff: datetime) -> tuple[float, float]:
    """(The forecast's expected won revenue for `cutoff`'s month made on its first day, what that month
    won): the point forecast only, from what was known at `cutoff` (as backtest_at)."""
    timing = timing_at(session, cutoff)
    deals = open_deals_at(session, owner_id=owner_id, cutoff=cutoff)
    fresh = fresh_history(session, owner_id=owner_id, cutoff=cutoff, offsets=1)
    window = month_windows(cutoff, 1)[0]
    result = forecast_windows(deals, timing, [window], fresh, simulations=1, bootstraps=0)
    expected = result.windows[0].expected
    return expected, won_per_month(session, owner_id=owner_id, start=cutoff, months=1)[0]


def bootstraps_for(timing: TimingModel) -> int:
    """How many bootstrap draws of the history the interval gets (BOOTSTRAP_UNTIL_CLOSED)."""
    return BOOTSTRAPS if timing.estimates[CREATED].closed < BOOTSTRAP_UNTIL_CLOSED else 0


def _viewer(session: Session) -> str:
    """Whom the session acts for under row-level security ('' for the tables' owner): part of every
    cache key, so a rep's cached forecast is never a manager's."""
    return session.execute(text("SELECT coalesce(current_setting('crm.user_id', true), '')")).scalar_one()


def _errors_key(session: Session, owner_id: int | None, cutoff: datetime, months: int) -> tuple:
    return (str(session.get_bind().engine.url), _viewer(session), owner_id, month_start(cutoff), months)


def _errors_cached(key: tuple) -> list[tuple[float, float]] | None:
    with _errors_lock:
        cached = _errors_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < PAST_TTL_SECONDS:
        return list(cached[1])
    return None


def cached_past_errors(session: Session, *, owner_id: int | None, cutoff: datetime,
                       months: int = CALIBRATION_MONTHS) -> list[tuple[float, float]] | None:
    """past_errors if this process or forecast_calibrations has them already, else None (never computes
    them)."""
    return past_errors(session, owner_id=owner_id, cutoff=cutoff, months=months, compute=False)


def past_errors(session: Session, *, owner_id: int | None, cutoff: datetime,
                months: int = CALIBRATION_MONTHS, compute: bool = True) -> list[tuple[float, float]] | None:
    """(predicted, actual) of the forecast for each of the `months` complete months before `cutoff`'s
    month that the backtest would score (three months of history before them), oldest first: only
    months over by `cutoff`. Cached for an hour per viewer, owner and month (done months change rarely;
    the page asks on every load), and kept in forecast_calibrations for every process while the scope's
    fingerprint (_CALIBRATION_FINGERPRINT) is unchanged, a day at most: computing them replays the
    history as of each month start (minutes at 100,000 leads)."""
    key = _errors_key(session, owner_id, cutoff, months)
    cached = _errors_cached(key)
    if cached is not None:
        return cached
    # Kept between processes only for a scope every viewer of it sees alike: a rep's own deals, or the
    # team as those who see the team do (a rep asking for "everyone" sees their own and the pool).
    fingerprint = (_calibration_fingerprint(session, owner_id=owner_id, cutoff=cutoff)
                   if owner_id is not None or _sees_team(session) else None)
    stored = None if fingerprint is None else _stored_errors(
        session, owner_id=owner_id, cutoff=cutoff, months=months, fingerprint=fingerprint)
    if stored is not None:
        with _errors_lock:
            _errors_cache[key] = (time.monotonic(), stored)
        return list(stored)
    if not compute:
        return None
    first_known = session.execute(text("SELECT min(created_at) FROM leads WHERE dates_known")).scalar_one()
    if first_known is None:
        return []
    earliest = month_start(first_known, 3)
    errors = [month_forecast_at(session, owner_id=owner_id, cutoff=month_start(cutoff, -k))
              for k in range(months, 0, -1) if month_start(cutoff, -k) >= earliest]
    if fingerprint is not None:
        _store_errors(session, owner_id=owner_id, cutoff=cutoff, months=months, fingerprint=fingerprint,
                      errors=errors)
    with _errors_lock:
        _errors_cache[key] = (time.monotonic(), errors)
    return list(errors)


# What the past months' forecasts and outcomes are made of, for one scope, read in one scan of its
# leads: those created before the month (count and values: an import of old deals, a value edited)
# and those closed before it (count, dates, values, stages: a close dated back, a reopened deal). A
# close today, a move today or a new lead leave it alone: they cannot change a month that is over.
# The team's history behind P(win) (other reps' deals, for a rep) is not in it: a stored calibration
# is trusted for CALIBRATION_STORED_HOURS at most.
_CALIBRATION_FINGERPRINT = """
SELECT count(*), coalesce(sum(deal_value), 0),
       count(*) FILTER (WHERE closed_at < :month),
       coalesce(sum(extract(epoch FROM closed_at)) FILTER (WHERE closed_at < :month), 0),
       coalesce(sum(deal_value) FILTER (WHERE closed_at < :month AND stage = 'won'), 0)
  FROM leads
 WHERE created_at < :month AND owner_id IS NOT NULL
   AND (CAST(:owner_id AS integer) IS NULL OR owner_id = :owner_id)
"""
CALIBRATION_STORED_HOURS = 24


def _sees_team(session: Session) -> bool:
    """The tables' owner (no acting user) or someone who sees the whole team's leads."""
    return session.execute(text(
        "SELECT coalesce(current_setting('crm.user_id', true), '') = '' OR crm_sees_team()")).scalar_one()


def _calibration_fingerprint(session: Session, *, owner_id: int | None, cutoff: datetime) -> str:
    row = session.execute(text(_CALIBRATION_FINGERPRINT),
                          {"month": month_start(cutoff), "owner_id": owner_id}).one()
    return "|".join(str(v) for v in row)


def _stored_errors(session: Session, *, owner_id: int | None, cutoff: datetime, months: int,
                   fingerprint: str) -> list[tuple[float, float]] | None:
    """The past errors forecast_calibrations (migration 0030) keeps for this scope and month, if they
    were computed from the same fingerprint within CALIBRATION_STORED_HOURS."""
    row = session.execute(text(
        "SELECT errors FROM forecast_calibrations "
        "WHERE coalesce(owner_id, 0) = coalesce(CAST(:owner_id AS integer), 0) AND month = :month "
        "AND months = :months AND fingerprint = :fingerprint "
        "AND computed_at > now() - make_interval(hours => :hours)"),
        {"owner_id": owner_id, "month": month_start(cutoff).date(), "months": months,
         "fingerprint": fingerprint, "hours": CALIBRATION_STORED_HOURS}).first()
    return None if row is None else [(float(p), float(a)) for p, a in row[0]]


def _store_errors(session: Session, *, owner_id: int | None, cutoff: datetime, months: int,
                  fingerprint: str, errors: list[tuple[float, float]]) -> None:
    session.execute(text(
        "INSERT INTO forecast_calibrations (owner_id, month, months, fingerprint, errors, computed_at) "
        "VALUES (:owner_id, :month, :months, :fingerprint, CAST(:errors AS jsonb), now()) "
        "ON CONFLICT (coalesce(owner_id, 0), month, months) DO UPDATE "
        "SET fingerprint = excluded.fingerprint, errors = excluded.errors, "
        "computed_at = excluded.computed_at"),
        {"owner_id": owner_id, "month": month_start(cutoff).date(), "months": months,
         "fingerprint": fingerprint, "errors": json.dumps([[p, a] for p, a in errors])})
    session.commit()


_SCOPE_VERSION = """
SELECT count(*) AS deals, max(stage_entered_at) AS moved, sum(deal_value) AS value, max(closed_at) AS closed
  FROM leads
 WHERE owner_id IS NOT NULL AND (CAST(:owner_id AS integer) IS NULL OR owner_id = :owner_id)
   AND (stage = ANY(:open_stages) OR closed_at >= :since)
"""

@dataclass
class _CachedForecast:
    monotonic: float  # when computed (for the TTL)
    wall: float  # time.time() just before it was computed or last checked (for crm_app/live.py)
    scope: tuple  # _SCOPE_VERSION's row then
    forecast: Forecast


_forecast_cache: dict[tuple, _CachedForecast] = {}
_forecast_lock = threading.Lock()


def _unchanged_by_live(session: Session, owner_id: int | None, since: float) -> bool:
    """True when this worker has listened for lead changes (crm_app/live.py) on this session's
    database since before `since` and heard of none in scope after it: then no query is needed. False
    whenever it cannot tell (not listening: a script, a test, a job; another database)."""
    listening = live.listening_since()
    if not listening or listening > since:
        return False
    if str(session.get_bind().engine.url) != str(get_engine().url):
        return False
    return not live.changed_since(since, None if owner_id is None else [str(owner_id)])


def build_forecast(session: Session, *, owner_id: int | None, now: datetime,
                   wait_for_calibration: bool = True) -> Forecast:
    """This month, next month and the next three together, for the team (None) or one rep.

    This month's interval is calibrated by the forecast's own errors on the past months (past_errors:
    the history rebuilt as of each of CALIBRATION_MONTHS month starts, minutes at 100,000 leads before
    it is cached). With `wait_for_calibration` False and those errors not cached yet, the forecast comes
    back at once with the simulation's interval and `calibrated` False: the page shows it and asks
    again in a background event.

    Cached per viewer, owner, month and target for RATES_TTL_SECONDS while the deals in scope are
    unchanged: known without a query when this web worker's listener heard of no change in scope since
    (crm_app/live.py), else by _SCOPE_VERSION (their count, newest stage entry, total value and newest
    close, as the viewer sees them). The simulation and the history cost far more than a page may wait."""
    key = (str(session.get_bind().engine.url), _viewer(session), owner_id, month_start(now),
           target_for(session, owner_id), engine_config(session).effective == "model")
    with _forecast_lock:
        cached = _forecast_cache.get(key)
    if cached is not None and time.monotonic() - cached.monotonic >= RATES_TTL_SECONDS:
        cached = None
    forecast = _uncalibrated_forecast(session, owner_id=owner_id, now=now, key=key, cached=cached)
    errors = (past_errors(session, owner_id=owner_id, cutoff=now) if wait_for_calibration
              else cached_past_errors(session, owner_id=owner_id, cutoff=now))
    return forecast if errors is None else calibrated_with(forecast, errors)


def _uncalibrated_forecast(session: Session, *, owner_id: int | None, now: datetime, key: tuple,
                           cached: _CachedForecast | None) -> Forecast:
    if cached is not None and _unchanged_by_live(session, owner_id, cached.wall):
        return copy.deepcopy(cached.forecast)
    scope = tuple(session.execute(text(_SCOPE_VERSION), {
        "owner_id": owner_id, "open_stages": OPEN_STAGE_VALUES,
        "since": month_start(now, -FRESH_MONTHS)}).one())
    if cached is not None and cached.scope == scope:
        cached.wall = time.time()  # checked just now: the listener's test can start from here
        return copy.deepcopy(cached.forecast)
    wall = time.time()
    forecast = _build_forecast(session, owner_id=owner_id, now=now)
    with _forecast_lock:
        if len(_forecast_cache) > 256:
            _forecast_cache.clear()
        _forecast_cache[key] = _CachedForecast(time.monotonic(), wall, scope, forecast)
    return copy.deepcopy(forecast)


def _build_forecast(session: Session, *, owner_id: int | None, now: datetime) -> Forecast:
    """build_forecast, not cached.

    P(win) is the history's (stage, days in it and the deal's age) even when a model scores the team:
    that is the path the backtest measures. Past model scores are not kept (a lead keeps only its
    current score), so a forecast from the model's probabilities could not be backtested; the model's
    probability is shown beside each deal instead."""
    config = engine_config(session)
    model_scores = config.effective == "model"
    timing = timing_at(session, now, current=True)
    deals = open_deals_now(session, owner_id=owner_id, now=now)
    this_month = month_start(now)
    won = float(session.execute(text(_WON_BETWEEN), {"start": this_month, "end": month_start(now, 1),
                                                     "owner_id": owner_id}).scalar_one())
    fresh = fresh_history(session, owner_id=owner_id, cutoff=now)
    windows = month_windows(now)
    result = forecast_windows(deals, timing, windows, fresh, won_so_far=won,
                              bootstraps=bootstraps_for(timing))
    # This month's interval also carries the forecast's own past errors (drift between months).
    first = result.windows[0]
    out = Forecast(open_deals=len(deals), won_so_far=won,
                   simulated=Prediction(first.expected, first.low, first.high))
    for w in result.windows:
        out.windows.append(WindowRow(
            label=w.label, won_label=money(w.won_so_far) if w is result.windows[0] else "—",
            expected_label=money(w.expected), total_label=money(w.total),
            interval_label=_interval_label(w.low, w.high),
            pipeline_label=money(w.pipeline_expected), fresh_label=money(w.fresh_expected)))
    c = result.combined
    out.windows.append(WindowRow(
        label=f"Next {len(windows)} months", won_label=money(won), expected_label=money(c.expected),
        total_label=money(c.total), interval_label=_interval_label(c.low, c.high),
        pipeline_label=money(c.pipeline_expected), fresh_label=money(c.fresh_expected)))
    first = result.windows[0]
    out.this_month_total, out.this_month_low, out.this_month_high = first.total, first.low, first.high
    out.expected_rest = first.expected
    pipeline_first = first.pipeline_expected
    model = model_probabilities(session, [d.lead_id for d in result.deals]) if model_scores else {}
    for d in result.deals:
        beside = f"; model {model[d.lead_id] * 100:.0f}%" if d.lead_id in model else ""
        out.deals.append(DealRow(
            lead_id=d.lead_id, name=d.name, stage=Stage(d.stage).label, value_label=money(d.value),
            probability_label=f"{d.probability * 100:.0f}% ({d.probability_source}{beside})",
            expected_label=money(d.expected),
            share_label=f"{d.expected / pipeline_first * 100:.0f}%" if pipeline_first else "—"))
    if result.deals and pipeline_first:
        carried = sum(d.expected for d in result.deals) / pipeline_first
        out.top_share_label = (f"The top {len(result.deals)} deals carry {carried * 100:.0f}% of this month's "
                               "expected revenue from the open pipeline.")
    out.probability_note = (
        "P(win) comes from the team's closed deals that were in the same stage for as long and were as old; "
        "a stage with fewer than 20 closed deals uses the whole team's history from creation."
        + (" The scoring model's probability is shown beside it: it weighs the pipeline on the board, but "
           "past model scores are not kept, so a forecast from it could not be backtested." if model_scores
           else ""))
    out.target = target_for(session, owner_id)
    if out.target is not None:
        out.gap = out.target - first.total
        out.gap_message = _gap_message(session, owner_id=owner_id, gap=out.gap)
    return out


# ---------------------------------------------------------------------------------------------
# Backtest

@dataclass
class BacktestRow:
    month: str
    actual_label: str
    forecast_label: str
    forecast_interval: str
    weighted_label: str
    weighted_interval: str
    run_rate_label: str
    run_rate_interval: str


@dataclass
class Backtest:
    months: list[BacktestMonth] = field(default_factory=list)
    scores: list[MethodScore] = field(default_factory=list)
    rows: list[BacktestRow] = field(default_factory=list)


def backtest_at(session: Session, *, owner_id: int | None, cutoff: datetime) -> BacktestMonth:
    """One month's three predictions from what was known at `cutoff` (a month's first day), and what
    was won in that month."""
    timing = timing_at(session, cutoff)
    deals = open_deals_at(session, owner_id=owner_id, cutoff=cutoff)
    fresh = fresh_history(session, owner_id=owner_id, cutoff=cutoff, offsets=1)
    past = won_per_month(session, owner_id=owner_id, start=month_start(cutoff, -3), months=3)
    actual = won_per_month(session, owner_id=owner_id, start=cutoff, months=1)[0]
    window = month_windows(cutoff, 1)[0]
    return backtest_month(month_label(cutoff), deals=deals, timing=timing, fresh=fresh, window=window,
                          past_months_won=past, actual=actual, bootstraps=bootstraps_for(timing))


_backtest_cache: dict[tuple, tuple[float, "Backtest"]] = {}
_backtest_lock = threading.Lock()


def run_backtest(session: Session, *, owner_id: int | None, now: datetime,
                 months: int = BACKTEST_MONTHS) -> Backtest:
    """The last `months` complete months, each rebuilt from its first day, oldest first. A month
    starts the backtest only once three months of history lie before it (the run-rate needs them).
    Cached for an hour per viewer, owner and month: it covers done months only."""
    key = (str(session.get_bind().engine.url), _viewer(session), owner_id, month_start(now), months)
    with _backtest_lock:
        cached = _backtest_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < PAST_TTL_SECONDS:
        return copy.deepcopy(cached[1])
    out = _run_backtest(session, owner_id=owner_id, now=now, months=months)
    with _backtest_lock:
        _backtest_cache[key] = (time.monotonic(), out)
    return copy.deepcopy(out)


def _run_backtest(session: Session, *, owner_id: int | None, now: datetime, months: int) -> Backtest:
    first_known = session.execute(text("SELECT min(created_at) FROM leads WHERE dates_known")).scalar_one()
    out = Backtest()
    if first_known is None:
        return out
    earliest = month_start(first_known, 3)
    scored = [month_start(now, -k) for k in range(months, 0, -1) if month_start(now, -k) >= earliest]
    # The forecast's errors on the months before the first scored one (a month of history at least):
    # each month's interval is calibrated by the CALIBRATION_MONTHS months before it, never after.
    errors = past_errors(session, owner_id=owner_id, cutoff=scored[0]) if scored else []
    for cutoff in scored:
        month = backtest_at(session, owner_id=owner_id, cutoff=cutoff)
        predictions = dict(month.predictions)
        predictions["forecast"] = calibrate(month.predictions["forecast"], errors[-CALIBRATION_MONTHS:])
        out.months.append(BacktestMonth(month.label, month.actual, predictions))
        errors.append((month.predictions["forecast"].expected, month.actual))
    out.scores = score_methods(out.months) if out.months else []
    for m in out.months:
        p = m.predictions
        out.rows.append(BacktestRow(
            month=m.label, actual_label=money(m.actual),
            forecast_label=money(p["forecast"].expected),
            forecast_interval=_interval_label(p["forecast"].low, p["forecast"].high),
            weighted_label=money(p["stage_weighted"].expected),
            weighted_interval=_interval_label(p["stage_weighted"].low, p["stage_weighted"].high),
            run_rate_label=money(p["run_rate"].expected),
            run_rate_interval=_interval_label(p["run_rate"].low, p["run_rate"].high)))
    return out


# ---------------------------------------------------------------------------------------------
# Weighted pipeline

RATES_TTL_SECONDS = 600  # stage win rates move slowly; recomputed at most every 10 minutes per worker
_rates_lock = threading.Lock()
_rates_cache: tuple[float, dict[str, float]] | None = None


def forget_stage_win_rates() -> None:
    """Drop every cached rate, fit, forecast, backtest and past forecast error (tests that change the
    history in between)."""
    global _rates_cache
    with _rates_lock:
        _rates_cache = None
    for lock, cache in ((_errors_lock, _errors_cache), (_timing_lock, _timing_cache),
                        (_forecast_lock, _forecast_cache), (_backtest_lock, _backtest_cache)):
        with lock:
            cache.clear()


def _stored_rates(session: Session) -> dict | None:
    """The stage win rates the job stored (forecast_snapshots): {"rates": {stage: rate}, "closed": n}."""
    return session.execute(text(
        "SELECT payload FROM forecast_snapshots WHERE kind = 'stage_rates'")).scalar_one_or_none()


def small_history(session: Session, stored: dict | None = None) -> bool:
    """Whether the team has fewer than CACHE_FROM_CLOSED closed deals: a history whose fit takes
    milliseconds and whose every close counts, which a page computes itself rather than read the job's
    (possibly minutes old) result. Told by the count the job stored with the rates; before any round,
    by the closed deals this session sees, counted with a LIMIT (one index range, not a count of a
    large history)."""
    stored = stored if stored is not None else _stored_rates(session)
    if stored is not None:
        return int(stored["closed"]) < CACHE_FROM_CLOSED
    return session.execute(text(
        "SELECT count(*) FROM (SELECT 1 FROM leads WHERE stage IN ('won', 'lost') LIMIT :n) closed"),
        {"n": CACHE_FROM_CLOSED}).scalar_one() < CACHE_FROM_CLOSED


def stage_win_rates(session: Session, now: datetime) -> dict[str, float] | None:
    """Won / closed per open stage from the team's closed deals (a stage with fewer than 20 closed deals:
    the team's overall rate). For a large history, as the job worker stored them (forecast_snapshots,
    crm.forecast_refresh: team-wide counts, so one row serves every user), or None while it has not
    (the weighted value waits for the job: fitting a large history costs seconds no page load should
    pay). A small history (small_history) is fitted here, in milliseconds, cached per worker for
    RATES_TTL_SECONDS."""
    global _rates_cache
    stored = _stored_rates(session)
    if not small_history(session, stored):
        return None if stored is None else {stage: float(rate) for stage, rate in stored["rates"].items()}
    with _rates_lock:
        cached = _rates_cache
    if cached is not None and time.monotonic() - cached[0] < RATES_TTL_SECONDS:
        return cached[1]
    timing = timing_at(session, now, current=True)
    rates = {stage: timing.for_stage(stage).win_rate for stage in OPEN_STAGE_VALUES}
    with _rates_lock:
        _rates_cache = (time.monotonic(), rates)
    return rates


@dataclass(frozen=True)
class Weighting:
    """How the weighted pipeline weighs an open deal: the model's calibrated probability (score / 100)
    when a model scores the team, else its stage's win rate; with neither (no model, and the job has
    not stored the rates yet) `pending`: no stage has a rate, nothing is weighted and the label says
    why."""

    model: bool
    rates: dict[str, float]
    pending: bool = False

    @property
    def label(self) -> str:
        if self.model:
            return "weighted by the model's win probability"
        if self.pending:
            return "weighted value not computed yet (the job worker computes the stage win rates)"
        return "weighted by stage win rate"

    def probability(self, stage: str, score: int) -> float | None:
        """P(win) of one open lead; None for a closed one, or while the rates are pending."""
        if stage not in self.rates or self.pending:
            return None
        return score / 100 if self.model else self.rates[stage]

    def weighted(self, stage: str, value: float, value_times_score: float) -> float:
        """Weighted value of a stage's deals from SQL's sum(value) and sum(value x score)."""
        if stage not in self.rates or self.pending:
            return 0.0
        return float(value_times_score) / 100 if self.model else float(value) * self.rates[stage]


def weighting(session: Session, now: datetime) -> Weighting:
    """The weighted pipeline's weights. A model's probabilities need no rates (only which stages are
    open); the stage win rates come from forecast_snapshots (stage_win_rates)."""
    if engine_config(session).effective == "model":
        return Weighting(model=True, rates={stage: 0.0 for stage in OPEN_STAGE_VALUES})
    rates = stage_win_rates(session, now)
    if rates is None:
        return Weighting(model=False, rates={}, pending=True)
    return Weighting(model=False, rates=rates)
