"""The forecast precomputed by the job queue, and what pages read instead of computing it.

At 100,000 leads the forecast's first view cost ~29 s (the history fitted as of now and every open
deal simulated) and the stage win rates behind the weighted pipeline 6-13 s (the same fit), paid by
whichever page load found the per-process cache empty. The job worker's periodic
`crm.forecast_refresh` (crm_app/tasks.py, every REFRESH_MINUTES) computes them instead, as the tables'
owner, into `forecast_snapshots` (migration 0032), one row per kind and scope:

- the stage win rates (team-wide counts, read by the kanban, Today and the Leads table);
- each scope's forecast (the team, each rep), calibrated, rebuilt when the deals in its scope changed
  (scope_version: per stage, from `board_totals`), when its month ended, or after REBUILD_MINUTES (days in stage
  and ages move on);
- each scope's backtest, rebuilt when its past months changed (the calibration's fingerprint) or
  once a day.

A page reads its row (one indexed look-up under row-level security) and says how fresh it is: deals
changed since, or the worker has not refreshed it for STALE_MINUTES. With no row yet (a new database,
no job worker running) the forecast page computes the forecast itself in its background event, as it
did before, and says so; the weighted pipeline shows the plain sums and says the weighted value is
not computed yet. A small history (fewer than CACHE_FROM_CLOSED closed deals, services/forecast.
small_history) is computed by the page whenever the stored one is missing or older than its deals:
it costs milliseconds, and a team's first closes and moves must count at once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.queries import money
from crm_app.forecasting.backtest import BacktestMonth, MethodScore, Prediction
from crm_app.services import forecast as forecast_service
from crm_app.services.forecast import (
    CALIBRATION_STORED_HOURS,
    OPEN_STAGE_VALUES,
    Backtest,
    BacktestRow,
    DealRow,
    Forecast,
    WindowRow,
    build_forecast,
    month_start,
    run_backtest,
    timing_at,
    with_current_target,
)

log = logging.getLogger(__name__)

REFRESH_MINUTES = 5  # the periodic task's cadence (crm_app/tasks.py)
REBUILD_MINUTES = 30  # a forecast whose deals did not change is still rebuilt this often
STALE_MINUTES = 15  # three rounds missed: the page says the worker has not refreshed it
RATES_MINUTES = 10  # the stage win rates, as the per-process cache they replace


# ---------------------------------------------------------------------------------------------
# The table

@dataclass(frozen=True)
class Snapshot:
    kind: str
    owner_id: int | None
    month: datetime  # the first instant of the month it is for
    as_of: datetime
    scope_version: str
    payload: dict
    computed_at: datetime
    seconds: float


def read_snapshot(session: Session, kind: str, owner_id: int | None) -> Snapshot | None:
    """The stored row of `kind` for a scope (None: the team), if the session may see it."""
    row = session.execute(text(
        "SELECT month, as_of, scope_version, payload, computed_at, seconds FROM forecast_snapshots "
        "WHERE kind = :kind AND coalesce(owner_id, 0) = coalesce(CAST(:owner_id AS integer), 0)"),
        {"kind": kind, "owner_id": owner_id}).first()
    if row is None:
        return None
    month = datetime(row.month.year, row.month.month, 1, tzinfo=timezone.utc)
    return Snapshot(kind, owner_id, month, row.as_of, row.scope_version, row.payload, row.computed_at,
                    float(row.seconds))


def store_snapshot(session: Session, *, kind: str, owner_id: int | None, as_of: datetime, scope_version: str,
                   payload: dict, seconds: float, computed_at: datetime) -> None:
    """Write (replace) a scope's row and commit: the tables' owner only (the job worker)."""
    session.execute(text(
        "INSERT INTO forecast_snapshots (kind, owner_id, month, as_of, scope_version, payload, computed_at, "
        "seconds) VALUES (:kind, :owner_id, :month, :as_of, :version, CAST(:payload AS jsonb), :computed_at, "
        ":seconds) "
        "ON CONFLICT (kind, coalesce(owner_id, 0)) DO UPDATE SET month = excluded.month, "
        "as_of = excluded.as_of, scope_version = excluded.scope_version, payload = excluded.payload, "
        "computed_at = excluded.computed_at, seconds = excluded.seconds"),
        {"kind": kind, "owner_id": owner_id, "month": month_start(as_of).date(), "as_of": as_of,
         "version": scope_version, "payload": json.dumps(payload), "seconds": seconds,
         "computed_at": computed_at})
    session.commit()


# ---------------------------------------------------------------------------------------------
# Payloads: the services' dataclasses as JSON and back

def forecast_payload(forecast: Forecast) -> dict:
    return dataclasses.asdict(forecast)


def forecast_from(payload: dict) -> Forecast:
    fields = dict(payload)
    fields["windows"] = [WindowRow(**w) for w in payload["windows"]]
    fields["deals"] = [DealRow(**d) for d in payload["deals"]]
    fields["simulated"] = Prediction(**payload["simulated"])
    return Forecast(**fields)


def backtest_payload(backtest: Backtest) -> dict:
    return dataclasses.asdict(backtest)


def backtest_from(payload: dict) -> Backtest:
    months = [BacktestMonth(m["label"], m["actual"],
                            {k: Prediction(**p) for k, p in m["predictions"].items()})
              for m in payload["months"]]
    return Backtest(months=months, scores=[MethodScore(**s) for s in payload["scores"]],
                    rows=[BacktestRow(**r) for r in payload["rows"]])


# ---------------------------------------------------------------------------------------------
# Scope versions: what a stored forecast or backtest was built from

# The deals in a scope per stage (count, total value, value x score) from the totals the database keeps
# as leads are written (`board_totals`, migration 0029): a few hundred rows, where counting the scope's
# open deals in `leads` read ~480,000 index entries for the team at 1M leads (0.7-0.9 s per page load).
# A move, a close, a new or deleted deal, a new value or score changes it; what it does not see (a
# stage entry time or a close date edited alone) waits for the job's rebuild after REBUILD_MINUTES, as
# days in stage do.
_SCOPE_TOTALS = """
SELECT stage, sum(deals) AS deals, sum(value) AS value, sum(value_score) AS value_score
  FROM board_totals
 WHERE owner_id IS NOT NULL AND (CAST(:owner_id AS integer) IS NULL OR owner_id = :owner_id)
 GROUP BY stage HAVING sum(deals) <> 0
 ORDER BY stage
