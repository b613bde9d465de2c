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
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import subprocess
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
from crm_app.domain import Stage  # noqa: E402
from crm_app.services.analytics import analytics_report_concurrently, period_filter  # noqa: E402
from crm_app.services.follow_ups import lead_follow_ups  # noqa: E402
from crm_app.services.forecast import build_forecast, run_backtest, target_warning, weighting  # noqa: E402
from crm_app.services.lead_detail import lead_detail  # noqa: E402
from crm_app.services.lost_reasons import lost_reason_tables  # noqa: E402
from crm_app.services.permissions import CurrentUser  # noqa: E402
from crm_app.services.pipeline import BoardFilter, board_columns  # noqa: E402
from crm_app.services.leads import move_lead_to_stage  # noqa: E402
from crm_app.services.pipeline_health import pipeline_health  # noqa: E402
from crm_app.services.queue import action_queue  # noqa: E402
from crm_app.demo.generator import DemoSummary, generate_demo_data  # noqa: E402
from crm_app.domain import ActivityKind  # noqa: E402
from crm_app.scoring import ActivityFact, LeadFacts, RuleBasedScoringEngine  # noqa: E402
from crm_app.services.errors import ServiceError  # noqa: E402
from crm_app.services.model_training import activate_model, engine_for_model, train_model  # noqa: E402
from crm_app.services.scoring import rescore_all  # noqa: E402
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
SAMPLE_FROM = 300_000
SAMPLE_LEADS = 100_000

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

    @property
    def sampled(self) -> bool:
        return self.leads >= SAMPLE_FROM


def figure(label: str, value: str) -> None:
    print(f"{label}: {value}", flush=True)


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
                                        f"(summed over the workers)")
    for label, seconds in summary.steps[1:]:
        figure(f"  then {label}", f"{seconds:.1f} s")
    figure("after the load (score, risk, indexes, vacuum)", f"{summary.score_seconds:.1f} s")
    figure("total generation time", f"{summary.elapsed_seconds:.1f} s")


def rescoring(bench: Bench) -> None:
    """Full rescoring through the database (the rules score set-based in it, services/rules_sql.py),
    next to the bare engine on the same facts in memory. Three cases: the scores as the generator
    stored them; again with nothing changed (only changed leads are written); and after every lead's
    stored reasons were wiped, so that every lead is written again, as after a change of the rubric."""
    with Session(bench.engine) as session:
        labels = ["rescore_all (database)", "rescore_all, nothing changed (database)"]
        if bench.sampled:
            labels = labels[:1]  # the scores the generator stored are already current: one pass says it
        for label in labels:
            started = time.perf_counter()
            count = rescore_all(session, bench.now)
            seconds = time.perf_counter() - started
            figure(label, f"{count:,} leads in {seconds:.1f} s = {count / seconds:,.0f} leads/s")
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


def _time_calls(label: str, call: Callable[[Session, int, int], object], owners: list[int], bench: Bench, *,
                as_user: Callable[[int], int]) -> None:
    """p50/p95 of `call(session, owner_id, user_id)` over PAGE_RUNS runs across reps, after two
    warm-ups. Each run acts as `as_user(owner_id)` under row-level security, as the page would."""
    rng = random.Random(bench.seed)
    timings = []
    for run in range(PAGE_RUNS + 2):
        owner_id = rng.choice(owners)
        user_id = as_user(owner_id)
        with act_as(Session(bench.engine, expire_on_commit=False), user_id) as session:
            started = time.perf_counter()
            call(session, owner_id, user_id)
            if run >= 2:
                timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    figure(label, f"p50 {percentile(timings, 0.5):.1f} ms, p95 {percentile(timings, 0.95):.1f} ms "
                  f"({len(timings)} runs)")


