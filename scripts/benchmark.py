"""How the CRM holds up at scale: bulk insert, rescoring and the ranked list, with figures.

    python scripts/benchmark.py [--leads 100000] [--activities-per-lead 10] [--database-url URL]
                                [--workers N] [--template DB] [--sections ...]

The benchmark (re)creates a scratch database `crm_bench` on the server of --database-url (or of
BENCH_DATABASE_URL), else on the app's embedded PostgreSQL; migrates it, fills it with the demo
generator (in parallel worker processes, see crm_app/demo/generator.py) and prints one figure per
line, with its unit. The database is left in place to look at. `--template crm_1m` copies a database
generated before (on the same server) instead of generating, and takes the clock it was made at.

Each section is a function of the shared `Bench`; to add one, write it and list it in SECTIONS.
`--sections pages` runs only some of them on the database a previous run left (no regeneration).
Above SAMPLE_FROM leads the sections that would take minutes run on samples, and say so: every
figure line names its sample or run count. Each section prints its own wall-clock time.
`--sections websocket` (never run by default) serves the app on the database and times websocket
round trips with scripts/benchmark_events.py, with 1 web worker and with 3 on Redis.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
import csv
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

# Run as a plain script from anywhere: make the app importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import Engine, make_url  # noqa: E402
from sqlmodel import Session  # noqa: E402

from crm_app.db.security import act_as  # noqa: E402
from crm_app.db.engine import embedded_server_url, ensure_database, make_engine, normalize_url  # noqa: E402
from crm_app.db.migrate import upgrade_to_head  # noqa: E402
from crm_app.db.queries import LeadFilter, ranked_leads  # noqa: E402
from crm_app.domain import Role, Stage  # noqa: E402
from crm_app.services.analytics import analytics_report_concurrently, period_filter  # noqa: E402
from crm_app.services.follow_ups import lead_follow_ups  # noqa: E402
from crm_app.services.forecast import build_forecast, run_backtest, sales_targets, weighting  # noqa: E402
from crm_app.services.forecast_snapshots import (  # noqa: E402
    month_start, precomputed_backtest, precomputed_forecast, read_snapshot, refresh_forecasts, target_warning)
from crm_app.services.model_report import model_page  # noqa: E402
from crm_app.services.lead_detail import lead_detail  # noqa: E402
from crm_app.services.lost_reasons import lost_reason_tables  # noqa: E402
from crm_app.services.permissions import CurrentUser  # noqa: E402
from crm_app.services.pipeline import BoardFilter, board_columns  # noqa: E402
from crm_app.services.leads import move_lead_to_stage  # noqa: E402
from crm_app.services.pipeline_health import pipeline_health  # noqa: E402
from crm_app.services.queue import action_queue  # noqa: E402
from crm_app.services.search import search_everywhere  # noqa: E402
from crm_app.demo.generator import DemoSummary, generate_demo_data  # noqa: E402
from crm_app.domain import ActivityKind  # noqa: E402
from crm_app.scoring import ActivityFact, LeadFacts, RuleBasedScoringEngine  # noqa: E402
from crm_app.services.errors import ServiceError  # noqa: E402
from crm_app.services.model_training import activate_model, engine_for_model, train_model  # noqa: E402
from crm_app.services.scoring import _rescore_where, rescore_all  # noqa: E402
from crm_app.services.exporting import stream_leads_csv  # noqa: E402
from crm_app.services.importing import ImportMapping, guess_mapping, import_file  # noqa: E402
from crm_app.services.next_action import next_action_for, next_actions, refresh_play_stats  # noqa: E402
from crm_app.services.segments import segment_insights  # noqa: E402
from crm_app.services.scoring_settings import set_engine_choice  # noqa: E402

DATABASE = "crm_bench"
PAGE_SIZE = 25
RANKED_LIST_RUNS = 200
RANKED_LIST_OFFSETS = (0, 25, 250)
RANKED_LIST_INDEX = "ix_leads_owner_score"
# From this many leads on, the sections that would take minutes run on samples (each says which).
SAMPLE_FROM = int(os.environ.get("BENCH_SAMPLE_FROM", "300000"))
SAMPLE_LEADS = int(os.environ.get("BENCH_SAMPLE_LEADS", "100000"))
SAMPLE_DEALS = int(os.environ.get("BENCH_SAMPLE_DEALS", "100000"))  # closed deals the model learns from
SAMPLE_MODEL_LEADS = int(os.environ.get("BENCH_SAMPLE_MODEL_LEADS", "10000"))  # leads the model rescores
SAMPLE_REWRITE = int(os.environ.get("BENCH_SAMPLE_REWRITE", "10000"))  # leads rewritten (after a wipe) by rules, risk

# The core of the page query, for its plan; the timings run the app's own ranked_leads().
RANKED_LIST_SQL = text(
    """
    SELECT id, name, company, score, tier, score_reasons, stage, deal_value
      FROM leads
     WHERE owner_id = :owner_id
     ORDER BY score DESC, id DESC
     LIMIT :limit OFFSET :offset
    """
)


@dataclass
class Bench:
    """What the sections share: the database, the clock they score at, and what was generated."""

    engine: Engine
    now: datetime
    leads: int
    activities_per_lead: float
    seed: int = 42
    summary: DemoSummary | None = None
    workers: int | None = None
    app_port: int = 3000  # the websocket section's app
    events_options: str = ""  # passed on to benchmark_events by the websocket section

    @property
    def sampled(self) -> bool:
        return self.leads >= SAMPLE_FROM


def figure(label: str, value: str) -> None:
    print(f"{label}: {value}  (load {os.getloadavg()[0]:.1f})", flush=True)


def percentile(sorted_values: list[float], share: float) -> float:
    """The value below which `share` of the values lie (nearest rank)."""
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


# --- Sections ---------------------------------------------------------------------------------


def insert_demo_data(bench: Bench) -> None:
    """Generate the demo pipeline and time storing it (COPY) apart from drawing and scoring it."""
    summary = generate_demo_data(
        bench.engine,
        leads=bench.leads,
        seed=bench.seed,
        now=bench.now,
        activities_per_lead=bench.activities_per_lead,
        workers=bench.workers,
    )
    bench.summary = summary
    rows = summary.users + summary.leads + summary.stage_changes + summary.activities
    figure(
        "generated",
        f"{summary.leads:,} leads, {summary.activities:,} activities, "
        f"{summary.stage_changes:,} stage changes, {summary.users} users",
    )
    figure("load (draw + COPY)", f"{summary.load_seconds:.1f} s in {summary.workers} worker process(es), "
                                 f"{summary.chunks} chunk(s) = {rows / summary.load_seconds:,.0f} rows/s")
    figure("  of which drawing / COPY", f"{summary.simulate_seconds:.1f} s / {summary.insert_seconds:.1f} s "
                                        f"(summed over the workers; scoring and risk as drawn "
                                        f"{summary.assess_seconds:.1f} s of the COPY's)")
    for label, seconds in summary.steps[1:]:
        figure(f"  then {label}", f"{seconds:.1f} s")
    figure("after the load (score, risk, indexes, vacuum)", f"{summary.score_seconds:.1f} s")
    figure("total generation time", f"{summary.elapsed_seconds:.1f} s")


def rescoring(bench: Bench) -> None:
    """Full rescoring through the database (the rules score set-based in it, services/rules_sql.py),
    next to the bare engine on the same facts in memory. Three cases: the scores as the generator
    stored them; again with nothing changed (only changed leads are written); and after every lead's
    stored reasons were wiped, so that every lead is written again, as after a change of the rubric.
    Above SAMPLE_FROM leads the rewrite runs on the SAMPLE_REWRITE lowest ids: a written lead costs an
    entry in each of leads' ~27 indexes, so wiping a million and rewriting them took over ten minutes
    and says no more per lead than a sample in the same table does."""
    with Session(bench.engine) as session:
        labels = ["rescore_all (database)", "rescore_all, nothing changed (database)"]
        if bench.sampled:
            labels = labels[:1]  # the scores the generator stored are already current: one pass says it
        for label in labels:
            started = time.perf_counter()
            count = rescore_all(session, bench.now)
            seconds = time.perf_counter() - started
            figure(label, f"{count:,} leads in {seconds:.1f} s = {count / seconds:,.0f} leads/s")
        if bench.sampled:
            last = min(bench.leads, SAMPLE_REWRITE)
            session.execute(text("UPDATE leads SET score_reasons = '[]'::jsonb WHERE id <= :last"), {"last": last})
            session.commit()
            started = time.perf_counter()
            # The path rescore_all takes, over the sample's ids.
            count = _rescore_where(session, bench.now, "leads.id <= :sample_last", {"sample_last": last}, None,
                                   5000, None)
            seconds = time.perf_counter() - started
            figure("rescore, every lead rewritten (database)",
                   f"{count:,} of {bench.leads:,} leads (sample: lowest ids) in {seconds:.1f} s "
                   f"= {count / seconds:,.0f} leads/s")
        else:
            session.execute(text("UPDATE leads SET score_reasons = '[]'::jsonb"))
            session.commit()
            started = time.perf_counter()
            count = rescore_all(session, bench.now)
            seconds = time.perf_counter() - started
            figure("rescore_all, every lead rewritten (database)",
                   f"{count:,} leads in {seconds:.1f} s = {count / seconds:,.0f} leads/s")

    started = time.perf_counter()
    facts = load_all_facts(bench.engine, SAMPLE_LEADS if bench.sampled else None)
    figure("load facts into memory", f"{len(facts):,} leads in {time.perf_counter() - started:.1f} s"
                                     + (" (sample: the first ids)" if bench.sampled else ""))
    engine = RuleBasedScoringEngine()
    started = time.perf_counter()
    for lead_facts in facts:
        engine.score(lead_facts, bench.now)
    seconds = time.perf_counter() - started
    figure(
        "RuleBasedScoringEngine (memory)",
        f"{len(facts):,} leads in {seconds:.1f} s = {len(facts) / seconds:,.0f} leads/s",
    )


def load_all_facts(engine: Engine, first: int | None = None) -> list[LeadFacts]:
    """Every lead's scoring facts, or those of the leads with the `first` lowest ids."""
    activities: dict[int, list[ActivityFact]] = defaultdict(list)
    last_id = 2**31 - 1 if first is None else first
    with engine.connect() as connection:
        for lead_id, kind, occurred_at in connection.execute(
            text("SELECT lead_id, kind, occurred_at FROM activities WHERE lead_id <= :last"), {"last": last_id}
        ):
            activities[lead_id].append(ActivityFact(ActivityKind(kind), occurred_at))
        leads = connection.execute(text("SELECT id, company_size, source, custom_fields FROM leads "
                                        "WHERE id <= :last"), {"last": last_id}).all()
    return [
        LeadFacts(
            company_size=lead.company_size,
            source=lead.source,
            activities=tuple(activities[lead.id]),
            custom_fields=lead.custom_fields,
        )
        for lead in leads
    ]


