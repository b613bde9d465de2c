"""Deterministic demo data: a small sales team and a year of its pipeline.

The same seed and `now` always give the same rows. The data tells a believable story with real,
noisy signal in it, so that the pages have something to show and a model trained on it later has
something to find:

- sources differ in volume and in quality: referrals are few and often won, paid search is
  plentiful and rarely won;
- leads walk the funnel over weeks, so older leads are more often closed; one late-stage deal in
  ten has been stuck in its stage for weeks;
- whether a closed deal was won is a logistic function of what a rep could see (pricing and demo
  requests, engagement, company size, source) plus noise;
- replies read more negative on lost and stalled deals;
- a few dozen open leads asked for pricing or a demo in the last hours, so the action queue has
  work in it right now;
- reps keep promises: about a third of the open deals have a next step (a call, an email or a
  meeting), some overdue, some due later today, most planned for the coming days, so the queue's
  Overdue and Due today groups and the board's activity colours show on first start; lost deals
  carry the reason they were lost (cheaper rivals late in the funnel, silence early on);
- reps use sales plays (case studies, demos, pricing calls, ...) whose effect differs by segment:
  case studies move LinkedIn and mid-size leads on early, demos move big companies, pricing calls
  move keen late-stage deals, break-up emails revive stalled proposals, whitepapers do nothing (and
  go to deals that are going nowhere).
  Next best action and segment insights should find exactly that.

Rows go in with PostgreSQL COPY (100,000 leads with a million activities, scored, in under a minute
on two cores), scored and assessed for risk as they are drawn by the app's own engines (the rubric's
and scoring.risk), so they hold exactly what the app's rescoring would store; with another engine
than the rules, the app's rescoring stores the scores after the load.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal, NamedTuple

from faker import Faker
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from crm_app.db.engine import make_engine
from crm_app.domain import CONTACT_KINDS, OPEN_STAGES, ActivityKind, Play, Role, Source, Stage
from crm_app.scoring import ENGAGEMENT_KINDS
from crm_app.scoring.engine import ActivityFact, LeadFacts
from crm_app.scoring.risk import Message, RiskFacts, assess_risk
from crm_app.scoring.rules import RuleBasedScoringEngine
from crm_app.services.notifications import notify_due_follow_ups
from crm_app.services.risk import message_sentiment, reassess_all_risk
from crm_app.services.scoring import engine_config, record_scores_at_close, rescore_all

# The simulation keeps every moment as whole seconds since the epoch: cheap to draw and compare,
# and flooring keeps every drawn moment at or before `now`.
HOUR = 3_600
DAY = 24 * HOUR
YEAR = 365 * DAY

DEFAULT_ACTIVITIES_PER_LEAD = 9.0
UNASSIGNED_SHARE = 0.10  # inbound leads nobody has picked up yet
ENRICHED_SHARE = 0.45  # leads whose custom fields carry the company's industry and country
STALLED_SHARE = 0.10  # late-stage open deals stuck in their stage for weeks
STALLED_AFTER = 20 * DAY


# --- The team -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamMember:
    name: str
    email: str
    role: Role
    # Relative share of the leads routed to this person (reps only): some reps carry more.
    workload: float = 0.0

    @property
    def first_name(self) -> str:
        return self.name.split()[0]


TEAM = (
    TeamMember("Maya Lindqvist", "maya@demo.crm", Role.MANAGER),
    TeamMember("Adam Okafor", "adam@demo.crm", Role.ADMIN),
    TeamMember("Riley Chen", "riley@demo.crm", Role.REP, workload=1.3),
    TeamMember("Sam Novak", "sam@demo.crm", Role.REP, workload=1.2),
    TeamMember("Priya Raman", "priya@demo.crm", Role.REP, workload=1.0),
    TeamMember("Diego Alvarez", "diego@demo.crm", Role.REP, workload=1.0),
    TeamMember("Hannah Weber", "hannah@demo.crm", Role.REP, workload=0.8),
    TeamMember("Tom Brennan", "tom@demo.crm", Role.REP, workload=0.6),
)
REPS = tuple(member for member in TEAM if member.role is Role.REP)
# Every demo account signs in with this password. Demo data only: the README shows it.
DEMO_PASSWORD = "demo-password"
# A demo-only REST API key (README), acting as the manager, so the API can be tried at once.
DEMO_API_KEY = "crm_demo_website_forms_key_demo_only"


# --- Where leads come from and how good they are ---------------------------------------------


@dataclass(frozen=True)
class SourceProfile:
    share: float  # of all leads
    quality: float  # added to a lead's buying intent and to its log-odds of being won


SOURCE_PROFILES = {
    Source.PAID_SEARCH: SourceProfile(share=0.26, quality=-0.9),
    Source.WEBSITE: SourceProfile(share=0.19, quality=-0.1),
    Source.LINKEDIN: SourceProfile(share=0.16, quality=0.0),
    Source.COLD_OUTREACH: SourceProfile(share=0.14, quality=-0.6),
    Source.WEBINAR: SourceProfile(share=0.10, quality=0.3),
    Source.EVENTS: SourceProfile(share=0.08, quality=0.5),
    Source.REFERRAL: SourceProfile(share=0.07, quality=1.4),
}

# Company sizes are log-normal: a median of 36 employees, a long tail up to 5,000.
SIZE_LOG_MEDIAN = math.log(36)
SIZE_LOG_SPREAD = 1.4

INDUSTRIES = {  # industry -> words that end company names in it
    "Software": ("Software", "Labs", "Systems"),
    "Manufacturing": ("Manufacturing", "Industries", "Works"),
    "Healthcare": ("Health", "Medical", "Care"),
    "Financial services": ("Capital", "Financial", "Partners"),
    "Retail": ("Retail", "Stores", "Brands"),
    "Logistics": ("Logistics", "Freight", "Transport"),
    "Education": ("Learning", "Academy", "Education"),
    "Professional services": ("Consulting", "Advisory", "Associates"),
    "Real estate": ("Properties", "Realty", "Estates"),
    "Media": ("Media", "Studios", "Publishing"),
}
COUNTRIES = {
    "United States": 45,
    "United Kingdom": 12,
    "Germany": 10,
    "Canada": 8,
    "France": 6,
    "Netherlands": 5,
    "Australia": 5,
    "Sweden": 3,
    "Spain": 3,
    "India": 3,
}
COMPANY_SUFFIXES = ("Inc", "LLC", "Group", "PLC", "Ltd", "& Co")
DOMAIN_NOISE = frozenset({"and", "inc", "llc", "ltd", "plc", "co", "group"})  # left out of domains
TITLES = {
    "Head of Sales": 8,
    "VP of Sales": 6,
    "Sales Director": 6,
    "Sales Operations Manager": 5,
    "Revenue Operations Lead": 4,
    "Chief Revenue Officer": 2,
    "CEO": 4,
    "Founder": 4,
    "COO": 2,
    "Marketing Director": 5,
    "Head of Growth": 3,
    "Operations Manager": 5,
    "IT Director": 3,
    "CTO": 2,
    "Procurement Manager": 3,
    "Business Development Manager": 5,
    "Customer Success Manager": 3,
}


# --- How deals move ---------------------------------------------------------------------------

# Median days a deal spends in each open stage before it moves on (log-normally spread).
MEDIAN_DAYS_IN_STAGE = {
    Stage.NEW: 2,
    Stage.CONTACTED: 6,
    Stage.QUALIFIED: 7,
    Stage.MEETING: 9,
    Stage.PROPOSAL: 10,
    Stage.NEGOTIATION: 12,
}
LATE_STAGES = (Stage.MEETING, Stage.PROPOSAL, Stage.NEGOTIATION)
# Log-odds that an open deal moves on from each stage (plus half its buying intent): most leads
# stop early, so the funnel narrows.
ADVANCE_LOG_ODDS = {
    Stage.NEW: 1.2,
    Stage.CONTACTED: 0.5,
    Stage.QUALIFIED: 0.3,
    Stage.MEETING: 0.2,
    Stage.PROPOSAL: -0.3,
}

# How a deal is going, which colours what people write about it.
Outlook = Literal["open", "stalled", "won", "lost"]


# --- What happens to a lead -------------------------------------------------------------------

REP_KINDS = frozenset({ActivityKind.CALL, ActivityKind.EMAIL_SENT, ActivityKind.NOTE, ActivityKind.MEETING})

# The everyday mix. Pricing and demo requests and meetings are drawn on their own because they
# carry the signal.
PROSPECT_MIX = {
    ActivityKind.EMAIL_OPENED: 40,
    ActivityKind.PAGE_VISIT: 22,
    ActivityKind.EMAIL_CLICKED: 14,
    ActivityKind.EMAIL_RECEIVED: 10,
    ActivityKind.PRICING_PAGE_VISIT: 6,
    ActivityKind.FORM_SUBMISSION: 5,
}
REP_MIX = {ActivityKind.EMAIL_SENT: 45, ActivityKind.CALL: 35, ActivityKind.NOTE: 20}
FIRST_TOUCH_KINDS = (ActivityKind.CALL, ActivityKind.EMAIL_SENT)
HOT_REQUEST_KINDS = (ActivityKind.PRICING_REQUEST, ActivityKind.DEMO_REQUEST)

# What reps write and prospects answer. {first}: the lead's first name, {company}: the lead's
# company, {rep}: the owner's first name.
OUTREACH_EMAILS = (
    (
        "Quick question about {company}",
        "Hi {first}, I noticed {company} is growing its sales team. "
        "Would a 20-minute call next week be useful?",
    ),
    (
        "Following up",
        "Hi {first}, just following up on my last note. "
        "Happy to share how similar teams cut their response time in half.",
    ),
    (
        "Your pricing overview",
        "Hi {first}, attached is the pricing overview for a team your size. "
        "Let me know what questions come up.",
    ),
    (
        "Next steps",
        "Hi {first}, thanks for your time today. As promised, here is a summary and the proposed next steps.",
    ),
    (
        "Proposal for {company}",
        "Hi {first}, please find our proposal attached. I'm around all week if you want to walk through it.",
    ),
    (
        "Checking in",
        "Hi {first}, checking in to see whether this is still a priority for {company} this quarter.",
    ),
)
REPLIES = {
    "positive": (
        ("Re: Proposal for {company}", "Thanks, this looks great, can we talk pricing?"),
        ("Re: Next steps", "Great call today. The team is excited; can you send over the contract?"),
        (
            "Re: Quick question about {company}",
            "Yes, perfect timing, we were just looking for something like this. Does Thursday work?",
        ),
        ("Re: Following up", "Thanks {rep}, we'd love a demo for the wider team. Can we set one up?"),
    ),
    "neutral": (
        ("Re: Following up", "Thanks for the info. I'll share it with my manager and get back to you."),
        (
            "Re: Quick question about {company}",
            "Can you send a one-pager? We're reviewing options next month.",
        ),
        ("Re: Your pricing overview", "Got it, thanks. Do you offer annual billing?"),
        ("Automatic reply", "I'm out of the office until Monday with limited access to email."),
    ),
    "negative": (
        ("Re: Proposal for {company}", "We've decided to go with another vendor. Thanks for your time."),
        (
            "Re: Checking in",
            "Budget frozen until next year, unfortunately. Please don't follow up before then.",
        ),
        ("Re: Following up", "This isn't a priority for us right now. Please take me off your list."),
        ("Re: Next steps", "Honestly the price is too high for us. We can't justify it this year."),
    ),
}
NOTES = {
    "positive": (
        ("Champion on board", "{first} is pushing internally at {company}; decision expected this month."),
        ("Good call", "Strong fit. They want to roll out to the whole team after a pilot."),
    ),
    "neutral": (
        ("Voicemail", "Left a voicemail for {first}. Will try again Thursday."),
        ("Discovery notes", "{company} runs on spreadsheets today; two people involved in the decision."),
    ),
    "negative": (
        ("Stalled", "Procurement stalled; no reply to the last three emails."),
        ("Competitor", "{first} says they are evaluating a cheaper competitor."),
    ),
}
CALL_SUBJECTS = ("Discovery call", "Follow-up call", "Left a voicemail", "Pricing questions")
MEETING_SUBJECTS = ("Intro meeting", "Product demo", "Pricing review", "Kick-off with the wider team")
TONES = ("positive", "neutral", "negative")
TONE_ODDS: dict[Outlook, tuple[int, int, int]] = {  # positive, neutral, negative
    "open": (35, 50, 15),
    "stalled": (10, 45, 45),
    "won": (55, 40, 5),
    "lost": (15, 40, 45),
}
LOST_LAST_REPLY_NEGATIVE = 0.75  # a lost deal's last reply usually says why


# Sales plays: how often a rep uses each one in a stay, and how much it truly helps (0: not at
# all). The effects are what the next best action and segment insights should find again.
PLAY_BASE_RATE = 0.05
PLAY_WINDOW = 45 * DAY  # as scoring.next_action.MOVE_WINDOW_DAYS: "moved forward" within it
MID_SIZE = range(51, 1001)


def _play_effect(play: Play, lead: _PlayFeatures, stage: Stage, stay_days: float) -> float:
    early = stage in (Stage.CONTACTED, Stage.QUALIFIED)
    if play is Play.CASE_STUDY:
        return 0.9 if early and (lead.linkedin or lead.mid_size) else 0.0
    if play is Play.DEMO:
        return 0.8 if stage in (Stage.QUALIFIED, Stage.MEETING) and lead.over_200 else 0.0
    if play is Play.PRICING_CALL:
        return 0.8 if stage in LATE_STAGES and lead.keen else 0.0
    if play is Play.NURTURE_SEQUENCE:
        return 0.6 if stage is Stage.CONTACTED and lead.cool else 0.0
    if play is Play.BREAKUP_EMAIL:
        return 0.9 if stage in (Stage.PROPOSAL, Stage.NEGOTIATION) and stay_days > 14 else 0.0
    # Whitepapers move nobody, and reps reach for them when a deal is going nowhere: leads that
    # got one moved on less often (what a naive look at the history would wrongly credit).
    return -0.5


class _PlayFeatures(NamedTuple):
    """What the plays' effects depend on in a lead."""

    linkedin: bool  # came through LinkedIn
    mid_size: bool  # company size in MID_SIZE
    over_200: bool  # more than 200 employees
    keen: bool  # intent above 0.3
    cool: bool  # paid search, website or cold outreach

    @classmethod
    def of(cls, lead: _Lead) -> _PlayFeatures:
        cool = lead.source in (Source.PAID_SEARCH, Source.WEBSITE, Source.COLD_OUTREACH)
        size = lead.company.size
        return cls(lead.source is Source.LINKEDIN, size in MID_SIZE, size > 200, lead.intent > 0.3, cool)


