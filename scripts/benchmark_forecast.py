"""The revenue forecast on the demo history: build time, and the backtest of the three methods.

    python scripts/benchmark_forecast.py [--leads 3000] [--months 12] [--database-url URL] [--reuse]

(Re)creates a scratch database `crm_bench_forecast` on the server of --database-url (or of
BENCH_DATABASE_URL, else the embedded PostgreSQL), fills it with the demo generator at a fixed `now`
and prints, one figure per line: the forecast's build time for the team and for one rep (as a
manager's and a rep's session under row-level security; uncached, then the median of 5 from the cache),
then each backtest month with what
was won and what each method predicted on the month's first day (absolute percentage error, and
whether the 80% interval held the actual), then MAPE and coverage per method; then the page's first
view computed by the page (as before the job worker precomputed it) against read from
`forecast_snapshots`, and the job's round (`refresh_forecasts`) with everything due and with nothing
changed. `--reuse` skips the regeneration and reads the database a previous run left (migrated to the
newest schema first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlmodel import Session  # noqa: E402

from crm_app.db.engine import embedded_server_url, make_engine, normalize_url  # noqa: E402
from crm_app.db.security import act_as  # noqa: E402
from crm_app.demo.generator import generate_demo_data  # noqa: E402
from crm_app.forecasting.backtest import METHOD_LABELS, METHODS  # noqa: E402
from crm_app.services import forecast as forecast_service  # noqa: E402
from crm_app.db.migrate import upgrade_to_head  # noqa: E402
from crm_app.services.forecast import (  # noqa: E402
    build_forecast,
    forget_stage_win_rates,
    run_backtest,
    weighting,
)
from crm_app.services.forecast_snapshots import (  # noqa: E402
    precomputed_backtest,
    precomputed_forecast,
    refresh_forecasts,
)
from scripts.benchmark import scratch_database_url  # noqa: E402

DATABASE = "crm_bench_forecast"
NOW = datetime(2026, 12, 3, 13, 0, tzinfo=timezone.utc)
RUNS = 5


def figure(name: str, value) -> None:
    print(f"{name:<58} {value}", flush=True)


def timed(work) -> float:
    runs = []
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> None:
    global NOW
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or None)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--database", default=DATABASE, help=f"scratch database name (default {DATABASE})")
    parser.add_argument("--now", default="", help="the forecast's moment: ISO time, or 'latest' (the "
                        "newest stage change: for a copy of a database generated at another time); "
                        "default 3 Dec 2026 13:00")
    args = parser.parse_args(argv)
    if args.reuse:
        server = (normalize_url(args.database_url) if args.database_url
                  else embedded_server_url(database=args.database))
        url = make_url(server).set(database=args.database).render_as_string(hide_password=False)
    else:
        url = scratch_database_url(args.database_url, args.database)
    if args.reuse:
        upgrade_to_head(url)  # a copy of an older database: forecast_snapshots (0032) and what it needs
    engine = make_engine(url)
    if not args.reuse:
        summary = generate_demo_data(engine, leads=args.leads, now=NOW)
        figure("demo leads", f"{summary.leads:,} ({summary.elapsed_seconds:.1f} s to generate)")

    with Session(engine) as owner:
        if args.now == "latest":
            NOW = owner.execute(text("SELECT max(changed_at) FROM stage_changes")).scalar_one()
        elif args.now:
            NOW = datetime.fromisoformat(args.now)
        manager = owner.execute(text("SELECT id FROM users WHERE role = 'manager' ORDER BY id LIMIT 1")).scalar_one()
        rep, rep_name = owner.execute(text(
            "SELECT u.id, u.name FROM users u JOIN leads l ON l.owner_id = u.id WHERE u.role = 'rep' "
            "GROUP BY u.id ORDER BY count(*) DESC LIMIT 1")).one()
        leads = owner.execute(text("SELECT count(*) FROM leads")).scalar_one()
    figure("leads", f"{leads:,} (now {NOW:%Y-%m-%d %H:%M} UTC)")

    def cold_and_warm(session, owner_id, label, count_label):
        """The first build with every cache dropped (the history fitted, the 12 past months forecast
        for the interval's calibration), then the median of 5 from the cache (what a page load pays
        while nothing changed)."""
        forget_stage_win_rates()
        started = time.perf_counter()
        result = build_forecast(session, owner_id=owner_id, now=NOW)
        cold = time.perf_counter() - started
        warm = timed(lambda: build_forecast(session, owner_id=owner_id, now=NOW))

        def changed():
            forecast_service._forecast_cache.clear()  # as after a move in scope: the history stays cached
            build_forecast(session, owner_id=owner_id, now=NOW)

        after_move = timed(changed)
        figure(f"forecast build, {label}",
               f"{cold * 1000:.0f} ms uncached, {after_move * 1000:.0f} ms after a change in scope, "
               f"{warm * 1000:.1f} ms cached (medians of 5; {result.open_deals:,} {count_label})")
        return result

    with act_as(Session(engine), manager) as session:
        team = cold_and_warm(session, None, "whole team", "open deals")
    with act_as(Session(engine), rep) as session:
        cold_and_warm(session, rep, f"one rep ({rep_name})", "open deals")
    figure("this month, team: won so far + expected (80% interval)",
           f"${team.won_so_far:,.0f} + ${team.expected_rest:,.0f} = ${team.this_month_total:,.0f} "
           f"(${team.this_month_low:,.0f} - ${team.this_month_high:,.0f})")

    with act_as(Session(engine), manager) as session:
        forget_stage_win_rates()
        started = time.perf_counter()
        backtest = run_backtest(session, owner_id=None, now=NOW, months=args.months)
        figure(f"backtest, {len(backtest.months)} months (uncached)",
               f"{time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        run_backtest(session, owner_id=None, now=NOW, months=args.months)
        figure("backtest, cached (the manager's second event)",
               f"{(time.perf_counter() - started) * 1000:.1f} ms")

    print()
    header = f"{'month':<9} {'won':>11}" + "".join(f" | {m:>31}" for m in METHODS)
    print(header)
    for month in backtest.months:
        cells = []
        for method in METHODS:
            p = month.predictions[method]
            ape = abs(p.expected - month.actual) / month.actual * 100 if month.actual else float("nan")
            cells.append(f"{p.expected:>12,.0f} {ape:>5.0f}% {'in ' if p.covers(month.actual) else 'out'} "
                         f"{p.high - p.low:>9,.0f}")
        print(f"{month.label:<9} {month.actual:>11,.0f}" + "".join(f" | {c:>31}" for c in cells))
    print("(each method: predicted, absolute % error, actual in/out of its 80% interval, interval width)")
    print()
    for score in backtest.scores:
        mape = "n/a" if score.mape is None else f"{score.mape * 100:.1f}%"
        coverage = "n/a" if score.coverage is None else f"{score.coverage * 100:.0f}%"
        figure(f"{METHOD_LABELS[score.method]}: MAPE, 80% coverage", f"{mape}, {coverage} of {score.months} months")
    scores = {s.method: s for s in backtest.scores}
    ours, weighted = scores["forecast"].mape, scores["stage_weighted"].mape
    if ours is not None and weighted:
        figure("error vs stage-weighted pipeline", f"{(1 - ours / weighted) * 100:+.0f}% lower (goal: >= 30%)")

    print()
    precomputed(engine, manager, rep)


def precomputed(engine, manager: int, rep: int) -> None:
    """The forecast page's first view (and the weighted pipeline's rates) computed by the page, as
    before the job worker precomputed them, against read from forecast_snapshots; and the job's round."""
    def first_view(user, owner_id):
        forget_stage_win_rates()
        with act_as(Session(engine), user) as session:
            started = time.perf_counter()
            build_forecast(session, owner_id=owner_id, now=NOW, wait_for_calibration=False)
            return time.perf_counter() - started

    team_computed, rep_computed = first_view(manager, None), first_view(rep, rep)
    figure("page's first view, computed by the page (before)",
           f"{team_computed:.1f} s team, {rep_computed:.1f} s rep (every cache empty)")
    forget_stage_win_rates()
    with act_as(Session(engine), rep) as session:
        started = time.perf_counter()
        forecast_service.timing_at(session, NOW, current=True)
        figure("stage win rates on a cache miss, computed by the page (before)",
               f"{time.perf_counter() - started:.1f} s (the history's fit)")
    with Session(engine) as owner:
        owner.execute(text("DELETE FROM forecast_snapshots"))
        owner.commit()
        forget_stage_win_rates()
        started = time.perf_counter()
        summary = refresh_forecasts(owner, now=NOW)
        figure("job round crm.forecast_refresh, everything due",
               f"{time.perf_counter() - started:.1f} s ({len(summary.forecasts)} forecasts, "
               f"{len(summary.backtests)} backtests, the stage win rates)")
        started = time.perf_counter()
        again = refresh_forecasts(owner, now=NOW)
        figure("job round, nothing changed", f"{(time.perf_counter() - started) * 1000:.0f} ms "
               f"({len(again.forecasts)} forecasts rebuilt)")

    def read_view(user, owner_id, manager_view):
        with act_as(Session(engine), user) as session:
            forecast = precomputed_forecast(session, owner_id=owner_id, now=NOW)
            if manager_view:
                precomputed_backtest(session, owner_id=owner_id, now=NOW)
            assert forecast.value is not None, forecast.note

    def read_rates(user, owner_id):
        with act_as(Session(engine), user) as session:
            assert not weighting(session, NOW).pending

    forget_stage_win_rates()
    figure("page's first view, precomputed (forecast + backtest), team",
           f"{timed(lambda: read_view(manager, None, True)) * 1000:.0f} ms (median of 5)")
    figure("page's first view, precomputed (forecast), one rep",
           f"{timed(lambda: read_view(rep, rep, False)) * 1000:.0f} ms (median of 5)")
    figure("stage win rates for the weighted pipeline, precomputed",
           f"{timed(lambda: read_rates(rep, rep)) * 1000:.1f} ms (median of 5; before: the history's fit "
           "on a cache miss)")


if __name__ == "__main__":
    main()