def ranked_list(bench: Bench) -> None:
    """Latency of one page of a rep's ranked list, across reps and pages, and its query plan."""
    rng = random.Random(bench.seed)
    with bench.engine.connect() as connection:
        owners = connection.execute(
            text("SELECT DISTINCT owner_id FROM leads WHERE owner_id IS NOT NULL ORDER BY 1")
        ).scalars().all()
        plan = connection.execute(
            text(f"EXPLAIN {RANKED_LIST_SQL.text}"),
            {"owner_id": owners[0], "limit": PAGE_SIZE, "offset": 0},
        ).scalars().all()
        figure("ranked list plan", plan[0])
        scan = next((line.strip() for line in plan if "Scan" in line), "no scan node")
        figure("ranked list scan", scan)
        figure(f"ranked list uses {RANKED_LIST_INDEX}", "yes" if RANKED_LIST_INDEX in scan else "NO")

    timings = []
    with Session(bench.engine) as session:
        for run in range(RANKED_LIST_RUNS + 10):
            owner_id, offset = rng.choice(owners), rng.choice(RANKED_LIST_OFFSETS)
            started = time.perf_counter()
            # What the leads page runs: the page (with owner names) and the total count.
            ranked_leads(session, LeadFilter(owner_id=owner_id), limit=PAGE_SIZE, offset=offset)
            if run >= 10:  # the first few warm the connection and the cache
                timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    figure(
        "ranked list latency",
        f"p50 {percentile(timings, 0.50):.2f} ms, p95 {percentile(timings, 0.95):.2f} ms, "
        f"p99 {percentile(timings, 0.99):.2f} ms, mean {statistics.fmean(timings):.2f} ms "
        f"({len(timings)} queries, {len(owners)} reps, offsets {', '.join(map(str, RANKED_LIST_OFFSETS))})",
    )