_PLAYS = tuple(Play)


@functools.lru_cache(maxsize=None)
def _play_effects(stage: Stage, lead: _PlayFeatures, stuck: bool) -> tuple[float, ...]:
    """The effect of every play (in _PLAYS order) in a stay of this stage, `stuck` in it for more
    than 14 days: worked out once per combination (a few hundred; a chunk asks ~340,000 times)."""
    return tuple(_play_effect(play, lead, stage, 15.0 if stuck else 14.0) for play in _PLAYS)


# What a tagged activity says: fixed words, so tagging draws nothing from the main generator.
PLAY_WORDS = {
    (Play.CASE_STUDY, ActivityKind.EMAIL_SENT): (
        "How a team like {company}'s halved its response time",
        "Hi {first}, here is a short case study from a team much like yours. Worth a look before we talk.",
    ),
    (Play.CASE_STUDY, ActivityKind.PAGE_VISIT): ("Read the case study", None),
    (Play.WHITEPAPER, ActivityKind.EMAIL_SENT): (
        "Whitepaper: the state of sales follow-up",
        "Hi {first}, our new whitepaper on follow-up times might be useful for {company}.",
    ),
    (Play.WHITEPAPER, ActivityKind.PAGE_VISIT): ("Read the whitepaper", None),
    (Play.PRICING_CALL, ActivityKind.CALL): ("Pricing call", "Walked {first} through pricing for their team size."),
    (Play.DEMO, ActivityKind.MEETING): ("Product demo", "Live demo for {first} and the team at {company}."),
    (Play.NURTURE_SEQUENCE, ActivityKind.EMAIL_SENT): (
        "Three ways to answer leads faster",
        "Hi {first}, the first of a few short notes on getting back to leads faster.",
    ),
    (Play.BREAKUP_EMAIL, ActivityKind.EMAIL_SENT): (
        "Should I close your file?",
        "Hi {first}, I haven't heard back, so I'll assume the timing isn't right. "
        "Should I close your file, or is this still a priority for {company}?",
    ),
}


# --- Public API ---------------------------------------------------------------------------------


class DemoDataError(RuntimeError):
    """The database is not in a state demo data can go into."""


@dataclass(frozen=True)
class DemoSummary:
    users: int
    leads: int
    activities: int
    stage_changes: int
    elapsed_seconds: float
    # The parts of `elapsed_seconds`: drawing the data and storing it (COPY) — both in the worker
    # processes, so these two are summed over workers and may exceed their wall-clock time — and
    # everything after the load (wall clock): scoring, indexes, risk, vacuum.
    simulate_seconds: float
    insert_seconds: float
    score_seconds: float
    # Wall-clock time of the load (drawing + COPY in `workers` processes), and of the steps after it.
    load_seconds: float = 0.0
    workers: int = 1
    chunks: int = 1
    steps: tuple[tuple[str, float], ...] = ()
    # Of insert_seconds (summed over workers): scoring the leads and assessing their risk as drawn.
    assess_seconds: float = 0.0


# Leads are drawn and stored in chunks of this many, each from a generator seeded by the seed and
# the chunk's number: fixed, so the data depends on the seed alone, not on how many processes drew
# it. A demo of up to this size is one chunk drawn from the seed itself.
CHUNK_LEADS = 25_000
# Working memory for building the indexes after the load (the server's default, 64 MB, makes a
# 10-million-row index build spill to disk).
INDEX_BUILD_MEMORY = "512MB"


