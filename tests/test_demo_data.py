"""The demo data: repeatable, complete, consistent with itself, and telling the story the pages and
the models rely on.

The generator commits and bulk-loads with COPY, so it cannot run inside the usual rolled-back
session: this module fills a database of its own once, on the same server, and drops it after.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from crm_app.db.engine import make_engine
from crm_app.demo.generator import (
    REPLIES,
    DemoDataError,
    generate_demo_data,
    reset_demo_data,
)
from crm_app.domain import CONTACT_KINDS, ActivityKind, Role, Source, Stage
from crm_app.scoring import ENGAGEMENT_KINDS, ActivityFact, LeadFacts, RuleBasedScoringEngine
from tests.conftest import scratch_database
from tests.test_import_rollup import _rebuilt, _stored

NOW = datetime(2026, 11, 12, 15, 0, tzinfo=timezone.utc)
LEADS = 1500
SEED = 7
REP_KINDS = {ActivityKind.CALL, ActivityKind.EMAIL_SENT, ActivityKind.NOTE, ActivityKind.MEETING}


@pytest.fixture(scope="module")
def demo_engine(database_url: str) -> Iterator[Engine]:
    """A migrated database of its own, filled once with LEADS demo leads."""
    with scratch_database(database_url, "crm_demo") as url:
        engine = make_engine(url)
        generate_demo_data(engine, leads=LEADS, seed=SEED, now=NOW)
        yield engine
        engine.dispose()


@pytest.fixture
def db(demo_engine: Engine) -> Iterator[Connection]:
    with demo_engine.connect() as connection:
        yield connection


def digest(db: Connection) -> str:
    """One fingerprint of the users, leads (with their scores), stage history and activities."""
    return db.execute(
        text(
            """
            SELECT md5(concat_ws('#',
              (SELECT string_agg(concat_ws('|', id, email, name, role, created_at), ',' ORDER BY id)
                 FROM users),
              (SELECT string_agg(concat_ws('|', id, name, email, phone, title, company, company_size,
                                           source, stage, owner_id, deal_value, created_at,
                                           stage_entered_at, closed_at, last_activity_at,
                                           last_contacted_at, score, tier, score_reasons,
                                           custom_fields), ',' ORDER BY id)
                 FROM leads),
              (SELECT string_agg(concat_ws('|', id, lead_id, from_stage, to_stage, changed_at, user_id),
                                 ',' ORDER BY id)
                 FROM stage_changes),
              (SELECT string_agg(concat_ws('|', id, lead_id, kind, occurred_at, user_id, subject, body),
                                 ',' ORDER BY id)
                 FROM activities)))
            """
        )
    ).scalar_one()


def win_rate(db: Connection, condition: str) -> float:
    won, closed = db.execute(
        text(
            f"SELECT count(*) FILTER (WHERE stage = 'won'), count(*) FROM leads l "
            f"WHERE stage IN ('won', 'lost') AND ({condition})"
        )
    ).one()
    assert closed >= 20, f"too few closed leads where {condition} to compare"
    return won / closed


# --- Repeatable ---------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data(demo_engine: Engine) -> None:
    with demo_engine.connect() as connection:
        first = digest(connection)

    reset_demo_data(demo_engine)
    generate_demo_data(demo_engine, leads=LEADS, seed=SEED + 1, now=NOW)
    with demo_engine.connect() as connection:
        other_seed = digest(connection)

    reset_demo_data(demo_engine)
    generate_demo_data(demo_engine, leads=LEADS, seed=SEED, now=NOW)
    with demo_engine.connect() as connection:
        again = digest(connection)

    assert again == first
    assert other_seed != first


def test_refuses_a_database_that_already_has_leads(demo_engine: Engine) -> None:
    with pytest.raises(DemoDataError, match=f"already has {LEADS:,} leads"):
        generate_demo_data(demo_engine, leads=10, now=NOW)


# --- Complete -----------------------------------------------------------------------------------


def test_the_team_is_a_manager_an_admin_and_reps_at_demo_crm(db: Connection) -> None:
    users = db.execute(text("SELECT email, role, is_active FROM users")).all()
    roles = [role for _, role, _ in users]
    assert roles.count(Role.MANAGER) == 1
    assert roles.count(Role.ADMIN) == 1
    assert roles.count(Role.REP) >= 5
    assert all(email.endswith("@demo.crm") and active for email, _, active in users)


def test_every_stage_and_source_appears_and_some_leads_wait_for_an_owner(db: Connection) -> None:
    stages = dict(db.execute(text("SELECT stage, count(*) FROM leads GROUP BY stage")).all())
    sources = dict(db.execute(text("SELECT source, count(*) FROM leads GROUP BY source")).all())
    unassigned = db.execute(text("SELECT count(*) FROM leads WHERE owner_id IS NULL")).scalar_one()

    assert set(stages) == set(Stage)
    assert set(sources) == set(Source)
    assert sum(stages.values()) == LEADS
    # A funnel: more new leads than in negotiation; about half closed, as a year of work leaves it.
    assert stages[Stage.NEW] > stages[Stage.QUALIFIED] > stages[Stage.NEGOTIATION]
    assert 0.4 < (stages[Stage.WON] + stages[Stage.LOST]) / LEADS < 0.65
    # Paid search brings the most leads, referrals the fewest.
    assert max(sources, key=sources.get) == Source.PAID_SEARCH
    assert min(sources, key=sources.get) == Source.REFERRAL
    assert 0.05 < unassigned / LEADS < 0.15


def test_about_nine_activities_per_lead_and_every_lead_has_some(db: Connection) -> None:
    counts = db.execute(
        text("SELECT count(a.id) FROM leads l LEFT JOIN activities a ON a.lead_id = l.id GROUP BY l.id")
    ).scalars().all()
    assert min(counts) >= 1
    assert 8 <= sum(counts) / len(counts) <= 11


def test_emails_are_lowercase_and_unique_and_leads_look_real(db: Connection) -> None:
    emails = db.execute(text("SELECT email FROM leads")).scalars().all()
    assert len(set(emails)) == len(emails) == LEADS
    assert all(email == email.lower() and "@" in email for email in emails)
    incomplete = db.execute(
        text(
            "SELECT count(*) FROM leads WHERE company IS NULL OR title IS NULL OR phone IS NULL "
            "OR company_size NOT BETWEEN 1 AND 5000 OR deal_value NOT BETWEEN 2000 AND 150000"
        )
    ).scalar_one()
    assert incomplete == 0
    enriched = db.execute(text("SELECT count(*) FROM leads WHERE custom_fields ? 'industry'")).scalar_one()
    assert 0.3 < enriched / LEADS < 0.6


# --- Consistent ---------------------------------------------------------------------------------


def test_stage_history_walks_from_new_to_the_current_stage(db: Connection) -> None:
    history = defaultdict(list)
    for lead_id, before, after, changed_at in db.execute(
        text("SELECT lead_id, from_stage, to_stage, changed_at FROM stage_changes ORDER BY lead_id, id")
    ):
        history[lead_id].append((before, after, changed_at))
    leads = db.execute(text("SELECT id, stage, stage_entered_at, closed_at FROM leads")).all()

    for lead in leads:
        changes = history[lead.id]
        assert changes[0][:2] == (None, Stage.NEW), lead.id
        for (_, reached, earlier), (left, _, later) in zip(changes, changes[1:]):
            assert left == reached and earlier <= later, lead.id
        assert changes[-1][1] == lead.stage, lead.id
        assert changes[-1][2] == lead.stage_entered_at, lead.id
        assert lead.closed_at == (lead.stage_entered_at if Stage(lead.stage).is_closed else None), lead.id


def test_activities_happen_within_the_life_of_their_lead(db: Connection) -> None:
    outside = db.execute(
        text(
            """
            SELECT count(*) FROM activities a JOIN leads l ON l.id = a.lead_id
             WHERE a.occurred_at > :now
                OR a.occurred_at < l.created_at
                OR a.occurred_at > l.closed_at
            """
        ),
        {"now": NOW},
    ).scalar_one()
    assert outside == 0


def test_rep_work_belongs_to_the_owner_and_prospect_doings_to_nobody(db: Connection) -> None:
    rows = db.execute(
        text(
            "SELECT a.kind, a.user_id IS NOT DISTINCT FROM l.owner_id, a.user_id IS NULL "
            "FROM activities a JOIN leads l ON l.id = a.lead_id"
        )
    ).all()
    for kind, by_owner, by_nobody in rows:
        assert by_owner if kind in REP_KINDS else by_nobody, kind


def test_last_activity_and_last_contact_are_the_latest_of_their_kinds(db: Connection) -> None:
    engagement_kinds = [k.value for k in ENGAGEMENT_KINDS]
    mismatches = db.execute(
        text(
            """
            SELECT count(*) FROM leads l
              LEFT JOIN LATERAL (
                SELECT max(occurred_at) FILTER (WHERE kind = ANY(:prospect)) AS last_activity,
                       max(occurred_at) FILTER (WHERE kind = ANY(:contact)) AS last_contact
                  FROM activities WHERE lead_id = l.id) a ON TRUE
             WHERE l.last_activity_at IS DISTINCT FROM a.last_activity
                OR l.last_contacted_at IS DISTINCT FROM a.last_contact
            """
        ),
        {"prospect": engagement_kinds, "contact": [k.value for k in CONTACT_KINDS]},
    ).scalar_one()
    assert mismatches == 0


def test_stored_scores_are_what_the_rubric_gives(db: Connection) -> None:
    leads = db.execute(
        text(
            "SELECT id, company_size, source, custom_fields, score, tier, score_reasons "
            "FROM leads WHERE id % 7 = 0"
        )
    ).all()
    activities = defaultdict(list)
    for lead_id, kind, occurred_at in db.execute(
        text("SELECT lead_id, kind, occurred_at FROM activities WHERE lead_id % 7 = 0")
    ):
        activities[lead_id].append(ActivityFact(ActivityKind(kind), occurred_at))
    engine = RuleBasedScoringEngine()

    for lead in leads:
        facts = LeadFacts(
            company_size=lead.company_size,
            source=lead.source,
            activities=activities[lead.id],
            custom_fields=lead.custom_fields,
        )
        result = engine.score(facts, NOW)
        assert (lead.score, lead.tier) == (result.score, result.tier), lead.id
        assert lead.score_reasons == [reason.as_dict() for reason in result.reasons], lead.id


# --- The story ----------------------------------------------------------------------------------


def test_the_analytics_rollup_and_stage_history_are_what_a_rebuild_from_the_rows_gives(demo_engine: Engine) -> None:
    """The leads go in scored by COPY and the stays with their stage changes: the triggers' rollup,
    stage summaries and stored stays must equal migration 0031's rebuild from the rows alone."""
    with Session(demo_engine) as session:
        stored, rebuilt = _stored(session), _rebuilt(session)
    assert stored["rollup"] and stored["summaries"]
    assert stored == rebuilt


