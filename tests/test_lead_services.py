"""Logging activities and moving stages on real PostgreSQL: rescored in the same transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from crm_app.db.models import Activity, Lead, StageChange
from crm_app.domain import ActivityKind as K
from crm_app.domain import Stage
from crm_app.services.errors import InvalidInput, NotFound, StaleLead
from crm_app.services.leads import log_activity, move_lead_to_stage
from crm_app.services.scoring import rescore_all, rescore_expired
from tests.conftest import NOW
from tests.factories import make_lead, make_user


def test_logging_a_pricing_request_rescores_and_stores_the_reasons(session):
    rep = make_user(session, "Ria Rep")
    lead = make_lead(session, "Ada", now=NOW, owner=rep, company_size=120)
    assert lead.score == 10

    result = log_activity(session, lead_id=lead.id, kind=K.PRICING_REQUEST, now=NOW,
                          occurred_at=NOW - timedelta(minutes=20))

    stored = session.get(Lead, lead.id)
    session.refresh(stored)
    assert result.score == stored.score == 10 + 30 + 20 + 5
    assert stored.tier == "warm"
    assert [r["points"] for r in stored.score_reasons] == [30, 20, 10, 5]
    assert sum(r["points"] for r in stored.score_reasons) == stored.score
    assert stored.last_activity_at == NOW - timedelta(minutes=20)
    assert stored.version == 2
    assert stored.score_valid_until == NOW - timedelta(minutes=20) + timedelta(hours=24)


def test_a_reps_call_marks_the_lead_contacted_but_does_not_raise_the_score(session):
    rep = make_user(session, "Ria Rep")
    lead = make_lead(session, "Ada", now=NOW, owner=rep)
    log_activity(session, lead_id=lead.id, kind=K.CALL, now=NOW, user_id=rep.id)
    session.refresh(lead)
    assert lead.score == 0
    assert lead.last_contacted_at == NOW


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"kind": "telepathy"}, "kind"),
        ({"kind": K.NOTE, "body": "   "}, "body"),
        ({"kind": K.CALL, "occurred_at": NOW + timedelta(hours=1)}, "occurred_at"),
        ({"kind": K.NOTE, "body": "x" * 20_001}, "body"),
    ],
)
def test_bad_activity_input_is_refused_with_the_field_and_nothing_is_written(session, kwargs, field):
    lead = make_lead(session, "Ada", now=NOW)
    with pytest.raises(InvalidInput) as refused:
        log_activity(session, lead_id=lead.id, now=NOW, **kwargs)
    assert refused.value.field == field
    assert session.scalar(select(Activity).where(Activity.lead_id == lead.id)) is None


def test_activity_on_a_missing_lead_says_so(session):
    with pytest.raises(NotFound):
        log_activity(session, lead_id=999_999, kind=K.CALL, now=NOW)


def test_moving_a_lead_records_history_and_closing_keeps_the_score_at_close(session):
    rep = make_user(session, "Ria Rep")
    lead = make_lead(session, "Ada", now=NOW, owner=rep,
                     activities=[(K.PRICING_REQUEST, timedelta(days=2))])
    move_lead_to_stage(session, lead_id=lead.id, to_stage=Stage.QUALIFIED, now=NOW, user_id=rep.id,
                       expected_version=lead.version)
    later = NOW + timedelta(days=3)
    moved = move_lead_to_stage(session, lead_id=lead.id, to_stage="won", now=later, user_id=rep.id)
    assert (moved.stage, moved.stage_entered_at, moved.closed_at) == ("won", later, later)
    assert moved.score_at_close == moved.score == 35
    history = session.scalars(
        select(StageChange).where(StageChange.lead_id == lead.id).order_by(StageChange.changed_at)
    ).all()
    assert [(h.from_stage, h.to_stage, h.user_id) for h in history] == [
        ("new", "qualified", rep.id), ("qualified", "won", rep.id)
    ]


def test_a_stale_move_is_refused_and_changes_nothing(session):
    lead = make_lead(session, "Ada", now=NOW)
    seen_version = lead.version
    move_lead_to_stage(session, lead_id=lead.id, to_stage=Stage.CONTACTED, now=NOW, expected_version=seen_version)
    with pytest.raises(StaleLead, match="changed by someone else"):
        move_lead_to_stage(session, lead_id=lead.id, to_stage=Stage.LOST, now=NOW, expected_version=seen_version)
    session.refresh(lead)
    assert lead.stage == "contacted"
    assert session.scalar(select(text("count(*)")).select_from(StageChange).where(StageChange.lead_id == lead.id)) == 1


def test_the_database_itself_refuses_a_score_out_of_range_or_a_tier_that_does_not_match(session):
    lead = make_lead(session, "Ada", now=NOW)
    for sql in ("UPDATE leads SET score = 101, tier = 'hot' WHERE id = :id",
                "UPDATE leads SET score = 80, tier = 'cold' WHERE id = :id",
                "UPDATE leads SET stage = 'maybe' WHERE id = :id",
                "UPDATE leads SET deal_value = -1 WHERE id = :id",
                "UPDATE leads SET company_size = -5 WHERE id = :id"):
        nested = session.begin_nested()
        with pytest.raises(IntegrityError):
            session.execute(text(sql), {"id": lead.id})
            session.flush()
        nested.rollback()


def test_time_alone_lowers_a_score_when_the_recency_bonus_runs_out(session):
    lead = make_lead(session, "Ada", now=NOW, activities=[(K.PAGE_VISIT, timedelta(hours=2))])
    assert lead.score == 25
    assert rescore_expired(session, NOW + timedelta(hours=21)) == 0
    assert rescore_expired(session, NOW + timedelta(hours=22)) == 1
    session.refresh(lead)
    assert (lead.score, lead.score_valid_until) == (5, None)


def test_rescore_all_matches_scoring_each_lead_alone(session):
    leads = [
        make_lead(session, f"Lead {i}", now=NOW, company_size=10 * i,
                  activities=[(K.EMAIL_OPENED, timedelta(days=d + 1)) for d in range(i)])
        for i in range(8)
    ]
    session.execute(text("UPDATE leads SET score = 0, tier = 'cold', score_reasons = '[]'"))
    assert rescore_all(session, NOW, batch_size=3) >= 8
    for lead in leads:
        session.refresh(lead)
        assert lead.score == min(25, 5 * int(lead.name.split()[1])) + (10 if lead.company_size > 50 else 0)
        assert sum(r["points"] for r in lead.score_reasons) == lead.score


def test_bulk_reassign_changes_only_the_selected_leads_and_bumps_their_versions(session):
    from crm_app.services.leads import reassign_leads

    from crm_app.domain import Role
    from crm_app.services.errors import Forbidden
    from crm_app.services.permissions import CurrentUser

    ria, sam = make_user(session, "Ria Rep"), make_user(session, "Sam Seller")
    meg = make_user(session, "Meg Manager", role="manager")
    manager = CurrentUser(meg.id, meg.email, meg.name, Role.MANAGER)
    a, b, c = (make_lead(session, name, now=NOW, owner=ria) for name in ("A", "B", "C"))
    before = {x.id: x.version for x in (a, b, c)}
    assert reassign_leads(session, lead_ids=[a.id, b.id], owner_id=sam.id, now=NOW, actor=manager) == 2
    session.expire_all()
    assert [(session.get(Lead, x.id).owner_id, session.get(Lead, x.id).version) for x in (a, b, c)] == [
        (sam.id, before[a.id] + 1), (sam.id, before[b.id] + 1), (ria.id, before[c.id])]
    trail = session.execute(text(
        "SELECT lead_id, actor_id, old, new FROM audit_log WHERE action = 'lead_reassigned' ORDER BY lead_id")).all()
    assert [tuple(t) for t in trail] == [(a.id, meg.id, {"owner_id": ria.id}, {"owner_id": sam.id}),
                                         (b.id, meg.id, {"owner_id": ria.id}, {"owner_id": sam.id})]
    with pytest.raises(InvalidInput):
        reassign_leads(session, lead_ids=[], owner_id=sam.id, now=NOW, actor=manager)
    rep = CurrentUser(ria.id, ria.email, ria.name, Role.REP)
    with pytest.raises(Forbidden, match="Only a manager can reassign leads."):
        reassign_leads(session, lead_ids=[c.id], owner_id=ria.id, now=NOW, actor=rep)


def test_score_at_close_is_what_the_rubric_said_when_the_deal_closed(session):
    from crm_app.services.scoring import record_scores_at_close

    lead = make_lead(session, "Ada", now=NOW, company_size=120,
                     activities=[(K.PRICING_REQUEST, timedelta(days=10)), (K.PAGE_VISIT, timedelta(hours=1))])
    # Closed 5 days ago: the page visit an hour ago came after and must not count.
    session.execute(text("UPDATE leads SET stage = 'won', closed_at = :t, score_at_close = NULL WHERE id = :id"),
                    {"t": NOW - timedelta(days=5), "id": lead.id})
    assert record_scores_at_close(session) >= 1
    session.refresh(lead)
    assert lead.score_at_close == 30 + 10 + 5


def test_a_sweep_never_overwrites_a_score_a_concurrent_change_just_stored(engine):
    """The sweep reads, scores, then writes; a rep's activity landing in between must win."""
    from sqlmodel import Session

    from crm_app.scoring import RuleBasedScoringEngine

    with Session(engine, expire_on_commit=False) as setup:
        lead = make_lead(setup, "Racey", now=NOW, activities=[(K.PAGE_VISIT, timedelta(hours=23))])
    assert lead.score == 25

    class RepLogsWhileSweepScores(RuleBasedScoringEngine):
        def score(self, facts, now):
            with Session(engine) as rep:  # another connection, committed before the sweep writes
                log_activity(rep, lead_id=lead.id, kind=K.PRICING_REQUEST, now=NOW + timedelta(hours=2))
            return super().score(facts, now)

    try:
        with Session(engine) as sweeper:
            assert rescore_expired(sweeper, NOW + timedelta(hours=2), engine=RepLogsWhileSweepScores()) == 0
        with Session(engine) as check:
            stored = check.get(Lead, lead.id)
            # Pricing +30, active in the last 24 h +20, 2 interactions +10: the rep's rescore stands.
            assert stored.score == 60
    finally:
        with Session(engine) as cleanup:
            cleanup.execute(text("DELETE FROM leads WHERE id = :id"), {"id": lead.id})
            cleanup.commit()