def generate_demo_data(
    engine: Engine,
    *,
    leads: int = 3000,
    seed: int = 42,
    now: datetime,
    activities_per_lead: float | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
    chunk_leads: int = CHUNK_LEADS,
) -> DemoSummary:
    """Fill an empty, migrated database with a demo sales team and a year of its pipeline.

    The same `seed` and `now` always produce the same rows. `activities_per_lead` is the average
    number of activities per lead (default 9). `progress` receives short messages as the work goes
    on. Commits; every lead is scored by the team's engine and assessed for risk.

    More than CHUNK_LEADS leads are drawn and stored in `workers` processes at once (default: one
    per CPU), each with its own COPY streams; the rows are the same for any number of workers (but
    not for another `chunk_leads`, which only tests change).

    Raises DemoDataError when the database already has leads.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    if leads < 1:
        raise ValueError(f"leads must be at least 1, got {leads}")
    say = progress or (lambda message: None)
    started = time.perf_counter()
    _refuse_unless_empty(engine)
    plan = _chunk_plan(leads, chunk_leads)
    workers = max(1, min(len(plan), workers or os.cpu_count() or 1))
    clock = int(now.timestamp())
    job = _LoadJob(
        url=engine.url.render_as_string(hide_password=False),
        seed=seed,
        now=clock,
        activities_per_lead=activities_per_lead or DEFAULT_ACTIVITIES_PER_LEAD,
        user_ids={},
    )

    deferred = _begin_load(engine, job, now)
    try:
        say(f"Drawing and storing {leads:,} leads in {len(plan)} chunk(s), {workers} process(es)")
        if workers > 1:
            engine.dispose()  # no pooled connection may be shared with the forked workers
        loaded = _load_chunks(job, plan, workers, say)
    except BaseException:
        _restore_after_failed_load(engine, deferred)
        raise
    load_done = time.perf_counter()
    steps = [("draw + COPY", load_done - started)]
    steps += _finish_load(engine, now, leads, deferred, say, workers, scored_in_draw=job.score_at is not None)
    finished = time.perf_counter()
    summary = DemoSummary(
        users=len(TEAM),
        leads=leads,
        activities=loaded.activities,
        stage_changes=loaded.stage_changes,
        elapsed_seconds=finished - started,
        simulate_seconds=loaded.simulate_seconds,
        insert_seconds=loaded.insert_seconds,
        score_seconds=finished - load_done,
        load_seconds=load_done - started,
        workers=workers,
        chunks=len(plan),
        steps=tuple(steps),
        assess_seconds=loaded.assess_seconds,
    )
    say(f"Done in {summary.elapsed_seconds:.1f} s")
    return summary


@dataclass
class _Deferred:
    """What the bulk load takes out and puts back afterwards: index definitions and the statements
    that add the foreign keys again."""

    indexes: list[str]
    foreign_keys: list[str]


def _begin_load(engine: Engine, job: _LoadJob, now: datetime) -> _Deferred:
    """Make the empty tables ready for the bulk load: the team in, the secondary indexes, foreign
    keys and the row triggers of _LOAD_TRIGGERS out (committed, so that the workers' connections load
    without them). When the team's engine is the rules, the job says so (`score_at`, with the stages'
    limits): the workers then score each lead and assess its risk as they draw it. Returns what was
    taken out."""
    with engine.begin() as connection:
        cursor = connection.connection.cursor()
        # Indexes are built once after the load, far faster than kept up row by row through COPY and
        # the first scoring (each scored lead would add an entry to every index of the table).
        deferred = _Deferred(
            indexes=_drop_secondary_indexes(cursor, ("leads", "activities", "stage_changes")),
            foreign_keys=_drop_foreign_keys(cursor, _LOADED_TABLES),
        )
        job.user_ids.update(_insert_team(cursor, joined_at=job.now - YEAR - 30 * DAY))
        for table, trigger in _LOAD_TRIGGERS:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        with Session(bind=connection) as session:
            if engine_config(session).effective == "rules":
                job.score_at = now.astimezone(timezone.utc)
                cursor.execute("SELECT stage, stagnation_days FROM stage_rules")
                job.stage_limits = dict(cursor.fetchall())
    return deferred


def _finish_load(engine: Engine, now: datetime, leads: int, deferred: _Deferred,
                 say: Callable[[str], None], workers: int | None = None,
                 scored_in_draw: bool = False) -> list[tuple[str, float]]:
    """After the bulk load: triggers and sequences back, statistics, risk and scores (unless the
    workers stored them with the rows, `scored_in_draw`), indexes, the bell and a vacuum, each split
    across `workers` connections where it splits. Returns how long each step took."""
    workers = max(1, workers or os.cpu_count() or 1)
    steps: list[tuple[str, float]] = []
    moment = time.perf_counter()

    def step(label: str) -> None:
        nonlocal moment
        steps.append((label, time.perf_counter() - moment))
        say(f"{label}: {steps[-1][1]:.1f} s")
        moment = time.perf_counter()

    try:
        with engine.begin() as connection:
            cursor = connection.connection.cursor()
            for table, trigger in _LOAD_TRIGGERS:
                cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")
            # Ids were given explicitly, so the sequences must be moved past them.
            for table in ("leads", "stage_changes", "activities", "follow_ups"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
            # Planner statistics for what was just loaded: without them the scoring below plans its
            # per-range queries blind (parallel sequential scans of the whole table).
            cursor.execute("ANALYZE users, leads, stage_changes, activities, follow_ups")
        step("analyze")
        if not scored_in_draw:
            # Risk before the indexes: it rewrites most open deals. Set-based in the database
            # (services/risk_sql.py), its ranges on several connections at once.
            say("Assessing risk")
            with Session(engine) as session:
                reassess_all_risk(session, now)
            step("assess risk")
        say("Building indexes")
        # The activities' indexes first: they are the biggest, so the connections finish together.
        ordered = sorted(deferred.indexes, key=lambda definition: " ON public.activities " not in definition)
        _in_threads([lambda definition: _build_index(engine, definition)] * len(ordered),
                    [(definition,) for definition in ordered], workers)
        deferred.indexes = []
        step("build indexes")
        # Each foreign key checks every row at once (one join), in one transaction: two at a time
        # would wait on each other's lock of the table they both refer to.
        with engine.begin() as connection:
            for statement in deferred.foreign_keys:
                connection.execute(text(statement))
        deferred.foreign_keys = []
        step("check foreign keys")
    except BaseException:
        _restore_after_failed_load(engine, deferred)
        raise

    with Session(engine) as session:
        if not scored_in_draw:
            rescore_all(session, now, progress=lambda done: say(f"Scored {done:,} of {leads:,} leads"))
            record_scores_at_close(session)
            step("score (engine)")
        # Scoring a year of history at once "turned Hot" and "went At risk" hundreds of deals: that is
        # the seeding, not news. The bell starts with the requests of the last hours and the
        # follow-ups that fell due.
        session.execute(text("DELETE FROM notifications WHERE kind NOT IN ('pricing_request', 'demo_request')"))
        session.commit()
        notify_due_follow_ups(session, now)
        step("notifications")
    # Rescoring rewrote every lead, and bulk-loaded tables have no planner statistics yet: without
    # them the ranked lists may not use their indexes until autovacuum comes round. The vacuum also
    # marks the loaded pages all-visible, for index-only scans.
    tables = ("activities", "stage_changes", "leads", "users", "follow_ups")
    _in_threads([lambda table: _vacuum(engine, table)] * len(tables), [(table,) for table in tables], workers)
    step("vacuum + analyze")
    return steps


def _in_threads(calls: list[Callable], args: list[tuple], workers: int | None = None) -> None:
    """Run calls[i](*args[i]) on `workers` threads (default: one each); the first error is raised."""
    if len(calls) == 1:
        calls[0](*args[0])
        return
    with ThreadPoolExecutor(max_workers=workers or len(calls)) as pool:
        for future in [pool.submit(call, *arguments) for call, arguments in zip(calls, args)]:
            future.result()


def _build_index(engine: Engine, definition: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'"))
        connection.execute(text(definition))


def _vacuum(engine: Engine, table: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"VACUUM (ANALYZE) {table}"))


@dataclass(frozen=True)
class _Chunk:
    index: int
    first: int  # the number (id) of its first lead
    count: int
    hot: int  # its share of the open leads that asked for pricing or a demo in the last hours
    sour: int  # its share of the deals that got a "no" in the last days


def _chunk_plan(leads: int, chunk_leads: int = CHUNK_LEADS) -> list[_Chunk]:
    counts = [min(chunk_leads, leads - first) for first in range(0, leads, chunk_leads)]
    hot, sour = _shares(_hot_share(leads), counts), _shares(_sour_share(leads), counts)
    return [_Chunk(index, index * chunk_leads + 1, count, hot[index], sour[index])
            for index, count in enumerate(counts)]


def _shares(total: int, counts: list[int]) -> list[int]:
    """`total` split across chunks in proportion to their sizes (largest remainders first)."""
    exact = [total * count / sum(counts) for count in counts]
    shares = [int(x) for x in exact]
    for index in sorted(range(len(counts)), key=lambda i: shares[i] - exact[i])[: total - sum(shares)]:
        shares[index] += 1
    return shares


def _chunk_seed(seed: int, chunk: int) -> int:
    """The seed of a chunk's generators: the seed itself for the first chunk (so a small demo is
    what it always was), a hash of seed and chunk for the others."""
    if chunk == 0:
        return seed
    return int.from_bytes(hashlib.blake2b(f"{seed}/{chunk}".encode(), digest_size=8).digest(), "big")


@dataclass
class _LoadJob:
    url: str
    seed: int
    now: int
    activities_per_lead: float
    user_ids: dict[str, int]
    # When the team's engine is the rules: the moment (`now` exactly, to the microsecond) the workers
    # score each lead and assess its risk at, as they draw it; None: the database does it after the load.
    score_at: datetime | None = None
    stage_limits: dict[str, int | None] = field(default_factory=dict)  # stage_rules: days a stage may last


@dataclass(frozen=True)
class _Loaded:
    stage_changes: int = 0
    activities: int = 0
    simulate_seconds: float = 0.0
    insert_seconds: float = 0.0
    assess_seconds: float = 0.0  # scoring and risk in the draw (part of insert_seconds)

    def __add__(self, other: _Loaded) -> _Loaded:
        return _Loaded(self.stage_changes + other.stage_changes, self.activities + other.activities,
                       self.simulate_seconds + other.simulate_seconds, self.insert_seconds + other.insert_seconds,
                       self.assess_seconds + other.assess_seconds)


# The tables whose ids a chunk gives its rows, following on from the chunks before it: stage changes,
# activities, follow-ups.
_NUMBERED = 3


def _load_chunks(job: _LoadJob, plan: list[_Chunk], workers: int, say: Callable[[str], None]) -> _Loaded:
    """Draw and COPY every chunk, in this process or in `workers` forked ones. A chunk's stage-change,
    activity and follow-up ids follow on from the chunks before it, so a chunk learns its first ids once
    every earlier chunk has been drawn (they are drawn in order, so it never waits for long)."""
    total = _Loaded()
    if workers == 1:
        taken = [0] * _NUMBERED

        def offsets(counts: tuple[int, ...]) -> tuple[int, ...]:
            before = tuple(taken)
            taken[:] = [a + b for a, b in zip(taken, counts)]
            return before

        for chunk in plan:
            total += _load_chunk(job, chunk, offsets)
            say(f"Stored {chunk.first + chunk.count - 1:,} leads")
        return total
    counts = multiprocessing.get_context("fork").Array("q", [-1] * (_NUMBERED * len(plan)), lock=False)
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_init_worker, initargs=(counts,)) as pool:
        for loaded in pool.imap(_load_chunk_in_worker, [(job, chunk) for chunk in plan]):
            total += loaded
            say(f"Stored {total.activities:,} activities")
    return total


_counts_by_chunk = None  # the shared array of (stage changes, activities, follow-ups) per chunk, in a worker


def _init_worker(counts) -> None:
    global _counts_by_chunk
    _counts_by_chunk = counts


def _load_chunk_in_worker(args: tuple[_LoadJob, _Chunk]) -> _Loaded:
    job, chunk = args
    counts = _counts_by_chunk

    def offsets(mine: tuple[int, ...]) -> tuple[int, ...]:
        counts[_NUMBERED * chunk.index:_NUMBERED * (chunk.index + 1)] = mine
        while any(counts[_NUMBERED * i] < 0 for i in range(chunk.index)):
            time.sleep(0.05)
        return tuple(sum(counts[_NUMBERED * i + k] for i in range(chunk.index)) for k in range(_NUMBERED))

    return _load_chunk(job, chunk, offsets)


def _load_chunk(job: _LoadJob, chunk: _Chunk, offsets: Callable[[tuple[int, ...]], tuple[int, ...]]) -> _Loaded:
    """Draw one chunk of leads and COPY it, each table in a transaction of its own.

    The tables' statement triggers keep the rollups (analytics, segments, companies, stage history)
    by upserting their rows, which stay locked until the transaction commits. Chunks share those rows
    (the same companies, days and owners), so with one transaction per chunk each worker's leads waited
    for the other's whole chunk, activities included, to commit (300,000 leads on 2 workers: 59 s in
    the companies' trigger, 4.3 s on 1 worker). A chunk need not be atomic: a load that fails is
    truncated as a whole (`_restore_after_failed_load`)."""
    started = time.perf_counter()
    assessed = 0.0
    seed = _chunk_seed(job.seed, chunk.index)
    simulation = _Simulation(seed, job.now, job.activities_per_lead, chunk=chunk.index)
    simulated = simulation.run(chunk.count, chunk.first, chunk.hot, chunk.sour)
    stage_changes = sum(len(lead.history) for lead in simulated)
    activities = sum(len(lead.activities) for lead in simulated)
    # Drawn from a generator of their own, so the other rows stay what they were for this seed;
    # both before the leads' COPY, so that each lost deal's reason is in its row from the start.
    backbone = random.Random(seed * 7919 + 14)
    follow_ups = list(_follow_up_rows(simulated, job.user_ids, backbone, now=job.now))
    lost_reasons = _lost_reasons(simulated, backbone)
    first_change, first_activity, first_follow_up = offsets((stage_changes, activities, len(follow_ups)))
    simulated_at = time.perf_counter()
    engine = make_engine(job.url, poolclass=NullPool)
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        if job.score_at is None:
            lead_columns, derived = _LEAD_COLUMNS, None
            activity_rows = _activity_rows(simulated, job.user_ids, simulation.rng, first_id=first_activity + 1)
        else:
            # Scored and assessed as drawn. Risk reads the tone of the replies and notes, which their
            # texts give: the activities' rows are written first (the same draws in the same order),
            # keeping each tone, and held until their COPY (~50 MB for a chunk of 25,000 leads).
            tones: dict[int, list[tuple[int, ActivityKind, float | None]]] = defaultdict(list)
            activity_rows = list(_activity_rows(simulated, job.user_ids, simulation.rng,
                                                first_id=first_activity + 1, tones=tones))
            assessing = time.perf_counter()
            lead_columns = _LEAD_COLUMNS + _DERIVED_COLUMNS
            derived = _derived_fields(simulated, tones, job.score_at, job.stage_limits)
            assessed = time.perf_counter() - assessing
        _copy(cursor, "leads", lead_columns, _lead_rows(simulated, job.user_ids, lost_reasons, derived))
        connection.commit()
        _copy(cursor, "stage_changes", _STAGE_CHANGE_COLUMNS,
              _stage_change_rows(simulated, job.user_ids, first_id=first_change + 1))
        connection.commit()
        _copy(cursor, "activities", _ACTIVITY_COLUMNS, activity_rows)
        cursor.execute(_NOTIFY_REQUESTS, {"first": first_activity + 1, "last": first_activity + activities})
        connection.commit()
        _copy(cursor, "follow_ups", _FOLLOW_UP_COLUMNS,
              (_line((first_follow_up + number, *row)) for number, row in enumerate(follow_ups, 1)))
        connection.commit()
    finally:
        connection.close()
        engine.dispose()
    finished = time.perf_counter()
    return _Loaded(stage_changes, activities, simulated_at - started, finished - simulated_at, assessed)


def _restore_after_failed_load(engine: Engine, deferred: _Deferred) -> None:
    """Leave the database as empty as it was, with its indexes, foreign keys and triggers, after a
    failed load."""
    with engine.begin() as connection:
        # follow_ups by name: its foreign keys, which would cascade the truncation to it, may be out.
        connection.execute(
            text("TRUNCATE users, leads, activities, stage_changes, follow_ups RESTART IDENTITY CASCADE")
        )
        for table, trigger in _LOAD_TRIGGERS:
            connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}"))
        for definition in deferred.indexes:
            connection.execute(text(re.sub(r"^CREATE (UNIQUE )?INDEX ", r"CREATE \1INDEX IF NOT EXISTS ", definition)))
        for statement in deferred.foreign_keys:
            connection.execute(text(statement))


def reset_demo_data(engine: Engine) -> None:
    """Delete every user, lead, activity and stage change (and rows that refer to them), and
    restart their ids at 1."""
    with engine.begin() as connection:
        connection.execute(
            text("TRUNCATE users, leads, activities, stage_changes RESTART IDENTITY CASCADE")
        )


def _refuse_unless_empty(engine: Engine) -> None:
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM leads")).scalar_one()
    if count:
        raise DemoDataError(
            f"The database already has {count:,} leads; demo data only goes into an empty "
            f"database. Reset it first (reset_demo_data) or point at another database."
        )


# --- The simulation -----------------------------------------------------------------------------


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@functools.lru_cache(maxsize=4096)  # names come from pools of a few hundred
def _slug(word: str) -> str:
    return re.sub(r"[^a-z]", "", word.lower())


@dataclass(frozen=True)
class _Odds:
    """Options with relative weights, drawn quickly (the cumulative weights are summed once)."""

    options: tuple
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, weights: dict) -> _Odds:
        return cls(tuple(weights), tuple(itertools.accumulate(weights.values())))

    def draw(self, rng: random.Random, k: int = 1) -> list:
        return rng.choices(self.options, cum_weights=self.cumulative, k=k)

    def one(self, rng: random.Random):
        # Exactly the draw rng.choices(options, cum_weights=cumulative)[0] makes (one random()
        # bisected into the cumulative weights), without its per-call checks: drawn ~10 times a lead.
        at = bisect.bisect(self.cumulative, rng.random() * self.total, 0, len(self.cumulative) - 1)
        return self.options[at]

    @property
    def total(self) -> float:
        return self.cumulative[-1] + 0.0


_SOURCE_ODDS = _Odds.of({source: profile.share for source, profile in SOURCE_PROFILES.items()})
_REP_ODDS = _Odds.of({rep: rep.workload for rep in REPS})
_TITLE_ODDS = _Odds.of(TITLES)
_COUNTRY_ODDS = _Odds.of(COUNTRIES)
_PROSPECT_MIX_ODDS = _Odds.of(PROSPECT_MIX)
_REP_MIX_ODDS = _Odds.of(REP_MIX)
_TONE_ODDS = {outlook: _Odds.of(dict(zip(TONES, odds))) for outlook, odds in TONE_ODDS.items()}


@dataclass(frozen=True, slots=True)
class _Company:
    name: str
    domain: str
    size: int
    industry: str
    country: str

    @property
    def size_z(self) -> float:
        """How big the company is on a standard scale: 0 is median, +1 one spread above."""
        return (math.log(self.size) - SIZE_LOG_MEDIAN) / SIZE_LOG_SPREAD


@dataclass(slots=True, eq=False)
class _Lead:
    """One simulated lead: stage history and activities in time order, moments in epoch seconds."""

    number: int  # 1, 2, ...: also its id, since leads only go into an empty table
    name: str
    email: str
    phone: str
    title: str
    company: _Company
    source: Source
    owner: TeamMember | None
    created_at: int
    intent: float  # latent buying intent: drives engagement and, through it, the outcome
    closes: bool
    deal_value: int
    enriched: bool
    activity_weight: float
    history: list[tuple[Stage | None, Stage, int]] = field(default_factory=list)
    # (moment, kind, play value or "" when untagged)
    activities: list[tuple[int, ActivityKind, str]] = field(default_factory=list)
    outlook: Outlook = "open"
    # Moments of replies that must read negative (a deal turning sour this week; see _turn_sour).
    sour_replies: set[int] = field(default_factory=set)

    @property
    def stage(self) -> Stage:
        return self.history[-1][1]

    @property
    def stage_entered_at(self) -> int:
        return self.history[-1][2]

    @property
    def closed_at(self) -> int | None:
        stage, entered = self.history[-1][1], self.history[-1][2]
        return entered if stage in _CLOSED else None

    def entered(self, stage: Stage) -> int | None:
        return next((moment for _, to, moment in self.history if to is stage), None)

    def last(self, kinds: Collection[ActivityKind]) -> int | None:
        # The activities are kept in time order: the latest of the kinds is the last one found.
        for moment, kind, _ in reversed(self.activities):
            if kind in kinds:
                return moment
        return None


def _hot_share(leads: int) -> int:
    """How many open leads of a demo of this size asked for pricing or a demo in the last hours."""
    return max(12, min(60, leads // 100))


def _sour_share(leads: int) -> int:
    """How many open deals of a demo of this size got a "no" in the last days."""
    return max(6, min(40, leads // 150))


def _rescale(history: list, new_last: int) -> list:
    """The same history stretched or squeezed in time so that its last change is at `new_last`."""
    first, last = history[0][2], history[-1][2]
    if last == first:
        return history
    ratio = (new_last - first) / (last - first)
    return [(before, after, first + int((moment - first) * ratio)) for before, after, moment in history]


class _Simulation:
    """Draws the whole pipeline from one seeded random generator, always in the same order."""

    def __init__(self, seed: int, now: int, activities_per_lead: float, chunk: int = 0) -> None:
        self.rng = random.Random(seed)
        self.chunk = chunk
        # Plays are drawn from a generator of their own, after everything else: the rest of the
        # data is the same with or without them.
        self.play_rng = random.Random(seed + 0x9BA)
        self.now = now
        self.activities_per_lead = activities_per_lead
        fake = Faker("en_US")
        fake.seed_instance(seed)
        # Pools of names drawn once: Faker is too slow to call per row at 100,000 leads.
        self.first_names = [fake.first_name() for _ in range(400)]
        self.last_names = [fake.last_name() for _ in range(800)]

    def run(self, count: int, first: int = 1, hot: int | None = None, sour: int | None = None) -> list[_Lead]:
        """`count` leads numbered from `first`, of which `hot` asked for pricing or a demo in the last
        hours and `sour` got a fresh "no" (by default the shares of a demo of `count` leads)."""
        # About four contacts per company, as in a real B2B pipeline.
        companies = [self._company() for _ in range(max(20, count // 4))]
        leads = [self._arrive(number, companies) for number in range(first, first + count)]
        # Scale the activity counts so they average what was asked, whatever the mix of leads.
        per_weight = self.activities_per_lead * count / sum(lead.activity_weight for lead in leads)
        for lead in leads:
            self._unfold(lead, per_weight)
        self._heat_up(leads, _hot_share(count) if hot is None else hot)
        self._turn_sour(leads, _sour_share(count) if sour is None else sour)
        for lead in leads:
            self._add_plays(lead)
        return leads

    def _company(self) -> _Company:
        rng = self.rng
        industry = rng.choice(list(INDUSTRIES))
        a, b, c = rng.sample(self.last_names, 3)
        pattern = rng.random()
        if pattern < 0.35:
            name = f"{a} {rng.choice(COMPANY_SUFFIXES)}"
        elif pattern < 0.6:
            name = f"{a}-{b}"
        elif pattern < 0.75:
            name = f"{a}, {b} and {c}"
        else:
            name = f"{a} {rng.choice(INDUSTRIES[industry])}"
        words = [w for w in re.findall(r"[a-z0-9]+", name.lower()) if w not in DOMAIN_NOISE]
        size = min(5000, max(1, int(rng.lognormvariate(SIZE_LOG_MEDIAN, SIZE_LOG_SPREAD))))
        country = _COUNTRY_ODDS.one(rng)
        return _Company(name, "-".join(words) + ".example", size, industry, country)

    def _arrive(self, number: int, companies: list[_Company]) -> _Lead:
        """Who the lead is, where it came from and when: everything decided before any selling."""
        rng = self.rng
        company = rng.choice(companies)
        source = _SOURCE_ODDS.one(rng)
        intent = SOURCE_PROFILES[source].quality + 0.35 * company.size_z + rng.gauss(0, 1)
        # A growing business: somewhat more leads in recent months. Every lead is at least ten
        # minutes old.
        created_at = self.now - 600 - int((YEAR - 600) * rng.random() ** 1.15)
        age_days = (self.now - created_at) / DAY
        owner = None if rng.random() < UNASSIGNED_SHARE else _REP_ODDS.one(rng)
        # Deals take weeks: the older a lead, the likelier it is closed by now; few leads older than
        # eight months are still open (a working team closes out the ones that went cold).
        closes = owner is not None and rng.random() < min(0.9, 0.47 * age_days / 120)
        first = rng.choice(self.first_names)
        last = rng.choice(self.last_names)
        # Bigger companies buy bigger deals.
        value = math.exp(rng.gauss(math.log(9000) + 0.45 * company.size_z, 0.6))
        # Fewer activities for young leads and for those nobody works on.
        weight = math.exp(0.4 * intent) * min(1.0, (age_days + 1) / 30) ** 0.5
        if owner is None:
            weight *= 0.5
        return _Lead(
            number=number,
            name=f"{first} {last}",
            # The number keeps emails unique however many leads share a name and a company.
            email=f"{_slug(first)}.{_slug(last)}{number}@{company.domain}",
            phone=f"+1 {rng.randint(201, 989)}-555-01{rng.randint(0, 99):02d}",
            title=_TITLE_ODDS.one(rng),
            company=company,
            source=source,
            owner=owner,
            created_at=created_at,
            intent=intent,
            closes=closes,
            deal_value=int(min(150_000, max(2_000, value)) // 100 * 100),
            enriched=rng.random() < ENRICHED_SHARE,
            activity_weight=weight,
        )

    def _unfold(self, lead: _Lead, per_weight: float) -> None:
        """What happened to the lead: activities, stage history and, when closed, the outcome."""
        rng = self.rng
        wanted = per_weight * lead.activity_weight * rng.lognormvariate(-0.08, 0.4)
        count = max(1, int(wanted + rng.random()))  # rounded at random so the mean stays right
        if lead.closes:
            # Every closed deal was worked by a rep, and its outcome follows from what happened.
            prospect, rep = self._draw_kinds(count, lead, contacted=True)
            won = self._wins(lead, prospect)
            lead.history = self._closed_history(lead, won)
            lead.outlook = "won" if won else "lost"
        else:
            lead.history = self._open_history(lead)
            prospect, rep = self._draw_kinds(count, lead, contacted=len(lead.history) > 1)
            if lead.stage in LATE_STAGES and self.now - lead.stage_entered_at >= STALLED_AFTER:
                lead.outlook = "stalled"
        lead.activities = self._schedule(lead, prospect, rep)

    def _draw_kinds(self, count: int, lead: _Lead, *, contacted: bool) -> tuple[list, list]:
        """The kinds of the lead's activities: (the prospect's, the rep's)."""
        rng = self.rng
        prospect = []
        if rng.random() < _sigmoid(-1.6 + 0.9 * lead.intent):
            prospect.append(ActivityKind.PRICING_REQUEST)
        if rng.random() < _sigmoid(-1.9 + 0.8 * lead.intent):
            prospect.append(ActivityKind.DEMO_REQUEST)
        rest = max(0, count - len(prospect))
        # Keen prospects do more of the talking; a lead nobody contacted has only its own doings.
        prospect_share = _sigmoid(0.3 + 0.6 * lead.intent) if contacted else 1.0
        by_prospect = sum(rng.random() < prospect_share for _ in range(rest))
        prospect += _PROSPECT_MIX_ODDS.draw(rng, by_prospect)
        return prospect, _REP_MIX_ODDS.draw(rng, rest - by_prospect)

    def _wins(self, lead: _Lead, prospect_kinds: list[ActivityKind]) -> bool:
        """Whether a closed deal was won: a logistic function of what a rep could see, plus noise,
        so a model can learn it from the data but not perfectly."""
        log_odds = (
            -1.4
            + SOURCE_PROFILES[lead.source].quality
            + 1.2 * (ActivityKind.PRICING_REQUEST in prospect_kinds)
            + 0.8 * (ActivityKind.DEMO_REQUEST in prospect_kinds)
            + 0.12 * (min(len(prospect_kinds), 15) - 5)
            + 0.35 * lead.company.size_z
            + self.rng.gauss(0, 0.8)
        )
        return self.rng.random() < _sigmoid(log_odds)

    def _dwell(self, stage: Stage) -> int:
        return int(MEDIAN_DAYS_IN_STAGE[stage] * DAY * self.rng.lognormvariate(0, 0.7))

    def _closed_history(self, lead: _Lead, won: bool) -> list:
        """NULL -> new -> ... -> won or lost. Won deals went all the way; lost ones dropped out
        anywhere after being contacted, keener prospects later."""
        rng = self.rng
        depth = len(OPEN_STAGES) - 1
        if not won:
            depth = 1
            while depth < len(OPEN_STAGES) - 1 and rng.random() < _sigmoid(0.5 + 0.5 * lead.intent):
                depth += 1
        history = [(None, Stage.NEW, lead.created_at)]
        moment = lead.created_at
        for before, after in zip(OPEN_STAGES, OPEN_STAGES[1 : depth + 1]):
            moment += self._dwell(before)
            history.append((before, after, moment))
        moment += self._dwell(OPEN_STAGES[depth])
        history.append((OPEN_STAGES[depth], Stage.WON if won else Stage.LOST, moment))
        if moment >= self.now - HOUR:
            # Drawn to close in the future: squeeze it so it closed a while ago.
            span = self.now - lead.created_at
            history = _rescale(history, lead.created_at + int(span * rng.uniform(0.5, 0.95)))
        return history

    def _open_history(self, lead: _Lead) -> list:
        """NULL -> new -> ... as far as the lead has got by now."""
        rng = self.rng
        history = [(None, Stage.NEW, lead.created_at)]
        if lead.owner is None:
            return history  # nobody has picked it up yet
        moment = lead.created_at
        for before, after in zip(OPEN_STAGES, OPEN_STAGES[1:]):
            if rng.random() >= _sigmoid(ADVANCE_LOG_ODDS[before] + 0.5 * lead.intent):
                break
            moment += self._dwell(before)
            if moment >= self.now:
                break
            history.append((before, after, moment))
        if len(history) == 1 and self.now - lead.created_at > 5 * DAY:
            # A rep contacts an owned lead within days of its arrival.
            history.append((Stage.NEW, Stage.CONTACTED, lead.created_at + int(DAY * rng.uniform(0.2, 4))))
        if len(history) > 1:
            # A deal that is still open is live: it entered its stage in the last two weeks,
            # unless it is one of the stalled ones, stuck there for weeks.
            days_ago = rng.uniform(20, 60) if rng.random() < STALLED_SHARE else rng.uniform(0, 14)
            entered = self.now - int(days_ago * DAY)
            if entered > lead.created_at:
                history = _rescale(history, entered)
        return history

    def _schedule(self, lead: _Lead, prospect: list, rep: list) -> list[tuple[int, ActivityKind]]:
        """When each activity happened: within the lead's life, rep work only once contacted,
        meetings once the meeting stage was reached; in time order."""
        rng = self.rng
        start = lead.created_at
        end = lead.closed_at or self.now
        if lead.outlook == "stalled":
            end = min(self.now, lead.stage_entered_at + int(DAY * rng.uniform(1, 10)))  # gone quiet
        # A prospect's interest is keenest when they arrive and fades after (squared: front-loaded).
        activities = [(start + int((end - start) * rng.random() ** 2), kind, "") for kind in prospect]
        contacted_at = lead.entered(Stage.CONTACTED)
        if rep and contacted_at is not None:
            # The first touch is what moved the lead to contacted.
            activities.append((contacted_at, rng.choice(FIRST_TOUCH_KINDS), ""))
            activities += [
                (contacted_at + int((end - contacted_at) * rng.random()), kind, "") for kind in rep[1:]
            ]
        meeting_at = lead.entered(Stage.MEETING)
        if meeting_at is not None:
            # Usually one or two meetings; now and then the "meeting" was only a call.
            meetings = (rng.random() < 0.85) + (rng.random() < 0.45) + (rng.random() < 0.15)
            activities += [
                (meeting_at + int((end - meeting_at) * rng.random()), ActivityKind.MEETING, "")
                for _ in range(meetings)
            ]
        activities.sort()
        return activities

    def _heat_up(self, leads: list[_Lead], wanted: int) -> None:
        """A few dozen open leads asked for pricing or a demo in the last hours: the reps' work
        right now."""
        rng = self.rng
        candidates = [lead for lead in leads if lead.outlook == "open"]
        count = min(len(candidates), wanted)
        for lead in rng.sample(candidates, count):
            asked_at = max(lead.created_at, self.now - rng.randint(10 * 60, 6 * HOUR))
            looked_at = max(lead.created_at, asked_at - rng.randint(60, HOUR))
            requests = rng.sample(HOT_REQUEST_KINDS, rng.choice((1, 2)))
            lead.activities.append((looked_at, ActivityKind.PRICING_PAGE_VISIT, ""))
            lead.activities += [
                (min(self.now, asked_at + i * rng.randint(60, 1800)), kind, "")
                for i, kind in enumerate(requests)
            ]
            lead.activities.sort()


    def _add_plays(self, lead: _Lead) -> None:
        """Tag the rep's outreach in each stay with sales plays, planting their true effects.

        How often a play was used in a stay depends on whether the stay moved forward and on the
        play's effect for this lead and stage (PLAY_EFFECTS): P(used | moved) = base x (1 + e),
        P(used | not moved) = base x (1 - e), so the leads that got a helpful play moved forward
        more often, by about as much as e says. Stays still going on get plays at the base rate.
        A prospect often reads the content of a case study or whitepaper after it is sent."""
        if lead.owner is None or len(lead.history) < 2:
            return
        rng = self.play_rng
        features = _PlayFeatures.of(lead)
        end_of_life = lead.closed_at or self.now
        if lead.sour_replies:
            # Nobody has answered that "no" yet (_turn_sour): no outreach after it.
            end_of_life = min(end_of_life, min(lead.sour_replies))
        added = []
        for index in range(1, len(lead.history)):
            _, stage, entered = lead.history[index]
            if stage in _CLOSED:
                continue
            following = lead.history[index + 1] if index + 1 < len(lead.history) else None
            left = following[2] if following else None
            moved = None
            if following is not None:
                forward = following[1] is Stage.WON or (
                    following[1] not in _CLOSED and _OPEN_INDEX[following[1]] > _OPEN_INDEX[stage])
                moved = forward and left - entered <= PLAY_WINDOW
            until = min(left if left is not None else self.now, end_of_life)
            if until - entered < HOUR:
                continue
            for play, effect in zip(_PLAYS, _play_effects(stage, features, until - entered > 14 * DAY)):
                if moved is None:
                    odds = PLAY_BASE_RATE
                elif moved:
                    odds = PLAY_BASE_RATE * (1 + effect)
                else:
                    odds = PLAY_BASE_RATE * (1 - effect)
                if rng.random() >= odds:
                    continue
                # Before the move it helped; a break-up email only once the deal has gone quiet.
                low, high = (0.5, 0.9) if play is Play.BREAKUP_EMAIL else (0.05, 0.8)
                at = entered + int((until - entered) * rng.uniform(low, high))
                added.append((at, play.kinds[0], play.value))
                if play.is_content:
                    reads = (rng.random() < 0.75) + (rng.random() < 0.45)
                    for _ in range(reads):
                        read_at = min(until - 1, at + int(rng.uniform(0.1, 3) * DAY))
                        added.append((read_at, ActivityKind.PAGE_VISIT, play.value))
        if added:
            lead.activities = sorted(lead.activities + added)

    def _turn_sour(self, leads: list[_Lead], wanted: int) -> None:
        """A few open deals got a "no" in the last days that nobody has answered yet: the deals at
        risk the reps should save now. Drawn from a generator of their own, so adding them
        changes none of the other draws."""
        rng = random.Random(self.now if self.chunk == 0 else f"{self.now}/{self.chunk}")
        candidates = [
            lead for lead in leads
            if lead.outlook == "open" and lead.owner is not None
            and lead.stage in (Stage.QUALIFIED, Stage.MEETING, Stage.PROPOSAL, Stage.NEGOTIATION)
        ]
        rng.shuffle(candidates)
        for lead in candidates:
            if wanted == 0:
                break
            replied_at = self.now - int(DAY * rng.uniform(1.2, 4))
            last_contact = lead.last(CONTACT_KINDS)
            if replied_at <= lead.created_at or (last_contact is not None and last_contact >= replied_at):
                continue  # contacted since: that "no" would already have an answer
            lead.activities.append((replied_at, ActivityKind.EMAIL_RECEIVED, ""))
            lead.sour_replies.add(replied_at)
            lead.activities.sort()
            wanted -= 1