def test_referrals_win_more_often_than_paid_search(db: Connection) -> None:
    assert win_rate(db, "source = 'referral'") > win_rate(db, "source = 'paid_search'") + 0.2


def test_closed_leads_that_asked_for_pricing_win_more_often(db: Connection) -> None:
    asked = "EXISTS (SELECT 1 FROM activities a WHERE a.lead_id = l.id AND a.kind = 'pricing_request')"
    assert win_rate(db, asked) > win_rate(db, f"NOT {asked}") + 0.15


def test_some_open_leads_are_hot_and_active_in_the_last_day(db: Connection) -> None:
    hot_and_recent = db.execute(
        text(
            "SELECT count(*) FROM leads WHERE tier = 'hot' AND stage NOT IN ('won', 'lost') "
            "AND last_activity_at > :since"
        ),
        {"since": NOW - timedelta(hours=24)},
    ).scalar_one()
    assert hot_and_recent >= 10


def test_some_late_stage_deals_have_been_stuck_for_weeks(db: Connection) -> None:
    stuck = db.execute(
        text(
            "SELECT count(*) FROM leads WHERE stage IN ('meeting', 'negotiation') "
            "AND stage_entered_at < :weeks_ago"
        ),
        {"weeks_ago": NOW - timedelta(days=20)},
    ).scalar_one()
    assert stuck >= 3