PAGE_RUNS = 30
# A figure stops early once its runs took this long (after at least PAGE_MIN_RUNS; SAMPLED_PAGE_BUDGET
# on sampled runs, where some pages take seconds and 30-odd figures must fit in about two minutes):
# the line says how many runs it got.
PAGE_BUDGET_SECONDS = 20.0
SAMPLED_PAGE_BUDGET_SECONDS = float(os.environ.get("BENCH_PAGE_BUDGET", "3"))
PAGE_MIN_RUNS = int(os.environ.get("BENCH_PAGE_MIN_RUNS", "3"))  # 1: a glance at a page that takes a minute
# Only the page figures whose label contains one of these words (comma-separated, any case), e.g.
# "analytics,forecast": at 1M the whole section takes many minutes. Empty: every figure.
PAGE_ONLY = [w.strip().lower() for w in os.environ.get("BENCH_PAGES", "").split(",") if w.strip()]


def _page_wanted(label: str) -> bool:
    return not PAGE_ONLY or any(word in label.lower() for word in PAGE_ONLY)


def _time_calls(label: str, call: Callable[[Session, int, int], object], owners: list[int], bench: Bench, *,
                as_user: Callable[[int], int], cold: bool = False) -> None:
    """p50/p95 of `call(session, owner_id, user_id)` over up to PAGE_RUNS runs across reps (fewer once
    they took PAGE_BUDGET_SECONDS), after two warm-ups (one on sampled runs). Each run acts as `as_user(owner_id)`
    under row-level security, as the page would. On sampled runs the line also gives the warm-up's time
    (a slow page's first run, with nothing cached, is often most of what it costs); `cold`: there the
    first run counts and one may do (a build that takes minutes at 1M leads before it is cached)."""
    if not _page_wanted(label):
        return
    rng = random.Random(bench.seed)
    timings = []
    warm_ups = (0 if cold else 1) if bench.sampled else 2  # at 1M a slow page's warm-up costs as much as a run
    min_runs = 1 if cold and bench.sampled else PAGE_MIN_RUNS
    budget = SAMPLED_PAGE_BUDGET_SECONDS if bench.sampled else PAGE_BUDGET_SECONDS
    first = None
    for run in range(PAGE_RUNS + warm_ups):
        owner_id = rng.choice(owners)
        user_id = as_user(owner_id)
        with act_as(Session(bench.engine, expire_on_commit=False), user_id) as session:
            started = time.perf_counter()
            call(session, owner_id, user_id)
            elapsed = (time.perf_counter() - started) * 1000
            first = elapsed if first is None else first
            if run >= warm_ups:
                timings.append(elapsed)
        if len(timings) >= min_runs and sum(timings) > budget * 1000:
            break
    timings.sort()
    runs = f"{len(timings)} run{'' if len(timings) == 1 else 's'}"
    if bench.sampled and cold:
        runs += ", cold" if len(timings) == 1 else f", the first cold: {first:,.0f} ms"
    elif bench.sampled:
        runs += f" after an uncounted first of {first:,.0f} ms"
    figure(label, f"p50 {percentile(timings, 0.5):.1f} ms, p95 {percentile(timings, 0.95):.1f} ms ({runs})")


def _team(bench: Bench) -> tuple[list[int], int, dict[int, list[int]], dict[int, CurrentUser]]:
    """The reps who own leads, the manager, up to 200 open leads of each rep, and everyone as a CurrentUser."""
    with bench.engine.connect() as connection:
        owners = connection.execute(
            text("SELECT DISTINCT owner_id FROM leads WHERE owner_id IS NOT NULL ORDER BY 1")
        ).scalars().all()
        manager = connection.execute(
            text("SELECT id FROM users WHERE role = 'manager' AND is_active ORDER BY id LIMIT 1")).scalar_one()
        open_leads = {owner: connection.execute(text(
            "SELECT id FROM leads WHERE owner_id = :o AND stage NOT IN ('won', 'lost') ORDER BY id LIMIT 200"),
            {"o": owner}).scalars().all() for owner in owners}
        users = {row.id: CurrentUser(row.id, row.email, row.name, Role(row.role))
                 for row in connection.execute(text("SELECT id, email, name, role FROM users"))}
    return owners, manager, open_leads, users