# --- Writing rows -------------------------------------------------------------------------------

_LEAD_COLUMNS = (
    "id", "name", "email", "phone", "title", "company", "company_size", "source", "stage",
    "owner_id", "deal_value", "created_at", "updated_at", "stage_entered_at", "closed_at",
    "last_activity_at", "last_contacted_at", "custom_fields", "lost_reason",
)  # fmt: skip
# `owner_id` is the lead's owner (migration 0025): written here with the trigger that sets it off
# for the load (a lookup per row), as the trigger would set it.
_STAGE_CHANGE_COLUMNS = ("id", "lead_id", "from_stage", "to_stage", "changed_at", "user_id", "owner_id",
                         "previous_stage", "days_in_previous_stage")
_ACTIVITY_COLUMNS = (
    "id", "lead_id", "kind", "occurred_at", "user_id", "subject", "body", "created_at", "sentiment", "play",
    "owner_id",
)
# Row triggers off while loading, (table, trigger). The owner triggers look the lead up per row; the
# rows carry their owner already. The request trigger runs for every activity to notify the owner of
# the few recent pricing and demo requests (a second of a chunk's COPY): each chunk notifies them in
# one statement instead (_NOTIFY_REQUESTS).
_LOAD_TRIGGERS = (
    ("activities", "activities_owner_from_lead"),
    ("stage_changes", "stage_changes_owner_from_lead"),
    ("activities", "activities_notify_request"),
)
# What crm_notify_request (migration 0023) does for each inserted activity, for a range of them in id
# order: the owner hears of a pricing or demo request of the last day that someone else logged.
_NOTIFY_REQUESTS = """
    SELECT public.crm_notify_user(r.owner_id, r.lead_id, r.kind, r.words)
      FROM (SELECT l.owner_id, a.lead_id, a.kind,
                   l.name || coalesce(' (' || nullif(l.company, '') || ')', '')
                   || CASE a.kind WHEN 'pricing_request' THEN ' asked for pricing'
                                  ELSE ' asked for a demo' END AS words
              FROM activities a JOIN leads l ON l.id = a.lead_id
             WHERE a.id BETWEEN %(first)s AND %(last)s AND a.kind IN ('pricing_request', 'demo_request')
               AND a.occurred_at > now() - interval '1 day'
               AND l.owner_id IS NOT NULL AND a.user_id IS DISTINCT FROM l.owner_id
             ORDER BY a.id OFFSET 0) r
"""