def test_replies_on_lost_deals_are_more_often_negative(db: Connection) -> None:
    negative = [body for _, body in REPLIES["negative"]]

    def negative_share(stage: Stage) -> float:
        bodies = db.execute(
            text(
                "SELECT a.body FROM activities a JOIN leads l ON l.id = a.lead_id "
                "WHERE a.kind = 'email_received' AND l.stage = :stage"
            ),
            {"stage": stage.value},
        ).scalars().all()
        assert bodies and all(bodies)
        return sum(body in negative for body in bodies) / len(bodies)

    assert negative_share(Stage.LOST) > negative_share(Stage.WON) + 0.2


def test_every_closed_deal_keeps_its_score_at_close_and_open_ones_have_none(db: Connection) -> None:
    missing, stray = db.execute(
        text(
            "SELECT count(*) FILTER (WHERE stage IN ('won', 'lost') AND score_at_close IS NULL), "
            "       count(*) FILTER (WHERE stage NOT IN ('won', 'lost') AND score_at_close IS NOT NULL) "
            "FROM leads"
        )
    ).one()
    assert (missing, stray) == (0, 0)


# --- Plays: the planted effects can be found again ---------------------------------------------


def test_case_studies_truly_help_early_and_whitepapers_do_not(demo_engine: Engine) -> None:
    from sqlmodel import Session

    from crm_app.scoring.next_action import PlayStat, clears_bar
    from crm_app.services.next_action import refresh_play_stats

    with Session(demo_engine) as session:
        refresh_play_stats(session, NOW)
        rows = {
            (r.stage, r.play): PlayStat(*r)
            for r in session.execute(text(
                "SELECT stage, source, size_band, play, stays_with, moved_with, stays_without, moved_without "
                "FROM play_stats WHERE source = 'any' AND size_band = 'any'"))
        }
        session.rollback()
    helped = rows[("qualified", "case_study")]
    assert clears_bar(helped, min_support=20), helped
    for stage in ("contacted", "qualified"):
        placebo = rows[(stage, "whitepaper")]
        assert not clears_bar(placebo, min_support=20), placebo