def test_a_user_logs_only_what_the_activity_form_offers(session):
    """A crafted event could pick any kind; a signed-in user may log only the rep-side ones (issue #17)."""
    from crm_app.db.security import act_as

    rep = make_user(session, "Ria Rep")
    lead = make_lead(session, "Own Lead", now=NOW, owner=rep)
    before = (lead.score, session.execute(text("SELECT count(*) FROM activities WHERE lead_id = :id"),
                                          {"id": lead.id}).scalar_one())
    act_as(session, rep.id)
    for kind in (K.PRICING_REQUEST, K.DEMO_REQUEST, K.PAGE_VISIT, K.FORM_SUBMISSION, K.EMAIL_CLICKED):
        with pytest.raises(InvalidInput) as error:
            log_activity(session, lead_id=lead.id, kind=kind, now=NOW)
        assert error.value.field == "kind"
    session.rollback()
    stored = session.get(Lead, lead.id, populate_existing=True)
    assert (stored.score, session.execute(text("SELECT count(*) FROM activities WHERE lead_id = :id"),
                                          {"id": lead.id}).scalar_one()) == before
    log_activity(session, lead_id=lead.id, kind=K.CALL, now=NOW)  # what the form offers works


def test_what_the_prospect_asked_for_on_a_call_scores_as_if_they_had_sent_it(session):
    """Issue #14: a rep logs that the prospect asked for pricing and a demo on a call. The requests are
    the prospect's, heard by the rep: stored as such, named with who heard them, and scored exactly as
    the same requests arriving from the website."""
    rep = make_user(session, "Ria Rep")
    heard = make_lead(session, "Heard", now=NOW, owner=rep, company_size=120)
    sent = make_lead(session, "Sent", now=NOW, owner=rep, company_size=120)
    at = NOW - timedelta(minutes=5)
    result = log_activity(session, lead_id=heard.id, kind=K.CALL, now=NOW, occurred_at=at, user_id=rep.id,
                          asked=["pricing_request", "demo_request", "pricing_request"])
    log_activity(session, lead_id=sent.id, kind=K.CALL, now=NOW, occurred_at=at, user_id=rep.id)
    for kind in (K.PRICING_REQUEST, K.DEMO_REQUEST):
        log_activity(session, lead_id=sent.id, kind=kind, now=NOW, occurred_at=at)
    session.expire_all()
    assert result.score == session.get(Lead, heard.id).score == session.get(Lead, sent.id).score > 10 + 30
    stored = session.execute(
        select(Activity.kind, Activity.user_id, Activity.subject, Activity.occurred_at)
        .where(Activity.lead_id == heard.id).order_by(Activity.kind)
    ).all()
    assert [tuple(r) for r in stored] == [
        ("call", rep.id, None, at),
        ("demo_request", rep.id, "Said on a call", at),
        ("pricing_request", rep.id, "Said on a call", at),
    ]


@pytest.mark.parametrize("kind, asked, said", [
    (K.NOTE, ["pricing_request"], "logged with a call, a meeting or their reply"),
    (K.EMAIL_SENT, ["demo_request"], "logged with a call, a meeting or their reply"),
    (K.CALL, ["page_visit"], "can ask for pricing or a demo"),
    (K.CALL, ["bogus"], "can ask for pricing or a demo"),
])
def test_only_a_conversation_carries_a_request_and_only_for_pricing_or_a_demo(session, kind, asked, said):
    lead = make_lead(session, "Asker", now=NOW, company_size=120)
    before = session.get(Lead, lead.id).score
    with pytest.raises(InvalidInput, match=said) as refused:
        log_activity(session, lead_id=lead.id, kind=kind, now=NOW, body="They called.", asked=asked)
    assert refused.value.field == "asked"
    session.rollback()
    assert session.execute(select(Activity).where(Activity.lead_id == lead.id)).all() == []
    assert session.get(Lead, lead.id).score == before