def pages(bench: Bench) -> None:
    """Server time of what each page's load event runs, for one rep (and the whole team where a
    manager sees it), and the drag-and-drop persist: the database work of each event handler, under
    row-level security as the rep or manager the page would act as."""
    with bench.engine.connect() as connection:
        owners = connection.execute(
            text("SELECT DISTINCT owner_id FROM leads WHERE owner_id IS NOT NULL ORDER BY 1")
        ).scalars().all()
        open_leads = connection.execute(
            text("SELECT id FROM leads WHERE stage NOT IN ('won', 'lost') ORDER BY id LIMIT 500")
        ).scalars().all()
        manager = connection.execute(
            text("SELECT id FROM users WHERE role = 'manager' AND is_active ORDER BY id LIMIT 1")).scalar_one()
    now = bench.now
    for scope, owner, as_user in (("rep", lambda o: o, lambda o: o), ("team", lambda o: None, lambda o: manager)):
        _time_calls(f"dashboard load ({scope})", lambda s, o, u: (
            action_queue(s, owner_id=owner(o), now=now, limit=25),
            pipeline_health(s, owner_id=owner(o), now=now)), owners, bench, as_user=as_user)
        _time_calls(f"leads page load ({scope})",
                    lambda s, o, u: ranked_leads(s, LeadFilter(owner_id=owner(o)), limit=PAGE_SIZE), owners, bench,
                    as_user=as_user)
        _time_calls(f"leads search 'smith' ({scope})",
                    lambda s, o, u: ranked_leads(s, LeadFilter(owner_id=owner(o), search="smith"), limit=PAGE_SIZE),
                    owners, bench, as_user=as_user)
        _time_calls(f"analytics load, all time ({scope})",
                    lambda s, o, u: analytics_report_concurrently(
                        lambda: act_as(Session(bench.engine), u), flt=period_filter("all", now=now, owner_id=owner(o))),
                    owners, bench, as_user=as_user)
    rng = random.Random(bench.seed)
    _time_calls("lead detail load (manager)", lambda s, o, u: lead_detail(s, rng.choice(open_leads), now), owners,
                bench, as_user=lambda o: manager)

    # Drag and drop: the handler's persist (lock, version check, history row, rescore, commit), as a manager.
    stages = [Stage.CONTACTED, Stage.QUALIFIED, Stage.MEETING, Stage.PROPOSAL]
    timings = []
    with act_as(Session(bench.engine, expire_on_commit=False), manager) as session:
        for run, lead_id in enumerate(rng.sample(open_leads, min(len(open_leads), PAGE_RUNS + 2))):
            version, stage = session.execute(
                text("SELECT version, stage FROM leads WHERE id = :id"), {"id": lead_id}).one()
            session.commit()
            # Always a real move (a drop on the card's own stage writes nothing).
            to_stage = next(s for s in stages[run % len(stages):] + stages if s != stage)
            started = time.perf_counter()
            move_lead_to_stage(session, lead_id=lead_id, to_stage=to_stage, now=now, expected_version=version,
                               user_id=manager)
            if run >= 2:
                timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    figure("drag-and-drop persist (move_lead_to_stage)",
           f"p50 {percentile(timings, 0.5):.1f} ms, p95 {percentile(timings, 0.95):.1f} ms ({len(timings)} moves)")


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
        for _ in range(3):
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
    _time_calls("next best actions for 25 queue items",
                lambda s, o: next_actions(s, rng.sample(open_leads, 25), bench.now), owners, bench)
    for scope, owner in (("rep", lambda o: o), ("team", lambda o: None)):
        _time_calls(f"segment insights, all time ({scope})",
                    lambda s, o: segment_insights(s, flt=period_filter("all", now=bench.now, owner_id=owner(o))),
                    owners, bench)