def pages(bench: Bench) -> None:
    """Server time of what each page's load event runs (the services its state handler calls, in the
    same order), for a rep and for a manager looking at the whole team, under row-level security as
    that user; then the drag-and-drop persist. Websocket round trips (event queue, serialisation,
    several clients) are measured against the running app by a section of their own."""
    owners, manager, open_leads, users = _team(bench)
    now = bench.now
    rng = random.Random(bench.seed)
    team = [u for u in users.values() if u.role == Role.REP]
    forecasts_stored = _page_wanted("forecast") and _store_forecasts(bench)

    def today(s, owner, user):
        action_queue(s, owner_id=owner, now=now, limit=PAGE_SIZE)
        pipeline_health(s, owner_id=owner, now=now)
        if owner is not None:
            target_warning(s, owner_id=owner, now=now)

    def leads_page(s, owner, search=None):
        ranked_leads(s, LeadFilter(owner_id=owner, search=search), limit=PAGE_SIZE)
        weighting(s, now)

    def analytics(user, owner, period):
        # As the page's load (state/analytics.py): the report, the segment insights and the lost reasons
        # side by side, each in a session of its own.
        flt = period_filter(period, now=now, owner_id=owner)

        def part(query):
            with act_as(Session(bench.engine), user) as s:
                return query(s, flt=flt)

        with ThreadPoolExecutor(max_workers=3) as pool:
            waiting = [pool.submit(analytics_report_concurrently, lambda: act_as(Session(bench.engine), user), flt=flt),
                       pool.submit(part, segment_insights), pool.submit(part, lost_reason_tables)]
            for future in waiting:
                future.result()

    def forecast_page(s, owner, user):
        # What the page's load reads when the job worker has stored this month's forecast: the snapshot
        # (with its freshness check) and, for a manager, the targets' editor; it builds one itself only
        # when none is stored (the "Forecast load" line times that).
        precomputed_forecast(s, owner_id=owner, now=now)
        if owner is None:
            sales_targets(s, team)

    def analytics_part(part, user, owner, period):
        with act_as(Session(bench.engine), user) as s:
            part(s, flt=period_filter(period, now=now, owner_id=owner))

    def detail(s, o, user):
        lead_id = rng.choice(open_leads[o])
        lead_detail(s, lead_id, now, users[user])
        next_action_for(s, lead_id, now)
        lead_follow_ups(s, lead_id, now)

    for scope, owner, as_user in (("rep", lambda o: o, lambda o: o), ("manager", lambda o: None, lambda o: manager)):
        _time_calls(f"Today load ({scope})", lambda s, o, u: today(s, owner(o), u), owners, bench, as_user=as_user)
        _time_calls(f"Leads load ({scope})", lambda s, o, u: leads_page(s, owner(o)), owners, bench, as_user=as_user)
        _time_calls(f"Leads search 'smith' ({scope})", lambda s, o, u: leads_page(s, owner(o), "smith"), owners,
                    bench, as_user=as_user)
        _time_calls(f"Ctrl-K search 'smith' ({scope})", lambda s, o, u: search_everywhere(s, "smith"), owners,
                    bench, as_user=as_user)
        _time_calls(f"Pipeline load ({scope})",
                    lambda s, o, u: board_columns(s, flt=BoardFilter(owner_id=owner(o)), now=now), owners, bench,
                    as_user=as_user)
        _time_calls(f"Lead detail load ({scope})", detail, owners, bench, as_user=as_user)
        _time_calls(f"Analytics load, 90 days ({scope})", lambda s, o, u: analytics(u, owner(o), "90d"), owners,
                    bench, as_user=as_user)
        _time_calls(f"Analytics load, all time ({scope})", lambda s, o, u: analytics(u, owner(o), "all"), owners,
                    bench, as_user=as_user)
        # The analytics page's two slowest parts alone (the load above waits for the slowest).
        for period in ("90d", "all"):
            _time_calls(f"  of which segment insights, {period} ({scope})",
                        lambda s, o, u: analytics_part(segment_insights, u, owner(o), period), owners, bench,
                        as_user=as_user)
        # On sampled runs as the page's load builds it when nothing is stored: without waiting for the
        # calibration by the past months' errors (a background event that follows: minutes at 1M leads
        # until cached), and one cold run (each rep's first build takes seconds there, later ones hit a cache).
        calibrated = not bench.sampled
        _time_calls(f"Forecast load, built here{'' if calibrated else ', before its calibration'} ({scope})",
                    lambda s, o, u: build_forecast(s, owner_id=owner(o), now=now, wait_for_calibration=calibrated),
                    owners, bench, as_user=as_user, cold=bench.sampled)
        if forecasts_stored:
            _time_calls(f"Forecast load, from the stored snapshot ({scope})",
                        lambda s, o, u: forecast_page(s, owner(o), u), owners, bench, as_user=as_user)
    # The model page shows its numbers to managers only (a rep gets the refusal, no query).
    _time_calls("Model page load (manager)", lambda s, o, u: model_page(s, now=now), owners, bench,
                as_user=lambda o: manager)
    # A manager's Forecast load chains the backtest (a few seconds of SQL) as a second event.
    if bench.sampled and _page_wanted("Forecast backtest, chained, built here"):
        figure("Forecast backtest, chained, built here (manager)",
               "not timed on sampled runs: its first build took ~90 s at 1,000,000 leads (load 5, 4 Dec 2026), "
               "then it is cached for the month; the job worker stores it")
    else:
        _time_calls("Forecast backtest, chained, built here (manager)",
                    lambda s, o, u: run_backtest(s, owner_id=None, now=now), owners, bench, as_user=lambda o: manager)
    if forecasts_stored:
        _time_calls("Forecast backtest, chained, stored (manager)",
                    lambda s, o, u: precomputed_backtest(s, owner_id=None, now=now), owners, bench,
                    as_user=lambda o: manager)

    # Drag and drop: the handler's persist (lock, version check, history row, rescore, commit), as a
    # manager, then the reload of the two columns it touched, as the board does.
    if not _page_wanted("drag-and-drop persist"):
        return
    stages = [Stage.CONTACTED, Stage.QUALIFIED, Stage.MEETING, Stage.PROPOSAL]
    candidates = [lead for leads in open_leads.values() for lead in leads]
    persist, reload = [], []
    with act_as(Session(bench.engine, expire_on_commit=False), manager) as session:
        for run, lead_id in enumerate(rng.sample(candidates, min(len(candidates), PAGE_RUNS + 2))):
            version, stage = session.execute(
                text("SELECT version, stage FROM leads WHERE id = :id"), {"id": lead_id}).one()
            session.commit()
            # Always a real move (a drop on the card's own stage writes nothing).
            to_stage = next(s for s in stages[run % len(stages):] + stages if s != stage)
            started = time.perf_counter()
            move_lead_to_stage(session, lead_id=lead_id, to_stage=to_stage, now=now, expected_version=version,
                               user_id=manager)
            moved = time.perf_counter()
            board_columns(session, flt=BoardFilter(), now=now, stages=[stage, to_stage.value])
            if run >= 2:
                persist.append((moved - started) * 1000)
                reload.append((time.perf_counter() - moved) * 1000)
    for label, timings in (("drag-and-drop persist (move_lead_to_stage)", persist),
                           ("  then the two columns reloaded (manager's board)", reload)):
        timings.sort()
        figure(label, f"p50 {percentile(timings, 0.5):.1f} ms, p95 {percentile(timings, 0.95):.1f} ms "
                      f"({len(timings)} moves)")