_FOLLOW_UP_COLUMNS = ("id", "lead_id", "owner_id", "due_at", "note", "created_at", "kind")
FOLLOW_UP_SHARE = 0.35  # open, owned deals with a next step
_NEXT_STEPS = {
    "call": ("Walk through the pricing for the larger team", "Check in after their board meeting",
             "Confirm who signs off on the budget", "Answer the security questions"),
    "email": ("Send the case study they asked about", "Send the revised proposal",
              "Share the onboarding plan", "Recap the call and the next steps"),
    "meeting": ("Demo for the wider team", "Procurement review", "Kick-off planning"),
}
# Why lost deals were lost, by how far they got: early ones go quiet, late ones lose on price or to
# a rival (the default list of migration 0023).
_LOST_EARLY = {"Went silent": 5, "Not a fit": 3, "No budget": 2, "Bad timing": 2}
_LOST_LATE = {"Price too high": 5, "Chose a competitor": 4, "No budget": 2, "Bad timing": 1, "Went silent": 1}


def _follow_up_rows(leads: list[_Lead], user_ids: dict[str, int], rng: random.Random, *, now: int) -> Iterator[tuple]:
    """A next step for about a third of the open, owned deals: one in six overdue, one in six due later
    today, the rest in the coming two weeks during working hours."""
    end_of_day = (now // DAY + 1) * DAY
    for lead in leads:
        if lead.stage.is_closed or lead.owner is None or rng.random() >= FOLLOW_UP_SHARE:
            continue
        kind = rng.choices(list(_NEXT_STEPS), weights=(5, 4, 2))[0]
        roll = rng.random()
        if roll < 1 / 6:
            due = now - rng.randint(2 * HOUR, 4 * DAY)
        elif roll < 2 / 6:
            due = now + max(60, int((end_of_day - now) * rng.uniform(0.15, 0.9)))
        else:
            day = now // DAY + rng.randint(1, 14)
            due = day * DAY + rng.randint(8, 16) * HOUR + rng.choice((0, 30)) * 60
        created = min(now, max(lead.stage_entered_at, due - 7 * DAY))
        yield (lead.number, user_ids[lead.owner.email], _timestamp(due), rng.choice(_NEXT_STEPS[kind]),
               _timestamp(created), kind)


def _lost_reasons(leads: list[_Lead], rng: random.Random) -> dict[int, str]:
    """Why each lost deal was lost, by lead number (more often price or timing late in the funnel)."""
    reasons = {}
    for lead in leads:
        if lead.stage is not Stage.LOST:
            continue
        before = lead.history[-1][0]
        late = before is not None and OPEN_STAGES.index(before) >= OPEN_STAGES.index(Stage.MEETING)
        odds = _LOST_LATE if late else _LOST_EARLY
        reasons[lead.number] = rng.choices(list(odds), weights=list(odds.values()))[0]
    return reasons


def _timestamp(moment: int | None) -> str | None:
    """ISO 8601 in UTC, as datetime.isoformat() writes it, from a cached date and a cached time of day
    (the load writes tens of millions of moments: a datetime per moment was a third of the row cost,
    and formatting the time of day each time another sixth)."""
    if moment is None:
        return None
    day, second = divmod(moment, DAY)
    date = _DATE_OF_DAY.get(day)
    if date is None:
        date = _DATE_OF_DAY[day] = datetime.fromtimestamp(day * DAY, timezone.utc).date().isoformat()
    clock = _TIME_OF_SECOND.get(second)
    if clock is None:
        clock = f"T{second // HOUR:02d}:{second // 60 % 60:02d}:{second % 60:02d}+00:00"
        _TIME_OF_SECOND[second] = clock
    return date + clock


_DATE_OF_DAY: dict[int, str] = {}  # a day since the epoch -> "2026-12-03"
_TIME_OF_SECOND: dict[int, str] = {}  # a second of the day -> "T17:05:00+00:00" (at most 86,400 of them)


def _insert_team(cursor, *, joined_at: int) -> dict[str, int]:
    """The team's user ids by email; members already there (from an earlier run) are kept."""
    from crm_app.services.accounts import hash_password

    # One (salted, deliberately slow) hash for the shared demo password, not one per member.
    password_hash = hash_password(DEMO_PASSWORD)
    for member in TEAM:
        cursor.execute(
            "INSERT INTO users (email, name, role, is_active, created_at, password_hash) "
            "VALUES (%s, %s, %s, TRUE, %s, %s) ON CONFLICT ((lower(email))) DO NOTHING",
            (member.email, member.name, member.role.value, _timestamp(joined_at), password_hash),
        )
    cursor.execute(
        "SELECT lower(email), id FROM users WHERE lower(email) = ANY(%s)", ([m.email for m in TEAM],)
    )
    user_ids = dict(cursor.fetchall())
    _insert_demo_key(cursor, user_ids, joined_at=joined_at)
    return user_ids


def _insert_demo_key(cursor, user_ids: dict[str, int], *, joined_at: int) -> None:
    from crm_app.services.api_keys import SHOWN_PREFIX, secret_hash

    manager = next(m for m in TEAM if m.role is Role.MANAGER)
    cursor.execute(
        "INSERT INTO api_keys (name, prefix, secret_hash, scope, user_id, created_at, rate_per_minute) "
        "VALUES (%s, %s, %s, 'write', %s, %s, 600) ON CONFLICT (secret_hash) DO NOTHING",
        ("Website forms (demo)", DEMO_API_KEY[:SHOWN_PREFIX], secret_hash(DEMO_API_KEY),
         user_ids[manager.email.lower()], _timestamp(joined_at)),
    )


def _owner_id(lead: _Lead, user_ids: dict[str, int]) -> int | None:
    return user_ids[lead.owner.email] if lead.owner else None


# Rows go to COPY in its text format, each line written by one f-string: through csv.writer, with
# a tuple per row, the formatting cost as much as drawing the data. In the text format a field
# needs escaping only where it holds a backslash, tab, newline or carriage return; NULL is \N.
_NULL = "\\N"
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _field(value: str | None) -> str:
    """A text value as a field of COPY's text format."""
    if value is None:
        return _NULL
    return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value


def _line(row: Sequence) -> str:
    """Any row as a line of COPY's text format (for the small tables; the big ones write theirs inline)."""
    return "\t".join(_NULL if value is None else _field(str(value)) for value in row) + "\n"


def _lead_rows(leads: list[_Lead], user_ids: dict[str, int], lost_reasons: dict[int, str],
               derived: dict[int, str] | None = None) -> Iterator[str]:
    """The leads' rows; with `derived` (by lead number, _DERIVED_COLUMNS), scored and assessed.
    Without, score, tier and reasons keep their defaults (0, cold, none) until rescoring fills them in."""
    for lead in leads:
        # The same definition log_activity keeps: the last engagement the rubric counts.
        last_activity_at = lead.last(ENGAGEMENT_KINDS)
        company = lead.company
        custom_fields = {"industry": company.industry, "country": company.country} if lead.enriched else {}
        owner_id = _owner_id(lead, user_ids)
        stage, entered = lead.history[-1][1], lead.history[-1][2]
        yield (
            f"{lead.number}\t{_field(lead.name)}\t{_field(lead.email)}\t{_field(lead.phone)}\t"
            f"{_field(lead.title)}\t{_field(company.name)}\t{company.size}\t{lead.source}\t{stage}\t"
            f"{_NULL if owner_id is None else owner_id}\t{lead.deal_value}\t{_timestamp(lead.created_at)}\t"
            f"{_timestamp(max(entered, lead.activities[-1][0]))}\t{_timestamp(entered)}\t"
            f"{_timestamp(entered) if stage in _CLOSED else _NULL}\t{_timestamp(last_activity_at) or _NULL}\t"
            f"{_timestamp(lead.last(CONTACT_KINDS)) or _NULL}\t{_field(json.dumps(custom_fields))}\t"
            f"{_field(lost_reasons.get(lead.number))}{derived[lead.number] if derived else ''}\n"
        )


# What the rubric and the risk rules store on a lead: filled in by the workers when the team's engine
# is the rules (_derived_fields), after the columns above. hot_since follows from tier and scored_at
# (the row trigger leads_keep_hot_since, as when a rescore made the lead Hot).
_DERIVED_COLUMNS = (
    "score", "tier", "score_reasons", "scored_at", "score_valid_until", "score_at_close",
    "risk_level", "risk_points", "risk_reasons", "risk_at", "risk_valid_until", "last_reply_at",
    "last_reply_sentiment",
)
_RULES = RuleBasedScoringEngine()
_NO_RISK = f"\t{_NULL}\t{_NULL}\t[]\t{_NULL}\t{_NULL}\t{_NULL}\t{_NULL}"  # a closed deal's


def _derived_fields(leads: list[_Lead], tones: dict[int, list[tuple[int, ActivityKind, float | None]]],
                    at: datetime, stage_limits: dict[str, int | None]) -> dict[int, str]:
    """Each lead's score at `at` (the rubric's engine), a closed deal's score at its close (from what
    was known then) and an open deal's risk at `at` (scoring.risk), as the fields of _DERIVED_COLUMNS
    that end its row, by lead number. These are the values the database's passes wrote into the leads
    stored cold and unscored (rescore_rules_where, record_rules_scores_at_close, reassess_all_risk:
    the rubric and risk in SQL, tested equal to these engines): at 1M leads those passes took 88 s + 60 s
    of 645 s on a quiet machine, this ~0.11 ms of Python a lead. Their traces that meant nothing are
    not reproduced (ids used up by the "turned Hot" notifications deleted as seeding, all-zero Cold
    rows in the analytics rollup). `tones`: each lead's replies and notes (moment, kind, sentiment) in
    order, as stored."""
    at_text = at.isoformat()
    fields = {}
    for lead in leads:
        # In id order: of two activities at the same instant the later-written counts as the later,
        # as the SQL reads them.
        facts = tuple(ActivityFact(kind, _aware(moment)) for moment, kind, _ in lead.activities)
        known = LeadFacts(company_size=lead.company.size, activities=facts)
        scored = _RULES.score(known, at)
        closed_at = lead.closed_at
        row = (f"\t{scored.score}\t{scored.tier.value}\t{_field(json.dumps([r.as_dict() for r in scored.reasons]))}"
               f"\t{at_text}\t{_iso(scored.valid_until)}\t")
        if closed_at is not None:
            fields[lead.number] = row + f"{_RULES.score(known, _aware(closed_at)).score}{_NO_RISK}"
            continue
        messages = tuple(Message(kind, _aware(moment), sentiment) for moment, kind, sentiment in tones[lead.number])
        risk = assess_risk(RiskFacts(stage=lead.stage, stage_entered_at=_aware(lead.stage_entered_at),
                                     created_at=_aware(lead.created_at),
                                     stage_limit_days=stage_limits.get(lead.stage.value),
                                     activities=facts, messages=messages), at)
        sentiment = risk.last_reply_sentiment
        fields[lead.number] = row + (
            f"{_NULL}\t{risk.level.value}\t{risk.points}\t{_field(json.dumps([r.as_dict() for r in risk.reasons]))}"
            f"\t{at_text}\t{_iso(risk.valid_until)}\t{_iso(risk.last_reply_at)}\t{_NULL if sentiment is None else sentiment}"
        )
    return fields


def _aware(moment: int) -> datetime:
    return datetime.fromtimestamp(moment, timezone.utc)


def _iso(moment: datetime | None) -> str:
    return _NULL if moment is None else moment.isoformat()


def _stage_change_rows(leads: list[_Lead], user_ids: dict[str, int], first_id: int = 1) -> Iterator[str]:
    change_id = first_id
    for lead in leads:
        owner_id = _owner_id(lead, user_ids)
        owner = _NULL if owner_id is None else str(owner_id)
        # Each change carries the stay it ended (the stage before and the days spent in it), as the
        # history trigger (crm_analytics_history) would write them: it then has no row to correct,
        # where it used to rewrite every stage change of the chunk a second time.
        stays = sorted((moment, index, after) for index, (_, after, moment) in enumerate(lead.history))
        stay_of = {}
        for (entered, _, stage), (left, index, _) in zip(stays, stays[1:]):
            stay_of[index] = f"{stage}\t{_days_in_stage(left - entered)}"
        for index, (before, after, moment) in enumerate(lead.history):
            stay = stay_of.get(index, _NO_STAY)
            # The lead's arrival was recorded by an integration, every later move by its owner.
            moved_by, before = (_NULL, _NULL) if before is None else (owner, before)
            yield (f"{change_id}\t{lead.number}\t{before}\t{after}\t{_timestamp(moment)}\t{moved_by}\t"
                   f"{owner}\t{stay}\n")
            change_id += 1


_NO_STAY = f"{_NULL}\t{_NULL}"


def _days_in_stage(seconds: int) -> str:
    """`seconds` in days as the history trigger stores them: PostgreSQL's
    `extract(epoch FROM interval) / 86400.0`, a numeric whose scale follows numeric division's rule
    (at least 16 significant digits; select_div_scale), rounded half up. Equal text, not only an equal
    value, so that the rows are what the trigger would have written (checked against the server for
    240,000 spans from 0 s to 30 years)."""
    # The weight (position) and value of the dividend's leading base-10,000 digit; 0 and 0 for zero.
    weight = (len(str(seconds)) - 1) // 4
    first = seconds // 10_000**weight
    # The divisor 86400.0 has weight 1 and leading digit 8.
    scale = max(16 - 4 * (weight - 1 - (first <= 8)), 6)
    quotient, remainder = divmod(seconds * 10**scale, DAY)
    quotient += 2 * remainder >= DAY
    whole, fraction = divmod(quotient, 10**scale)
    return f"{whole}.{fraction:0{scale}d}"


_MESSAGE_KIND_SET = frozenset({ActivityKind.EMAIL_RECEIVED, ActivityKind.NOTE})  # risk.MESSAGE_KINDS


def _activity_rows(leads: list[_Lead], user_ids: dict[str, int], rng: random.Random,
                   first_id: int = 1, tones: dict[int, list] | None = None) -> Iterator[str]:
    """The activities' rows; `tones`, when given, receives each lead's replies and notes as (moment,
    kind, sentiment), in order."""
    activity_id = first_id
    email_sent, email_received, note = ActivityKind.EMAIL_SENT, ActivityKind.EMAIL_RECEIVED, ActivityKind.NOTE
    call, meeting = ActivityKind.CALL, ActivityKind.MEETING
    for lead in leads:
        owner_id = _owner_id(lead, user_ids)
        owner = _NULL if owner_id is None else str(owner_id)
        number = lead.number
        names = {
            "first": lead.name.split()[0],
            "company": lead.company.name,
            "rep": lead.owner.first_name if lead.owner else "team",
        }
        who = (lead.name, lead.company.name)
        tone_odds = _TONE_ODDS[lead.outlook]
        last_reply = None
        if lead.outlook == "lost":
            replies = [i for i, (_, k, _) in enumerate(lead.activities) if k is email_received]
            last_reply = replies[-1] if replies else None
        for index, (moment, kind, play) in enumerate(lead.activities):
            subject = body = None
            if play:
                # Fixed words, no draw: the other rows' random choices stay as they were.
                subject, body = PLAY_WORDS[(_PLAY_OF[play], kind)]
            elif kind is email_sent:
                subject, body = rng.choice(OUTREACH_EMAILS)
            elif kind is email_received or kind is note:
                if kind is email_received and moment in lead.sour_replies:
                    tone = "negative"
                elif index == last_reply and rng.random() < LOST_LAST_REPLY_NEGATIVE:
                    tone = "negative"
                else:
                    tone = tone_odds.one(rng)
                subject, body = rng.choice((REPLIES if kind is email_received else NOTES)[tone])
            elif kind is call:
                subject = rng.choice(CALL_SUBJECTS)
            elif kind is meeting:
                subject = rng.choice(MEETING_SUBJECTS)
            occurred_at = _timestamp(moment)
            if body:
                body = body.format(**names)
            # As log_activity stores it: a tone for a reply or note, none for anything else.
            sentiment = None
            if kind in _MESSAGE_KIND_SET:
                sentiment = message_sentiment(kind, body, who)
                if tones is not None:
                    tones[number].append((moment, kind, sentiment))
            yield (
                f"{activity_id}\t{number}\t{kind}\t{occurred_at}\t{owner if kind in REP_KINDS else _NULL}\t"
                f"{_NULL if subject is None else _field(subject.format(**names))}\t{_field(body)}\t"
                f"{occurred_at}\t"  # logged as it happened
                f"{_NULL if sentiment is None else sentiment}\t{play or _NULL}\t{owner}\n"
            )
            activity_id += 1


_PLAY_OF = {play.value: play for play in Play}
# Stage.is_closed and OPEN_STAGES.index as lookups: asked hundreds of thousands of times a chunk.
_CLOSED = frozenset(stage for stage in Stage if stage.is_closed)
_OPEN_INDEX = {stage: index for index, stage in enumerate(OPEN_STAGES)}


class _CopyStream:
    """A file-like source of COPY text that writes the next block of lines only when asked, so
    PostgreSQL stores one block while Python writes the next, and no table is held as text."""

    BLOCK_ROWS = 5000

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)

    def read(self, size: int = -1) -> str:
        # COPY passes a size hint; a block of whole lines of any length is fine by it. Empty = done.
        return "".join(itertools.islice(self._lines, self.BLOCK_ROWS))