def risk(bench: Bench) -> None:
    """Deal risk through the database: every lead, then a day's sweep; and what storing each
    reply's sentiment at write time saves against scoring the bodies again at every reassessment."""
    from datetime import timedelta

    from crm_app.scoring.sentiment import sentiment_of
    from crm_app.services.risk import reassess_all_risk, reassess_expired_risk

    with Session(bench.engine) as session:
        # From scratch, as after the migration (the generator has assessed every lead already).
        session.execute(text("UPDATE leads SET risk_level = NULL, risk_points = NULL, risk_reasons = '[]', "
                             "risk_valid_until = NULL, last_reply_at = NULL, last_reply_sentiment = NULL"))
        session.commit()
        started = time.perf_counter()
        count = reassess_all_risk(session, bench.now)
        seconds = time.perf_counter() - started
        figure("reassess_all_risk (database)", f"{bench.leads:,} leads in {seconds:.1f} s = "
               f"{bench.leads / seconds:,.0f} leads/s ({count:,} written)")
        started = time.perf_counter()
        count = reassess_all_risk(session, bench.now)
        seconds = time.perf_counter() - started
        figure("reassess_all_risk again (nothing changed)", f"{bench.leads:,} leads in {seconds:.1f} s = "
               f"{bench.leads / seconds:,.0f} leads/s ({count:,} written)")
        levels = dict(session.execute(text(
            "SELECT coalesce(risk_level, 'closed'), count(*) FROM leads GROUP BY 1")).all())
        figure("risk levels", ", ".join(f"{k} {v:,}" for k, v in sorted(levels.items())))
        started = time.perf_counter()
        swept = reassess_expired_risk(session, bench.now + timedelta(days=1))
        figure("sweep a day later (reassess_expired_risk)",
               f"{swept:,} deals in {time.perf_counter() - started:.1f} s")

    with bench.engine.connect() as connection:
        started = time.perf_counter()
        bodies = connection.execute(text(
            "SELECT body FROM activities WHERE kind IN ('email_received', 'note') AND body IS NOT NULL")).scalars().all()
        read = time.perf_counter() - started
    started = time.perf_counter()
    for body in bodies:
        sentiment_of(body)
    scored = time.perf_counter() - started
    figure("re-reading bodies instead (avoided)",
           f"{len(bodies):,} replies and notes: read {read:.1f} s + sentiment {scored:.1f} s "
           f"= {(scored / len(bodies)) * 1e6:,.0f} us each")



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
    """Import of a generated 100,000-row CSV (all rows checked, one transaction, scored), a re-import
    of the same file (matches every row, changes nothing), and CSV export of every lead."""
    import tempfile

    run = f"{int(time.time())}"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "leads.csv"
        started = time.perf_counter()
        _write_import_csv(path, IMPORT_ROWS, run)
        figure("generate CSV", f"{IMPORT_ROWS:,} rows, {path.stat().st_size / 1e6:.1f} MB in "
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
    for label, flt in (("export all leads", LeadFilter()), ("export Hot leads", LeadFilter(tier="hot"))):
        started = time.perf_counter()
        size = rows = 0
        for chunk in stream_leads_csv(bench.engine, flt):
            size += len(chunk)
            rows += chunk.count("\n")
        seconds = time.perf_counter() - started
        figure(label, f"{rows - 1:,} rows, {size / 1e6:.1f} MB in {seconds:.1f} s = {(rows - 1) / seconds:,.0f} rows/s")


def model(bench: Bench) -> None:
    """The predictive score: training on the generated history, then scoring every lead with the model
    (and a blend) through the database path the app uses, next to the model alone in memory.
    Leaves the team on the rules, every lead scored by them again, as the other sections expect."""
    with Session(bench.engine) as session:
        started = time.perf_counter()
        try:
            report = train_model(session, now=bench.now)
        except ServiceError as error:
            figure("model training", f"skipped: {error}")
            return
        seconds = time.perf_counter() - started
        figure("model training", f"{report.rows:,} closed leads in {seconds:.1f} s "
                                 f"(features + fit + evaluation {report.seconds:.1f} s)")
        figure("model vs rules on the holdout", f"ROC-AUC {report.model.roc_auc:.3f} vs {report.rules.roc_auc:.3f} "
                                                f"on {report.holdout_rows:,} closed leads")
        activate_model(session, report.model_id, actor=None)
        for mode in ("model", "blend"):
            set_engine_choice(session, mode=mode, blend_percent="50", now=bench.now, actor=None)
            started = time.perf_counter()
            count = rescore_all(session, bench.now)
            seconds = time.perf_counter() - started
            figure(f"rescore_all with the {mode} (database)",
                   f"{count:,} leads in {seconds:.1f} s = {count / seconds:,.0f} leads/s")
        engine = engine_for_model(session, report.model_id)
        set_engine_choice(session, mode="rules", now=bench.now, actor=None)
        restored = rescore_all(session, bench.now)
    facts = load_all_facts(bench.engine)[:20_000]
    started = time.perf_counter()
    engine.score_many(facts, bench.now)
    batched = time.perf_counter() - started
    sample = facts[:2_000]
    started = time.perf_counter()
    for lead in sample:
        engine.score(lead, bench.now)
    single = time.perf_counter() - started
    figure("model in memory, batched (score_many)", f"{len(facts) / batched:,.0f} leads/s")
    figure("model in memory, one lead at a time", f"{len(sample) / single:,.0f} leads/s")
    figure("rules again", f"{restored:,} leads rescored by the rules")


SECTIONS: list[Callable[[Bench], None]] = [
    insert_demo_data, rescoring, ranked_list, pages, queue, risk, insights, import_export, model,
]


# --- Setting up ---------------------------------------------------------------------------------


def scratch_database_url(server_url: str | None, database: str = DATABASE) -> str:
    """A freshly created, migrated scratch database on the given server (or the embedded one)."""
    url = normalize_url(server_url) if server_url else embedded_server_url(database=database)
    admin_url = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        admin.dispose()
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
    parser.add_argument("--sections", nargs="*", choices=[f.__name__ for f in SECTIONS],
                        help="run only these sections, on the database a full run left")
    args = parser.parse_args(argv)

    if args.sections:
        server = normalize_url(args.database_url) if args.database_url else embedded_server_url(database=args.database)
        url = make_url(server).set(database=args.database).render_as_string(hide_password=False)
    else:
        url = scratch_database_url(args.database_url, args.database)
    figure("database", make_url(url).render_as_string(hide_password=True))
    engine = make_engine(url)
    bench = Bench(
        engine=engine,
        now=datetime.now(timezone.utc),
        leads=args.leads,
        activities_per_lead=args.activities_per_lead,
    )
    try:
        for section in [f for f in SECTIONS if not args.sections or f.__name__ in args.sections]:
            print(f"== {section.__name__.replace('_', ' ')}", flush=True)
            section(bench)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