def test_tagged_activities_fit_their_play_and_belong_to_the_lead_life(db: Connection) -> None:
    tagged, reads_by_nobody = db.execute(text(
        "SELECT count(*), count(*) FILTER (WHERE kind = 'page_visit' AND user_id IS NULL) "
        "FROM activities WHERE play IS NOT NULL")).one()
    assert tagged > LEADS * 0.2 and reads_by_nobody > 0


def test_some_open_deals_are_at_high_risk_for_a_recent_no_and_closed_ones_have_no_risk(db: Connection) -> None:
    rows = db.execute(
        text(
            "SELECT stage IN ('won', 'lost') AS closed, risk_level, risk_reasons, risk_at FROM leads"
        )
    ).all()
    assert all(r.risk_level is None and r.risk_reasons == [] for r in rows if r.closed)
    open_rows = [r for r in rows if not r.closed]
    assert all(r.risk_level in ("low", "medium", "high") and r.risk_at == NOW for r in open_rows)
    high = [r for r in open_rows if r.risk_level == "high"]
    # A few, for good reasons: the red badge must mean something, not cover the board.
    assert 6 <= len(high) <= 0.1 * len(open_rows)
    fresh_no = [r for r in high if any(x["code"] == "negative_reply" and x["at"] >= (NOW - timedelta(days=5)).isoformat()
                                       for x in r.risk_reasons)]
    assert len(fresh_no) >= 5
    stored = db.execute(text("SELECT count(*) FROM activities WHERE kind IN ('email_received', 'note') "
                             "AND body IS NOT NULL AND sentiment IS NULL")).scalar_one()
    assert stored == 0  # every reply and note was scored when written


def test_follow_ups_fill_the_queues_overdue_and_due_today_groups_and_lost_deals_say_why(demo_engine: Engine) -> None:
    from sqlmodel import Session

    from crm_app.services.queue import action_queue

    with Session(demo_engine) as session:
        rep_id = session.execute(text("SELECT id FROM users WHERE email = 'riley@demo.crm'")).scalar_one()
        counts = {g.kind: g.count for g in action_queue(session, owner_id=rep_id, now=NOW).groups}
        statuses = session.execute(text(
            "SELECT count(*) FILTER (WHERE f.due_at < :now), count(*) FILTER (WHERE f.due_at >= :now), "
            "count(*) FILTER (WHERE f.owner_id IS DISTINCT FROM l.owner_id OR l.stage IN ('won', 'lost')) "
            "FROM follow_ups f JOIN leads l ON l.id = f.lead_id"), {"now": NOW}).one()
        lost = session.execute(text(
            "SELECT count(*), count(lost_reason), count(DISTINCT lost_reason) FROM leads WHERE stage = 'lost'")).one()
    assert counts["overdue"] >= 1 and counts["due"] >= 1
    overdue, planned, misplaced = statuses
    assert overdue >= 5 and planned > overdue and misplaced == 0  # every promise is its owner's, on an open deal
    total, with_reason, kinds = lost
    assert total > 0 and with_reason == total and kinds >= 4


