"""The set-based rubric (services/rules_sql.py) gives every lead exactly the engine's score, tier,
reasons and expiry: on generated leads covering every boundary of the rubric and of its words."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session


from crm_app.db.models import Lead
from crm_app.domain import ActivityKind, Source, Stage
from crm_app.scoring import RuleBasedScoringEngine
from crm_app.services import rules_sql
from crm_app.services.scoring import (
    count_history_leads,
    count_open_leads,
    load_facts,
    record_scores_at_close,
    rescore_all,
    rescore_expired,
    rescore_open_leads,
)
from tests.conftest import NOW, scratch_engine

ENGINE = RuleBasedScoringEngine()
KINDS = list(ActivityKind)
# Offsets that sit on the rubric's boundaries: now, just inside and outside 24 hours, around the
# 300 days after which a date carries its year, and in the future (not known yet).
EDGES = [
    timedelta(0), timedelta(hours=23, minutes=59, seconds=59), timedelta(hours=24),
    timedelta(hours=24, microseconds=1), timedelta(days=300), timedelta(days=300, seconds=1),
    timedelta(days=400), -timedelta(minutes=1),
]
SIZES = [None, 0, 50, 51, 999, 1000, 1_234_567]


def _generate(session, count: int, seed: int) -> list[int]:
    """`count` leads with random activities (ids returned); some with many requests, some none."""
    rng = random.Random(seed)
    leads = []
    for i in range(count):
        closed = rng.random() < 0.3
        lead = Lead(name=f"Set lead {seed}-{i}", email=f"set{seed}.{i}@example.com", company="Acme",
                    company_size=rng.choice(SIZES), source=rng.choice(list(Source)).value,
                    stage=(Stage.WON if closed else Stage.NEW).value, tier="cold",
                    created_at=NOW - timedelta(days=500), stage_entered_at=NOW - timedelta(days=500),
                    closed_at=NOW - timedelta(days=rng.randint(0, 450), minutes=rng.randint(0, 1440))
                    if closed else None)
        session.add(lead)
        leads.append(lead)
    session.flush()
    rows = []
    for lead in leads:
        shape = rng.random()
        n = 0 if shape < 0.1 else rng.randint(12, 30) if shape > 0.9 else rng.randint(1, 8)
        heavy = rng.choice([ActivityKind.PRICING_REQUEST, ActivityKind.DEMO_REQUEST, None])
        for _ in range(n):
            kind = heavy if heavy and rng.random() < 0.6 else rng.choice(KINDS)
            ago = rng.choice(EDGES) if rng.random() < 0.3 else timedelta(seconds=rng.randint(0, 500 * 86400))
            rows.append({"lead": lead.id, "kind": kind.value, "at": NOW - ago})
    if rows:
        session.execute(
            text("INSERT INTO activities (lead_id, kind, occurred_at) VALUES (:lead, :kind, :at)"), rows
        )
    session.flush()
    return [lead.id for lead in leads]


def _engine_results(session, ids: list[int], at_close: bool = False, now=NOW) -> dict[int, tuple]:
    leads = session.query(Lead).filter(Lead.id.in_(ids)).all()
    facts = load_facts(session, leads)
    results = {}
    for lead in leads:
        moment = lead.closed_at if at_close else now
        if moment is None:
            continue
        r = ENGINE.score(facts[lead.id], moment)
        results[lead.id] = (r.score, r.tier.value, [x.as_dict() for x in r.reasons], r.valid_until)
    return results


def test_set_based_rubric_matches_the_engine_lead_for_lead(session):
    ids = _generate(session, 400, seed=1)
    expected = _engine_results(session, ids)
    rows = rules_sql.scored_rows(session, min(ids) - 1, max(ids), params={"now": NOW})
    got = {r.id: (r.score, r.tier, r.reasons, r.valid_until) for r in rows}
    assert got.keys() == expected.keys()
    for lead_id, want in expected.items():
        assert got[lead_id] == want, lead_id
    # The generated data reaches every part of the rubric and of its words.
    texts = [reason["text"] for r in rows for reason in r.reasons]
    for words in ("earlier", " and ", "Active in the last 24 hours", "capped at 25", "Company has 1,234,567",
                  "Viewed the pricing page", "Requested a demo on", "1 interaction ("):
        assert any(words in t for t in texts), words
    assert any(str(NOW.year - 1) in t for t in texts), "old dates carry their year"


def test_rescoring_stores_the_engines_results_in_ranges(session):
    ids = _generate(session, 150, seed=2)
    expected = _engine_results(session, ids)
    # Small ranges, so several statements and commits run.
    assert rules_sql.rescore_rules_where(session, NOW, "leads.id = ANY(:ids)", {"ids": ids}, chunk=40) == len(ids)
    stored = {
        lead.id: (lead.score, lead.tier, lead.score_reasons, lead.score_valid_until)
        for lead in session.query(Lead).filter(Lead.id.in_(ids)).populate_existing()
    }
    assert stored == expected


def test_a_rescore_rewrites_only_the_leads_whose_score_changed(session):
    ids = _generate(session, 40, seed=6)
    rules_sql.rescore_rules_where(session, NOW, "leads.id = ANY(:ids)", {"ids": ids})
    changed = ids[0]
    session.execute(text("UPDATE leads SET company_size = 5000 WHERE id = :id"), {"id": changed})
    later = NOW + timedelta(seconds=1)
    expected = _engine_results(session, ids, now=later)
    # Where each lead's row version is stored: an UPDATE (even one writing the same values) moves it.
    places = dict(session.execute(text("SELECT id, ctid::text FROM leads WHERE id = ANY(:ids)"),
                                  {"ids": ids}).all())
    assert rules_sql.rescore_rules_where(session, later, "leads.id = ANY(:ids)", {"ids": ids}) == len(ids)
    rows = session.execute(
        text("SELECT id, scored_at, score, ctid::text AS place FROM leads WHERE id = ANY(:ids)"), {"ids": ids}
    ).all()
    rescored = {r.id for r in rows if r.scored_at == later}
    # The later moment changes some scores (a recency bonus ending on the second), and the bigger company.
    assert changed in rescored
    assert {r.id: r.score for r in rows} == {i: v[0] for i, v in expected.items()}
    assert len(rescored) < len(ids)
    # The others were not rewritten at all: same row version, so no new index entries.
    assert {r.id for r in rows if r.place != places[r.id]} == rescored


def test_rescore_entry_points_use_the_rubric_in_the_database(session):
    ids = _generate(session, 60, seed=3)
    expected = _engine_results(session, ids)
    total = session.execute(text("SELECT count(*) FROM leads")).scalar_one()
    assert rescore_all(session, NOW) == total
    stored = {lead.id: (lead.score, lead.tier, lead.score_reasons, lead.score_valid_until)
              for lead in session.query(Lead).filter(Lead.id.in_(ids)).populate_existing()}
    assert stored == expected
    # Open leads only: a closed lead's stored score is left as it was.
    open_ids = [i for i in ids if session.get(Lead, i).stage == Stage.NEW.value]
    assert count_open_leads(session) == session.execute(
        text("SELECT count(*) FROM leads WHERE stage NOT IN ('won', 'lost')")).scalar_one()
    session.execute(text("UPDATE leads SET score = 0, tier = 'cold', score_reasons = '[]' WHERE id = ANY(:ids)"),
                    {"ids": ids})
    assert rescore_open_leads(session, NOW) == count_open_leads(session)
    for lead in session.query(Lead).filter(Lead.id.in_(ids)).populate_existing():
        if lead.id in open_ids:
            assert lead.score == expected[lead.id][0]
        else:
            assert lead.score == 0
    assert count_history_leads(session) == 0  # no model has learned from any deal here
    # Only the leads whose recency bonus ran out by a day later are rescored, to the engine's result.
    later = NOW + timedelta(days=1)
    expiring = session.execute(text("SELECT count(*) FROM leads WHERE score_valid_until <= :t"),
                               {"t": later}).scalar_one()
    assert expiring > 0
    assert rescore_expired(session, later) == expiring


def test_scores_at_close_match_the_engine_at_each_close(session):
    ids = _generate(session, 200, seed=4)
    expected = _engine_results(session, ids, at_close=True)
    assert expected
    record_scores_at_close(session)
    stored = dict(session.execute(text("SELECT id, score_at_close FROM leads WHERE id = ANY(:ids) "
                                       "AND closed_at IS NOT NULL"), {"ids": ids}).all())
    assert stored == {i: v[0] for i, v in expected.items()}


def test_nothing_to_rescore_writes_nothing(session):
    _generate(session, 5, seed=5)
    assert rules_sql.rescore_rules_where(session, NOW, "FALSE") == 0


# --- Properties: any lead's facts, the SQL says what the engine says -------------------------------

_MOMENTS = st.one_of(st.sampled_from(EDGES),
                     st.timedeltas(min_value=-timedelta(days=2), max_value=timedelta(days=800)))
_LEAD = st.tuples(
    st.sampled_from(SIZES),
    st.lists(st.tuples(st.sampled_from(KINDS), _MOMENTS), max_size=14),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(leads=st.lists(_LEAD, min_size=1, max_size=6), tie=st.booleans())
def test_any_leads_facts_score_the_same_in_the_database_as_in_the_engine(session, leads, tie):
    """Random facts, with the rubric's boundaries and same-instant activities (`tie`: every activity of
    a lead at one moment, which the SQL breaks by insertion order as the engine does)."""
    savepoint = session.begin_nested()
    try:
        ids = []
        for i, (size, activities) in enumerate(leads):
            lead = Lead(name=f"Prop {i}", email=f"prop{i}@example.com", company="Acme", company_size=size,
                        source=Source.WEBSITE.value, stage=Stage.NEW.value, tier="cold",
                        created_at=NOW - timedelta(days=900), stage_entered_at=NOW - timedelta(days=900))
            session.add(lead)
            session.flush()
            ids.append(lead.id)
            rows = [{"lead": lead.id, "kind": kind.value,
                     "at": NOW - (activities[0][1] if tie else ago)} for kind, ago in activities]
            if rows:
                session.execute(text("INSERT INTO activities (lead_id, kind, occurred_at) "
                                     "VALUES (:lead, :kind, :at)"), rows)
        session.flush()
        expected = _engine_results(session, ids)
        got = {r.id: (r.score, r.tier, r.reasons, r.valid_until)
               for r in rules_sql.scored_rows(session, min(ids) - 1, max(ids), params={"now": NOW})}
        assert got == expected
    finally:
        savepoint.rollback()


# --- Ranges on several connections, committed ----------------------------------------------------


@pytest.fixture(scope="module")
def committed_engine(database_url: str) -> Iterator[Engine]:
    """A database of its own whose rows are committed, as a job worker's rescore sees them."""
    with scratch_engine(database_url, "crm_rules_sql") as engine:
        yield engine