"""


def scope_version(session: Session, *, owner_id: int | None, now: datetime) -> str:
    """The deals in a forecast's scope as the job saw them (per stage: count, total value, value x
    score): a page compares it with the current one."""
    rows = session.execute(text(_SCOPE_TOTALS), {"owner_id": owner_id}).all()
    return ";".join(f"{r.stage}:{r.deals}:{r.value.normalize()}:{r.value_score.normalize()}" for r in rows)


def backtest_version(session: Session, *, owner_id: int | None, now: datetime) -> str:
    """The scope's past months (the calibration's fingerprint): a close today leaves it alone."""
    return forecast_service._calibration_fingerprint(session, owner_id=owner_id, cutoff=now)


# ---------------------------------------------------------------------------------------------
# The job: crm.forecast_refresh

@dataclass
class RefreshSummary:
    rates: bool = False
    forecasts: list[str] = dataclasses.field(default_factory=list)  # scopes rebuilt: "team", "rep 3"
    backtests: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0


def _scope_name(owner_id: int | None) -> str:
    return "team" if owner_id is None else f"rep {owner_id}"


def _due(snapshot: Snapshot | None, *, now: datetime, version: str, minutes: float) -> bool:
    if snapshot is None or snapshot.month != month_start(now) or snapshot.scope_version != version:
        return True
    return now - snapshot.computed_at > timedelta(minutes=minutes)


def refresh_forecasts(session: Session, *, now: datetime, backtests: bool = True,
                      clock: Callable[[], datetime] | None = None) -> RefreshSummary:
    """One round of the periodic job, as the tables' owner: the stage win rates when older than
    RATES_MINUTES, then each scope's forecast (the team, then each rep) and backtest that is due (see
    the module's docstring), each committed as it is done so pages get the first ones early. `now` is
    the forecasts' moment; `clock` (default: `now`) stamps each row and judges what is due."""
    clock = clock or (lambda: now)
    started = time.perf_counter()
    summary = RefreshSummary()
    rates = read_snapshot(session, "stage_rates", None)
    if (rates is None or rates.month != month_start(now)
            or clock() - rates.computed_at > timedelta(minutes=RATES_MINUTES)):
        began = time.perf_counter()
        timing = timing_at(session, now, current=True)
        payload = {"rates": {stage: timing.for_stage(stage).win_rate for stage in OPEN_STAGE_VALUES},
                   "closed": timing.estimates[forecast_service.CREATED].closed}
        store_snapshot(session, kind="stage_rates", owner_id=None, as_of=now, scope_version="",
                       payload=payload, seconds=time.perf_counter() - began, computed_at=clock())
        summary.rates = True
    reps = session.execute(text(
        "SELECT id FROM users WHERE role = 'rep' AND is_active ORDER BY id")).scalars().all()
    scopes: list[int | None] = [None, *reps]
    refreshes = [("forecast", scope_version, REBUILD_MINUTES, build_forecast, forecast_payload, summary.forecasts)]
    if backtests:
        refreshes.append(("backtest", backtest_version, CALIBRATION_STORED_HOURS * 60, run_backtest,
                          backtest_payload, summary.backtests))
    for kind, version_of, minutes, build, payload_of, done in refreshes:
        for owner_id in scopes:
            version = version_of(session, owner_id=owner_id, now=now)
            if not _due(read_snapshot(session, kind, owner_id), now=clock(), version=version, minutes=minutes):
                continue
            began = time.perf_counter()
            built = build(session, owner_id=owner_id, now=now)
            store_snapshot(session, kind=kind, owner_id=owner_id, as_of=now, scope_version=version,
                           payload=payload_of(built), seconds=time.perf_counter() - began, computed_at=clock())
            done.append(_scope_name(owner_id))
    summary.seconds = time.perf_counter() - started
    log.info("forecast refresh: rates %s, forecasts %s, backtests %s in %.1f s", summary.rates,
             summary.forecasts or "none due", summary.backtests or "none due", summary.seconds)
    return summary