def _store_forecasts(bench: Bench) -> bool:
    """This month's forecasts and backtests stored as the job worker stores them (one round of
    crm.forecast_refresh, as the tables' owner), so that the Forecast page's load reads snapshots as in
    a running app; a database that already holds this month's round keeps it. On sampled runs the
    round (about 3 minutes at 100,000 leads, far longer at a million) is left to the job worker: False
    when nothing is stored then."""
    with Session(bench.engine) as session:
        stored = read_snapshot(session, "forecast", None)
        if stored is not None and stored.month == month_start(bench.now):
            return True
        if bench.sampled:
            figure("forecast snapshots", "none stored for this month (sampled run: the refresh round is "
                                         "not run here), so the stored-snapshot lines are left out")
            return False
        started = time.perf_counter()
        summary = refresh_forecasts(session, now=bench.now)
    figure("forecast snapshots stored first (one round of the refresh job)",
           f"{time.perf_counter() - started:.1f} s, {len(summary.forecasts)} forecasts, "
           f"{len(summary.backtests)} backtests")
    return True


def queue(bench: Bench) -> None:
    """The Today page's action queue alone, for a rep and for a manager (the whole team), under
    row-level security as the page runs it. The clock is the moment the data was generated (its
    newest activity), so the queue holds its usual share of fresh signals however long ago the
    database was made."""
    with bench.engine.connect() as connection:
        owners = connection.execute(
            text("SELECT DISTINCT owner_id FROM leads WHERE owner_id IS NOT NULL ORDER BY 1")
        ).scalars().all()
        manager = connection.execute(
            text("SELECT id FROM users WHERE role = 'manager' AND is_active ORDER BY id LIMIT 1")
        ).scalar_one()
        now = connection.execute(text("SELECT max(occurred_at) FROM activities")).scalar_one()
    scopes = (("rep", lambda o: o, lambda o: o), ("team", lambda o: None, lambda o: manager))
    for scope, owner, as_user in scopes:
        _time_calls(f"action queue, first 25 ({scope})",
                    lambda s, o, u: action_queue(s, owner_id=owner(o), now=now, limit=25), owners, bench,
                    as_user=as_user)
        _time_calls(f"action queue, items 26-50 ({scope})",
                    lambda s, o, u: action_queue(s, owner_id=owner(o), now=now, limit=25, offset=25), owners,
                    bench, as_user=as_user)
        _time_calls(f"action queue, Hot group only ({scope})",
                    lambda s, o, u: action_queue(s, owner_id=owner(o), now=now, limit=25, group="hot"),
                    owners, bench, as_user=as_user)
        with act_as(Session(bench.engine), as_user(owners[0])) as session:
            page = action_queue(session, owner_id=owner(owners[0]), now=now)
        figure(f"action queue groups ({scope})", ", ".join(f"{g.label} {g.count:,}" for g in page.groups)
               + f"; {page.total:,} in all")


def insights(bench: Bench) -> None:
    """Next best action and segment insights: mining the play statistics from the whole history
    (a bulk refresh), the next best actions of 25 queue items (reads only the precomputed rows),
    and the analytics page's segment search over all closed history."""
    timings = []
    with Session(bench.engine) as session:
        for _ in range(1 if bench.sampled else 3):
            started = time.perf_counter()
            rows = refresh_play_stats(session, bench.now)
            timings.append(time.perf_counter() - started)
    figure("refresh play statistics (whole history)",
           f"best {min(timings):.2f} s of {len(timings)}, {rows:,} segment rows")
    with bench.engine.connect() as connection:
        owners = connection.execute(
            text("SELECT DISTINCT owner_id FROM leads WHERE owner_id IS NOT NULL ORDER BY 1")
        ).scalars().all()
        open_leads = connection.execute(
            text("SELECT id FROM leads WHERE stage NOT IN ('won', 'lost') ORDER BY score DESC, id LIMIT 2000")
        ).scalars().all()
    rng = random.Random(bench.seed)
    manager = _team(bench)[1]
    _time_calls("next best actions for 25 queue items (manager)",
                lambda s, o, u: next_actions(s, rng.sample(open_leads, 25), bench.now), owners, bench,
                as_user=lambda o: manager)
    for scope, owner, as_user in (("rep", lambda o: o, lambda o: o), ("team", lambda o: None, lambda o: manager)):
        _time_calls(f"segment insights, all time ({scope})",
                    lambda s, o, u: segment_insights(s, flt=period_filter("all", now=bench.now, owner_id=owner(o))),
                    owners, bench, as_user=as_user)