def test_ranges_on_several_connections_store_the_engines_results(committed_engine):
    with Session(committed_engine, expire_on_commit=False) as session:
        ids = _generate(session, 300, seed=7)
        session.commit()
        expected = _engine_results(session, ids)
        seen = []
        # Ranges of 40 leads on 3 connections; progress is reported for every range, in this thread.
        done = rules_sql.rescore_rules_where(session, NOW, chunk=40, workers=3, progress=seen.append)
        assert done == len(ids)
        assert len(seen) == -(-len(ids) // 40) and seen[-1] == len(ids) and seen == sorted(seen)
        stored = {lead.id: (lead.score, lead.tier, lead.score_reasons, lead.score_valid_until)
                  for lead in session.query(Lead).filter(Lead.id.in_(ids)).populate_existing()}
        assert stored == expected
        # Hot since is kept by the tier's trigger for the leads that turned Hot, and only those.
        hot = session.execute(text("SELECT count(*) FROM leads WHERE tier = 'hot' AND hot_since = :now"),
                              {"now": NOW}).scalar_one()
        assert hot == sum(1 for v in expected.values() if v[1] == "hot")
        # A second pass a second later rewrites only what the second changed.
        later = NOW + timedelta(seconds=1)
        assert rules_sql.rescore_rules_where(session, later, chunk=40, workers=3) == len(ids)
        rewritten = session.execute(text("SELECT count(*) FROM leads WHERE scored_at = :t"),
                                    {"t": later}).scalar_one()
        assert rewritten < len(ids) // 4


def test_a_progress_callback_that_stops_the_work_stops_it(committed_engine):
    with Session(committed_engine, expire_on_commit=False) as session:
        session.execute(text("UPDATE leads SET score_reasons = '[]'::jsonb"))
        session.commit()
        total = session.execute(text("SELECT count(*) FROM leads")).scalar_one()

        def stop(done: int) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            rules_sql.rescore_rules_where(session, NOW, chunk=10, workers=2, progress=stop)
        left = session.execute(text("SELECT count(*) FROM leads WHERE score_reasons = '[]'::jsonb "
                                    "AND score > 0")).scalar_one()
        # The ranges already running finished (each commits alone); the rest were never started.
        assert 0 < left < total


def test_rescoring_touched_leads_in_the_callers_transaction_is_the_engines_lead_by_lead(session):
    """What an import calls for the leads it touched: set-based, inside its transaction, with the
    present score and, for a closed deal without one, the score at its close from what came before."""
    from crm_app.services.scoring import rescore_leads_in_transaction

    ids = _generate(session, 120, seed=8)
    session.execute(text("UPDATE leads SET score_at_close = NULL, scored_at = NULL WHERE id = ANY(:ids)"),
                    {"ids": ids})
    # A close at the very moment of an activity: that activity is not counted in the score at close.
    session.execute(text("UPDATE leads SET closed_at = (SELECT max(occurred_at) FROM activities a "
                         "WHERE a.lead_id = leads.id) "
                         "WHERE id = ANY(:ids) AND closed_at IS NOT NULL AND id % 2 = 0"), {"ids": ids})
    expected = _engine_results(session, ids)
    leads = session.query(Lead).filter(Lead.id.in_(ids)).populate_existing().all()
    facts = load_facts(session, leads)
    at_close = {}
    for lead in leads:
        if lead.closed_at is not None:
            before = [a for a in facts[lead.id].activities if a.occurred_at < lead.closed_at]
            then = type(facts[lead.id])(company_size=lead.company_size, activities=before)
            at_close[lead.id] = ENGINE.score(then, lead.closed_at).score
    assert rescore_leads_in_transaction(session, ids, NOW) == len(ids)
    stored = {lead.id: (lead.score, lead.tier, lead.score_reasons, lead.score_valid_until)
              for lead in session.query(Lead).filter(Lead.id.in_(ids)).populate_existing()}
    assert stored == expected
    # Every touched lead carries the moment it was scored, changed or not.
    assert session.execute(text("SELECT count(*) FROM leads WHERE id = ANY(:ids) AND scored_at IS NULL"),
                           {"ids": ids}).scalar_one() == 0
    closes = dict(session.execute(text("SELECT id, score_at_close FROM leads WHERE id = ANY(:ids) "
                                       "AND closed_at IS NOT NULL"), {"ids": ids}).all())
    assert closes == at_close