# ---------------------------------------------------------------------------------------------
# What pages read

@dataclass
class Precomputed:
    """A page's view of a snapshot: the value (None when there is none for this month) and a sentence
    on its freshness ("" when fresh)."""

    value: object | None
    note: str
    computed_at: datetime | None = None


def _freshness(snapshot: Snapshot, *, now: datetime, changed: bool) -> str:
    at = f"{snapshot.computed_at.astimezone(timezone.utc):%d %b %H:%M} UTC"
    age = now - snapshot.computed_at
    if age > timedelta(minutes=STALE_MINUTES):
        minutes = int(age.total_seconds() // 60)
        return (f"Computed at {at}, {minutes} minutes ago: the job worker has not refreshed it since "
                f"(it does every {REFRESH_MINUTES} minutes while it runs).")
    if changed:
        return (f"Computed at {at}; deals in this view changed since. The job worker refreshes it within "
                f"{REFRESH_MINUTES} minutes.")
    return ""


MISSING_NOTE = ("Not precomputed yet (the job worker computes it every "
                f"{REFRESH_MINUTES} minutes): computed for this page instead, which takes a while on a large "
                "pipeline.")


def precomputed_forecast(session: Session, *, owner_id: int | None, now: datetime) -> Precomputed:
    """The stored forecast of a scope for this month, with today's target and gap, and how fresh it is.

    Value None when the page should build it itself: none stored for this month (the note says so), or
    a small history (services/forecast.small_history: milliseconds) whose deals changed since (a move
    shows at once, as before; no note). A large history's changed forecast is shown as stored, with a
    note, until the job's next round."""
    snapshot = read_snapshot(session, "forecast", owner_id)
    if snapshot is None or snapshot.month != month_start(now):
        return Precomputed(None, "" if forecast_service.small_history(session) else MISSING_NOTE)
    # In a web worker whose listener (crm_app/live.py) heard of no change in scope since the job's round
    # began, nothing changed: no need to read the scope's version (a scan of its open deals).
    changed = (not forecast_service._unchanged_by_live(session, owner_id, snapshot.as_of.timestamp())
               and scope_version(session, owner_id=owner_id, now=now) != snapshot.scope_version)
    if changed and forecast_service.small_history(session):
        return Precomputed(None, "")
    forecast = with_current_target(session, forecast_from(snapshot.payload), owner_id=owner_id)
    return Precomputed(forecast, _freshness(snapshot, now=now, changed=changed), snapshot.computed_at)


def precomputed_backtest(session: Session, *, owner_id: int | None, now: datetime) -> Precomputed:
    """The stored backtest of a scope for this month (its past months), and how fresh it is."""
    snapshot = read_snapshot(session, "backtest", owner_id)
    if snapshot is None or snapshot.month != month_start(now):
        return Precomputed(None, "" if forecast_service.small_history(session) else MISSING_NOTE)
    note = ""
    if now - snapshot.computed_at > timedelta(hours=CALIBRATION_STORED_HOURS, minutes=STALE_MINUTES):
        note = _freshness(snapshot, now=now, changed=False)
    return Precomputed(backtest_from(snapshot.payload), note, snapshot.computed_at)


def target_warning(session: Session, *, owner_id: int, now: datetime) -> str:
    """For Today: a sentence when the rep's forecast for this month is below their target; "" when no
    target is set, the forecast meets it, or no forecast is stored for a large history (Today never
    builds one for a history that takes seconds to fit)."""
    if forecast_service.target_for(session, owner_id) is None:
        return ""
    stored = precomputed_forecast(session, owner_id=owner_id, now=now).value
    if stored is None:
        if not forecast_service.small_history(session):
            return ""
        stored = build_forecast(session, owner_id=owner_id, now=now)  # milliseconds
    forecast: Forecast = stored
    if forecast.gap is None or forecast.gap <= 0:
        return ""
    return (f"This month's forecast is {money(forecast.this_month_total)} against your target of "
            f"{money(forecast.target)}. {forecast.gap_message}")