def risk(bench: Bench) -> None:
    """Deal risk through the database: every lead, then a day's sweep; and what storing each
    reply's sentiment at write time saves against scoring the bodies again at every reassessment."""
    from datetime import timedelta

    from crm_app.scoring.sentiment import sentiment_of
    from crm_app.services.risk import reassess_all_risk, reassess_expired_risk

    # Above SAMPLE_FROM leads: the leads with the lowest SAMPLE_REWRITE ids (in the same proportions as
    # the whole), so the line gives a rate, not the whole table's time: clearing a lead's risk rewrites
    # it with an entry in each of leads' ~27 indexes (100,000 leads took over 3 minutes just to clear).
    leads = min(bench.leads, SAMPLE_REWRITE) if bench.sampled else bench.leads
    ids = (1, leads) if bench.sampled else None
    sample = f" (sample: lowest ids, leads 1-{leads:,} of {bench.leads:,})" if bench.sampled else ""
    with Session(bench.engine) as session:
        # From scratch, as after the migration (the generator has assessed every lead already).
        session.execute(text("UPDATE leads SET risk_level = NULL, risk_points = NULL, risk_reasons = '[]', "
                             "risk_valid_until = NULL, last_reply_at = NULL, last_reply_sentiment = NULL "
                             "WHERE id <= :last"), {"last": leads})
        session.commit()
        started = time.perf_counter()
        count = reassess_all_risk(session, bench.now, ids=ids)
        seconds = time.perf_counter() - started
        figure("reassess_all_risk (database)", f"{leads:,} leads in {seconds:.1f} s = "
               f"{leads / seconds:,.0f} leads/s ({count:,} written){sample}")
        started = time.perf_counter()
        count = reassess_all_risk(session, bench.now, ids=ids)
        seconds = time.perf_counter() - started
        figure("reassess_all_risk again (nothing changed)", f"{leads:,} leads in {seconds:.1f} s = "
               f"{leads / seconds:,.0f} leads/s ({count:,} written){sample}")
        levels = dict(session.execute(text(
            "SELECT coalesce(risk_level, 'closed'), count(*) FROM leads GROUP BY 1")).all())
        figure("risk levels", ", ".join(f"{k} {v:,}" for k, v in sorted(levels.items())))
        later = bench.now + timedelta(days=1)
        if bench.sampled:
            # The sweep's own condition over the SAMPLE_LEADS lowest ids: at 1M a day's sweep writes ~65,000
            # deals (46 s at load 4), a rate a tenth of them gives as well.
            due = session.execute(text("SELECT count(*) FROM leads WHERE risk_valid_until <= :now"),
                                  {"now": later}).scalar_one()
            last = min(bench.leads, SAMPLE_LEADS)
            started = time.perf_counter()
            swept = reassess_expired_risk(session, later, ids=(1, last))
            figure("sweep a day later (reassess_expired_risk)",
                   f"{swept:,} deals written in {time.perf_counter() - started:.1f} s (sample: the deals due among "
                   f"leads 1-{last:,}; {due:,} due of {bench.leads:,})")
        else:
            started = time.perf_counter()
            swept = reassess_expired_risk(session, later)
            figure("sweep a day later (reassess_expired_risk)",
                   f"{swept:,} deals in {time.perf_counter() - started:.1f} s")

    with bench.engine.connect() as connection:
        started = time.perf_counter()
        bodies = connection.execute(text(
            "SELECT body FROM activities WHERE kind IN ('email_received', 'note') AND body IS NOT NULL "
            "AND lead_id <= :last"), {"last": leads}).scalars().all()
        read = time.perf_counter() - started
    started = time.perf_counter()
    for body in bodies:
        sentiment_of(body)
    scored = time.perf_counter() - started
    figure("re-reading bodies instead (avoided)",
           f"{len(bodies):,} replies and notes: read {read:.1f} s + sentiment {scored:.1f} s "
           f"= {(scored / len(bodies)) * 1e6:,.0f} us each{sample}")



IMPORT_ROWS = 100_000
IMPORT_HEADER = ["Name", "Email", "Company", "Employees", "Source", "Stage", "Amount", "Created", "Industry", "Region"]


