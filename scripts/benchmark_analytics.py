"""Analytics server time from the rollup (migration 0031) beside the scans it replaced, in one run.

    python scripts/benchmark_analytics.py --database-url URL [--runs 15] [--reference-runs 5]
                                          [--now ISO] [--skip-reference] [--periods 30d,all] [--writes]

Reads an existing, migrated database (a copy of the demo data: `createdb -T crm_100k ...`, then
`alembic upgrade head`). For every section of the Analytics page (source ROI, tiers now, tiers by
week, tier at close, funnel reached, time in stage, lost reasons, undated count) and the whole report,
for every period the page offers, as a rep (their own leads, under row-level security) and as a
manager (the whole team): p50 / p95 milliseconds of the rollup query ("after") and of the scan kept in
tests/analytics_reference.py ("before"), and the load average beside them. The clock is the newest
lead's creation (the demo data is dated relative to its generation). Prints one figure per line.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402
from sqlmodel import Session  # noqa: E402

from crm_app.db.engine import make_engine, normalize_url  # noqa: E402
from crm_app.db.security import act_as  # noqa: E402
from crm_app.services import analytics, lost_reasons  # noqa: E402
from crm_app.services.analytics import PERIODS, period_filter  # noqa: E402
from tests import analytics_reference as reference  # noqa: E402


def figure(name: str, value) -> None:
    print(f"{name:<62} {value}", flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def _lost_scan(session, flt):
    return reference.lost_breakdown(session, flt=flt, none=lost_reasons.NO_REASON)


def _report(module) -> Callable:
    return lambda session, flt: module.analytics_report(session, flt=flt)


SECTIONS: dict[str, tuple[Callable, Callable]] = {
    # name: (rollup, scan)
    "source ROI": (analytics.source_roi, reference.source_roi),
    "tiers now": (analytics.tier_counts, reference.tier_counts),
    "tiers by week": (analytics.weekly_tiers, reference.weekly_tiers),
    "tier at close": (analytics.tier_conversion, reference.tier_conversion),
    "funnel reached": (analytics.funnel_reached, reference.funnel_reached),
    "time in stage": (analytics.stage_stays, reference.stage_stays),
    "lost reasons": (lost_reasons.breakdown_rows, _lost_scan),
    "undated count": (analytics.undated_leads, reference.undated_leads),
}


def _time(engine, user_id: int, call: Callable, flt, runs: int) -> list[float]:
    timings = []
    for run in range(runs + 1):
        with act_as(Session(engine, expire_on_commit=False), user_id) as session:
            started = time.perf_counter()
            call(session, flt=flt)
            elapsed = (time.perf_counter() - started) * 1000
        if run:  # the first is a warm-up
            timings.append(elapsed)
    return timings


ROLLUP_TRIGGERS = {"leads": ("leads_rollup_insert", "leads_rollup_update", "leads_rollup_delete"),
                   "stage_changes": ("stage_changes_history_insert", "stage_changes_history_update",
                                     "stage_changes_history_delete")}


def write_cost(engine, runs: int) -> None:
    """What keeping the rollup costs a writer, in SQL as the tables' owner: a move's two statements (the
    lead's stage, its stage change) and a rescoring batch (one UPDATE of 2,000 leads' scores and
    tiers), each with the rollup's triggers and, alternately, with them disabled, inside a transaction
    that is rolled back, so the database is left as it was."""
    with engine.connect() as connection:
        open_leads = connection.execute(text(
            "SELECT id, stage FROM leads WHERE stage NOT IN ('won', 'lost') ORDER BY id LIMIT :n"),
            {"n": runs * 2 + 2}).all()
        first_id = connection.execute(text("SELECT min(id) FROM leads")).scalar_one()
    timings: dict[tuple[str, bool], list[float]] = {}
    for run, (lead_id, stage) in enumerate(open_leads):
        with_rollup = run % 2 == 0
        with engine.connect() as connection:
            outer = connection.begin()
            if not with_rollup:
                for table, triggers in ROLLUP_TRIGGERS.items():
                    for trigger in triggers:
                        connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}"))
            to_stage = "qualified" if stage != "qualified" else "meeting"
            started = time.perf_counter()
            connection.execute(text("UPDATE leads SET stage = :to, stage_entered_at = now(), version = version + 1 "
                                    "WHERE id = :id"), {"to": to_stage, "id": lead_id})
            connection.execute(text("INSERT INTO stage_changes (lead_id, from_stage, to_stage, changed_at) "
                                    "VALUES (:id, :from, :to, now())"), {"id": lead_id, "from": stage, "to": to_stage})
            timings.setdefault(("a move's two statements", with_rollup), []).append(
                (time.perf_counter() - started) * 1000)
            if run < 4:
                started = time.perf_counter()
                connection.execute(text(
                    "UPDATE leads SET score = (score + 7) % 101, tier = CASE WHEN (score + 7) % 101 >= 70 THEN 'hot' "
                    "WHEN (score + 7) % 101 >= 40 THEN 'warm' ELSE 'cold' END "
                    "WHERE id >= :first AND id < :first + 2000"), {"first": first_id})
                timings.setdefault(("rescoring batch of 2,000", with_rollup), []).append(
                    (time.perf_counter() - started) * 1000)
            outer.rollback()
    for what in ("a move's two statements", "rescoring batch of 2,000"):
        on, off = timings[(what, True)], timings[(what, False)]
        figure(f"write: {what}", f"with rollup p50 {percentile(on, .5):7.1f} ms p95 {percentile(on, .95):7.1f} ms"
                                 f" | without p50 {percentile(off, .5):7.1f} ms p95 {percentile(off, .95):7.1f} ms"
                                 f" ({len(on)}+{len(off)} runs) | {load()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--reference-runs", type=int, default=5)
    parser.add_argument("--now", default=None, help="the clock (default: the newest lead's creation)")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--periods", default=",".join(PERIODS))
    parser.add_argument("--writes", action="store_true", help="also time a move and a rescoring batch "
                        "with and without the rollup's triggers (rolled back)")
    args = parser.parse_args(argv)

    engine = make_engine(normalize_url(args.database_url))
    with engine.connect() as connection:
        leads = connection.execute(text("SELECT count(*) FROM leads")).scalar_one()
        changes = connection.execute(text("SELECT count(*) FROM stage_changes")).scalar_one()
        rollup_rows = connection.execute(text("SELECT count(*) FROM analytics_rollup")).scalar_one()
        reps = connection.execute(text(
            "SELECT id FROM users WHERE role = 'rep' AND is_active AND id IN (SELECT DISTINCT owner_id FROM leads) "
            "ORDER BY id")).scalars().all()
        manager = connection.execute(text(
            "SELECT id FROM users WHERE role = 'manager' AND is_active ORDER BY id LIMIT 1")).scalar_one()
        now = (datetime.fromisoformat(args.now) if args.now
               else connection.execute(text("SELECT max(created_at) FROM leads")).scalar_one())
    figure("database", f"{leads:,} leads, {changes:,} stage changes, {rollup_rows:,} rollup rows, now {now:%Y-%m-%d %H:%M}")
    figure("machine", f"{os.cpu_count()} cores, {load()}")
    if args.writes:
        write_cost(engine, args.runs)
    rng = random.Random(15)
    rep = rng.choice(reps)
    sections = {**SECTIONS, "whole report": (_report(analytics), _report(reference))}
    for period in args.periods.split(","):
        for who, user_id, owner in (("rep", rep, rep), ("manager", manager, None)):
            flt = period_filter(period, now=now, owner_id=owner)
            for name, (rollup, scan) in sections.items():
                after = _time(engine, user_id, rollup, flt, args.runs)
                line = f"after p50 {percentile(after, .5):7.1f} ms p95 {percentile(after, .95):7.1f} ms"
                if not args.skip_reference:
                    before = _time(engine, user_id, scan, flt, args.reference_runs)
                    line += (f" | before p50 {percentile(before, .5):8.1f} ms p95 {percentile(before, .95):8.1f} ms"
                             f" | {percentile(before, .5) / max(percentile(after, .5), 0.001):6.0f}x")
                figure(f"{period:>4} {who:<7} {name}", f"{line} | {load()}")


if __name__ == "__main__":
    main()