# --- Large demos: drawn in chunks by several processes ------------------------------------------


def test_chunks_drawn_by_two_processes_give_the_same_data_as_one_and_are_complete(database_url: str) -> None:
    """A large demo is drawn in chunks, each seeded from the seed and its number, and stored by
    several worker processes at once; the rows must not depend on how many processes there were."""
    digests, checks = [], []
    for workers in (2, 1):
        with scratch_database(database_url, f"crm_demo_chunks{workers}") as url:
            engine = make_engine(url)
            try:
                summary = generate_demo_data(engine, leads=900, seed=SEED, now=NOW, workers=workers,
                                             chunk_leads=400)
                with Session(engine) as session:  # the analytics the triggers kept, as a rebuild has them
                    assert _stored(session) == _rebuilt(session)
                with engine.connect() as connection:
                    digests.append(digest(connection))
                    checks.append(connection.execute(text(
                        "SELECT (SELECT count(*) FROM leads WHERE stage NOT IN ('won', 'lost') AND risk_level IS NULL),"
                        " (SELECT max(id) - count(*) FROM activities), (SELECT max(id) - count(*) FROM stage_changes),"
                        " (SELECT count(*) FROM leads WHERE id > 400 AND scored_at IS NOT NULL),"
                        " (SELECT count(*) FROM pg_indexes WHERE tablename = 'activities')")).one())
            finally:
                engine.dispose()
        assert (summary.chunks, summary.workers, summary.leads) == (3, workers, 900)
    assert digests[0] == digests[1]
    unassessed, activity_gaps, change_gaps, scored_later_chunks, _ = checks[0]
    assert (unassessed, activity_gaps, change_gaps) == (0, 0, 0)  # every open deal assessed; ids without gaps
    assert scored_later_chunks > 400
    assert checks[0] == checks[1]  # and the indexes are all back


def schema_shape(connection: Connection) -> list[tuple]:
    """Every constraint, index (its columns) and trigger (whether it is enabled) of the schema."""
    return [tuple(row) for row in connection.execute(text(
        "SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE connamespace = 'public'::regnamespace"
        # An index built again from its definition may print its predicate's casts differently.
        " UNION ALL SELECT 'index', i.indrelid::regclass::text, i.indexrelid::regclass::text,"
        " concat_ws(' ', i.indisunique, i.indkey, pg_get_expr(i.indexprs, i.indrelid) IS NOT NULL,"
        " i.indpred IS NOT NULL) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relnamespace = 'public'::regnamespace"
        " UNION ALL SELECT 'trigger', tgrelid::regclass::text, tgname, tgenabled::text FROM pg_trigger"
        " WHERE NOT tgisinternal ORDER BY 1, 2, 3"))]


def test_the_bulk_load_puts_back_every_index_foreign_key_and_trigger_and_a_failed_one_too(
        database_url: str, demo_engine: Engine) -> None:
    """The load drops indexes and foreign keys and disables triggers to go faster: afterwards (and
    after a load that failed half-way) the schema must be exactly a freshly migrated one's."""
    with scratch_database(database_url, "crm_demo_shape") as url:
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                fresh = schema_shape(connection)
            assert any(kind == "constraint" and "FOREIGN KEY" in definition for kind, _t, _n, definition in fresh)

            def fail_once_storing(message: str) -> None:
                if message.startswith("Stored"):
                    raise RuntimeError("the load broke off")

            with pytest.raises(RuntimeError, match="broke off"):
                generate_demo_data(engine, leads=900, seed=SEED, now=NOW, workers=1, chunk_leads=400,
                                   progress=fail_once_storing)
            with engine.connect() as connection:
                assert schema_shape(connection) == fresh
                left = connection.execute(text(
                    "SELECT (SELECT count(*) FROM leads) + (SELECT count(*) FROM activities)"
                    " + (SELECT count(*) FROM follow_ups) + (SELECT count(*) FROM users)")).scalar_one()
                assert left == 0
        finally:
            engine.dispose()
    with demo_engine.connect() as connection:
        assert schema_shape(connection) == fresh