def _write_import_csv(path: Path, rows: int, run: str) -> None:
    rng = random.Random(7)
    stages = ["New", "Contacted", "Qualified", "Proposal", "Won", "Lost"]
    sources = ["LinkedIn", "Website", "Referral", "Webinar", "Paid search", "Events"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(IMPORT_HEADER)
        for i in range(rows):
            writer.writerow([
                f"Imported Person {i}", f"p{i}.{run}@import.test", f"Company {i % 5000}", rng.randint(1, 2000),
                rng.choice(sources), rng.choice(stages), rng.randint(0, 90_000),
                f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", rng.choice(["Retail", "Banking", "SaaS"]),
                rng.choice(["North", "South", "East", "West"]),
            ])


def import_export(bench: Bench) -> None:
    """Import of a generated 100,000-row CSV (all rows checked, one transaction, scored; 20,000 rows
    above SAMPLE_FROM leads), a re-import of the same file (matches every row, changes nothing), and
    CSV export of every lead (of the first SAMPLE_LEADS in list order above SAMPLE_FROM leads)."""
    import tempfile

    import_rows = 20_000 if bench.sampled else IMPORT_ROWS
    run = f"{int(time.time())}"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "leads.csv"
        started = time.perf_counter()
        _write_import_csv(path, import_rows, run)
        figure("generate CSV", f"{import_rows:,} rows, {path.stat().st_size / 1e6:.1f} MB in "
                               f"{time.perf_counter() - started:.1f} s")
        mapping = ImportMapping(columns=guess_mapping(IMPORT_HEADER))
        for label in ("import (new leads)", "re-import (unchanged)"):
            phases: dict[str, float] = {}
            started = time.perf_counter()

            def note(step, phases=phases, started=started) -> None:
                phases.setdefault(step.phase, time.perf_counter() - started)

            with Session(bench.engine) as session:
                summary = import_file(session, path, mapping, now=bench.now, progress=note)
            seconds = time.perf_counter() - started
            figure(label, f"{summary.rows:,} rows in {seconds:.1f} s = {summary.rows / seconds:,.0f} rows/s "
                          f"(created {summary.created:,}, updated {summary.updated:,}, skipped {summary.skipped:,}; "
                          f"checking took {phases.get('writing', seconds):.1f} s)")
    # Above SAMPLE_FROM leads an export stops after SAMPLE_LEADS rows: the rate is the figure, and all
    # 1,020,000 leads took ~57 s at load 4.
    limit = SAMPLE_LEADS if bench.sampled else None
    for label, flt in (("export all leads", LeadFilter()), ("export Hot leads", LeadFilter(tier="hot"))):
        started = time.perf_counter()
        size = rows = 0
        chunks = stream_leads_csv(bench.engine, flt)
        try:
            for chunk in chunks:
                size += len(chunk)
                rows += chunk.count("\n")
                if limit is not None and rows - 1 >= limit:
                    break
        finally:
            chunks.close()  # a stopped download: its connection goes back now
        seconds = time.perf_counter() - started
        sample = ""
        if limit is not None and rows - 1 >= limit:
            with bench.engine.connect() as connection:
                total = connection.execute(text("SELECT count(*) FROM leads")).scalar_one()
            sample = f" (sample: the first rows in list order, the download stopped there; {total:,} leads in all)"
        figure(label, f"{rows - 1:,} rows, {size / 1e6:.1f} MB in {seconds:.1f} s = {(rows - 1) / seconds:,.0f} rows/s"
                      + sample)


def model(bench: Bench) -> None:
    """The predictive score: training on the generated history, then scoring every lead with the model
    (and a blend) through the database path the app uses, next to the model alone in memory.
    Leaves the team on the rules, every lead scored by them again, as the other sections expect."""
    with Session(bench.engine) as session:
        closed = session.execute(text("SELECT count(*) FROM leads WHERE stage IN ('won', 'lost')")).scalar_one()
        # Above SAMPLE_FROM leads the model learns from the newest SAMPLE_DEALS closed deals (their own
        # newest fifth held out), as a team with that much history could choose to.
        newest = SAMPLE_DEALS if bench.sampled and closed > SAMPLE_DEALS else None
        started = time.perf_counter()
        try:
            report = train_model(session, now=bench.now, newest=newest)
        except ServiceError as error:
            figure("model training", f"skipped: {error}")
            return
        seconds = time.perf_counter() - started
        figure("model training", f"{report.rows:,} closed leads in {seconds:.1f} s "
                                 f"(features + fit + evaluation {report.seconds:.1f} s)"
               + (f" (sample: the newest {newest:,} of {closed:,} closed deals)" if newest else ""))
        figure("model vs rules on the holdout", f"ROC-AUC {report.model.roc_auc:.3f} vs {report.rules.roc_auc:.3f} "
                                                f"on {report.holdout_rows:,} closed leads")
        activate_model(session, report.model_id, actor=None)
        # Above SAMPLE_FROM leads the model scores a sample (the lowest ids) through the same path: a
        # model scores in Python, a few hundred to a few thousand leads a second.
        leads = min(bench.leads, SAMPLE_MODEL_LEADS) if bench.sampled else bench.leads
        sample = " (sample: lowest ids)" if bench.sampled else ""
        of_all = f" of {bench.leads:,}" if bench.sampled else ""
        for mode in ("model", "blend"):
            set_engine_choice(session, mode=mode, blend_percent="50", now=bench.now, actor=None)
            # First every score moves to the new engine's (written); then again with nothing changed
            # (scored, compared, nothing written).
            for label in (f"rescore_all with the {mode} (database)", f"rescore_all with the {mode} again"):
                started = time.perf_counter()
                if bench.sampled:
                    _rescore_where(session, bench.now, "leads.id <= :sample_last", {"sample_last": leads}, None,
                                   5000, None)
                    count = leads
                else:
                    count = rescore_all(session, bench.now)
                seconds = time.perf_counter() - started
                figure(label, f"{count:,}{of_all} leads{sample} in {seconds:.1f} s = {count / seconds:,.0f} leads/s")
        engine = engine_for_model(session, report.model_id)
        set_engine_choice(session, mode="rules", now=bench.now, actor=None)
        if bench.sampled:
            restored = _rescore_where(session, bench.now, "leads.id <= :sample_last", {"sample_last": leads}, None,
                                      5000, None)
        else:
            restored = rescore_all(session, bench.now)
    # In memory the rate does not depend on the table's size: fewer leads on sampled runs.
    batch, single = (10_000, 500) if bench.sampled else (20_000, 2_000)
    facts = load_all_facts(bench.engine, batch)
    started = time.perf_counter()
    engine.score_many(facts, bench.now)
    batched = time.perf_counter() - started
    sample = facts[:single]
    started = time.perf_counter()
    for lead in sample:
        engine.score(lead, bench.now)
    one_by_one = time.perf_counter() - started
    figure("model in memory, batched (score_many)", f"{len(facts) / batched:,.0f} leads/s ({len(facts):,} leads)")
    figure("model in memory, one lead at a time", f"{len(sample) / one_by_one:,.0f} leads/s ({len(sample):,} leads)")
    figure("rules again", f"{restored:,} leads rescored by the rules")


def websocket(bench: Bench) -> None:
    """Websocket round trips against the app served on this database, by scripts/benchmark_events.py
    (its docstring says how each is timed): an empty handler's floor, a drag-and-drop move, a leads
    search and the Today load at 1, 10 and 50 clients, with 1 web worker and then with 3 on Redis.
    It starts the app itself on --app-port, one configuration at a time (the first start on a port
    builds the frontend: a few minutes), and prints its tables as they come. Run only when named
    (`--sections websocket`): it takes ~4 minutes a configuration besides the build, and a free port
    and Redis; `--events='--workers 1 --seconds 5'` passes options on to benchmark_events."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import shlex

    import benchmark_events

    argv = ["--database-url", bench.engine.url.render_as_string(hide_password=False), "--port", str(bench.app_port),
            *shlex.split(bench.events_options)]
    print(f"benchmark_events {' '.join(argv[2:])}", flush=True)
    benchmark_events.main(argv)


SECTIONS: list[Callable[[Bench], None]] = [
    insert_demo_data, rescoring, ranked_list, pages, queue, risk, insights, import_export, model,
]
# Run only when named in --sections: they serve the app.
OPT_IN_SECTIONS: list[Callable[[Bench], None]] = [websocket]


# --- Setting up ---------------------------------------------------------------------------------


def copy_of_template(server_url: str | None, template: str, database: str) -> str:
    """A fresh copy of a database generated before (`createdb -T`, file by file: minutes at 1M leads,
    against most of an hour to generate), migrated to head. Nobody may be connected to the template."""
    return _fresh_database(server_url, database,
                           f'CREATE DATABASE "{database}" TEMPLATE "{template}" STRATEGY FILE_COPY')


def scratch_database_url(server_url: str | None, database: str = DATABASE) -> str:
    """A freshly created, migrated scratch database on the given server (or the embedded one)."""
    return _fresh_database(server_url, database)


def _fresh_database(server_url: str | None, database: str, create_sql: str | None = None) -> str:
    """Drop `database` and create it again (empty, or by `create_sql`), migrated to head; its URL."""
    url = normalize_url(server_url) if server_url else embedded_server_url(database=database)
    admin_url = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            if create_sql:
                connection.execute(text(create_sql))
    finally:
        admin.dispose()
    if not create_sql:
        ensure_database(admin_url, database)
    bench_url = make_url(url).set(database=database).render_as_string(hide_password=False)
    upgrade_to_head(bench_url)
    return bench_url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--activities-per-lead", type=float, default=10.0)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL") or None,
        help="a PostgreSQL server to benchmark on (its database name is ignored); "
        "default: BENCH_DATABASE_URL, else the embedded server",
    )
    parser.add_argument("--database", default=DATABASE,
                        help=f"name of the scratch database (default {DATABASE}); engineers sharing a server "
                             "each pick their own")
    parser.add_argument("--sections", nargs="*", choices=[f.__name__ for f in SECTIONS + OPT_IN_SECTIONS],
                        help="run only these sections, in this order, on the database a full run left (or on "
                             "a fresh copy of --template); `websocket` runs only when named")
    parser.add_argument("--app-port", type=int, default=3000, help="where the websocket section serves the app")
    parser.add_argument("--events", default="", help="options for scripts/benchmark_events.py (websocket section), "
                                                     "e.g. --events='--workers 1 --clients 1 10'")
    parser.add_argument("--template", help="copy this database (made by the generator before, on the same "
                                           "server) instead of generating; its leads are counted")
    parser.add_argument("--workers", type=int, help="processes that generate (default: one per CPU)")
    parser.add_argument("--now", type=datetime.fromisoformat,
                        help="the clock the sections run at (ISO 8601 with a zone); default: now when generating, "
                             "else the newest activity of the data")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    # In the order given (the first figures are the first to read on a long run).
    by_name = {f.__name__: f for f in SECTIONS + OPT_IN_SECTIONS}
    sections = [by_name[name] for name in args.sections] if args.sections else list(SECTIONS)
    if args.sections and not args.template:
        server = normalize_url(args.database_url) if args.database_url else embedded_server_url(database=args.database)
        url = make_url(server).set(database=args.database).render_as_string(hide_password=False)
    elif args.template:
        url = copy_of_template(args.database_url, args.template, args.database)
        figure(f"copy of {args.template}", f"{time.perf_counter() - started:.1f} s")
        sections = [f for f in sections if f is not insert_demo_data]
    else:
        url = scratch_database_url(args.database_url, args.database)
    figure("database", make_url(url).render_as_string(hide_password=True))
    engine = make_engine(url)
    leads, now = args.leads, args.now or datetime.now(timezone.utc)
    if args.sections or args.template:
        with engine.connect() as connection:
            leads = connection.execute(text("SELECT count(*) FROM leads")).scalar_one()
            if args.now is None:
                now = connection.execute(text("SELECT max(occurred_at) FROM activities")).scalar_one() or now
    figure("leads", f"{leads:,} at {now.isoformat()}" + (" (sampled sections)" if leads >= SAMPLE_FROM else ""))
    bench = Bench(
        engine=engine,
        now=now,
        leads=leads,
        activities_per_lead=args.activities_per_lead,
        workers=args.workers,
        app_port=args.app_port,
        events_options=args.events,
    )
    try:
        for section in sections:
            print(f"== {section.__name__.replace('_', ' ')}", flush=True)
            section_started = time.perf_counter()
            section(bench)
            figure(f"({section.__name__} took", f"{time.perf_counter() - section_started:.0f} s)")
    finally:
        engine.dispose()
    figure("benchmark wall time", f"{time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