# Kept while loading: what the scoring in the load reads by (besides primary keys and constraints).
_KEPT_WHILE_LOADING = frozenset({"ix_activities_lead_occurred"})


def _drop_secondary_indexes(cursor, tables: Sequence[str]) -> list[str]:
    """Drop the tables' indexes that back no constraint (inside the caller's transaction) and return
    their definitions, to build them again after a bulk load."""
    cursor.execute(
        """
        SELECT ix.relname, pg_get_indexdef(i.indexrelid)
          FROM pg_index i
          JOIN pg_class t ON t.oid = i.indrelid
          JOIN pg_class ix ON ix.oid = i.indexrelid
          JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = current_schema() AND t.relname = ANY(%s) AND NOT i.indisprimary
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
         ORDER BY ix.relname
        """,
        (list(tables),),
    )
    deferred = [(name, definition) for name, definition in cursor.fetchall()
                if name not in _KEPT_WHILE_LOADING]
    for name, _definition in deferred:
        cursor.execute(f'DROP INDEX "{name}"')
    return [definition for _name, definition in deferred]


# The tables the workers COPY into. Their foreign keys are dropped for the load and checked once
# afterwards: checked row by row, each row also locks the lead or user it names (FOR KEY SHARE), and
# millions of activities locking the same eight users from several workers halved COPY's speed.
_LOADED_TABLES = ("leads", "stage_changes", "activities", "follow_ups")


def _drop_foreign_keys(cursor, tables: Sequence[str]) -> list[str]:
    """Drop the tables' foreign keys (inside the caller's transaction) and return the statements that
    add them again."""
    cursor.execute(
        """
        SELECT t.relname, k.conname, pg_get_constraintdef(k.oid)
          FROM pg_constraint k
          JOIN pg_class t ON t.oid = k.conrelid
          JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = current_schema() AND k.contype = 'f' AND t.relname = ANY(%s)
         ORDER BY t.relname, k.conname
        """,
        (list(tables),),
    )
    dropped = cursor.fetchall()
    for table, name, _definition in dropped:
        cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    return [f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}' for table, name, definition in dropped]


def _copy(cursor, table: str, columns: Sequence[str], lines: Iterable[str]) -> None:
    """Bulk-insert lines of COPY's text format (`_field`, `_line`)."""
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", _CopyStream(lines))
