"""Deal risk on real PostgreSQL: stored when activities are logged, swept as time passes, shown in
the action queue in words a rep understands, and never on closed deals."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text

from crm_app.db.models import Activity, Lead
from crm_app.domain import ActivityKind as K
from crm_app.domain import Role, Stage
from crm_app.services.capture import EventInput, LeadRef, record_events
from crm_app.services.leads import log_activity, move_lead_to_stage
from crm_app.services.permissions import CurrentUser
from crm_app.services.queue import action_queue
from crm_app.services.risk import reassess_all_risk, reassess_expired_risk
from crm_app.services.settings import set_stagnation_days
from tests.conftest import NOW
from tests.factories import make_lead, make_user

NO = "We've decided to go with another vendor. Thanks for your time."
YES = "Great call today. The team is excited; can you send over the contract?"


def _queue(session, owner, now=NOW):
    return {item.name: item for item in action_queue(session, owner_id=owner.id, now=now).items}


def test_a_negative_reply_raises_the_risk_and_the_queue_says_so(session):
    ria = make_user(session, "Ria Rep")
    # In Proposal for 3 days, emailed 5 days ago: nothing wrong yet.
    lead = make_lead(session, "Ada", now=NOW, owner=ria, stage=Stage.PROPOSAL, created_ago=timedelta(days=3),
                     activities=[(K.EMAIL_SENT, timedelta(days=5))])
    assert (lead.risk_level, lead.risk_points, lead.risk_reasons) == ("low", 0, [])
    assert "Ada" not in _queue(session, ria)

    log_activity(session, lead_id=lead.id, kind=K.EMAIL_RECEIVED, now=NOW, occurred_at=NOW - timedelta(days=2),
                 subject="Re: Proposal", body=NO)
    session.refresh(lead)

    reply = session.execute(select(Activity).where(Activity.lead_id == lead.id,
                                                   Activity.kind == K.EMAIL_RECEIVED.value)).scalar_one()
    assert reply.sentiment < -0.05  # stored once, when written
    assert lead.risk_level == "high"
    assert [(r["points"], r["text"]) for r in lead.risk_reasons] == [
        (40, "Negative reply on 10 Nov"), (15, "No contact from us since their reply on 10 Nov")]
    assert lead.last_reply_sentiment == reply.sentiment
    item = _queue(session, ria)["Ada"]
    assert (item.kind, item.kind_label) == ("risk", "At risk")
    assert item.headline == "At risk: negative reply 2 days ago, no contact since"
    assert item.position == 1

    # The rep calls back: the reply is answered, the risk drops to Medium and leaves the queue.
    log_activity(session, lead_id=lead.id, kind=K.CALL, now=NOW, user_id=ria.id)
    session.refresh(lead)
    assert (lead.risk_level, lead.risk_points) == ("medium", 40)
    assert "Ada" not in _queue(session, ria)


def test_a_pricing_request_through_the_api_is_the_prospect_answering(session):
    """Issue #12: "No reply since our first contact on 11 Sep" on a lead that asked for pricing twice
    today. Events arrive through the REST API's service; risk reads every kind of answer."""
    ria = make_user(session, "Ria Rep")
    lead = make_lead(session, "Ada", now=NOW, owner=ria, stage=Stage.PROPOSAL, created_ago=timedelta(days=3),
                     activities=[(K.EMAIL_SENT, timedelta(days=60)), (K.CALL, timedelta(days=2))])
    assert [r["text"] for r in lead.risk_reasons] == [
        "No reply since our first contact on 13 Sep (6 weeks or more)"]

    # The website's key reports what the prospect did; it acts as a manager (a rep's key may not, #17).
    maya = make_user(session, "Maya Manager", role=Role.MANAGER)
    actor = CurrentUser(maya.id, maya.email, maya.name, Role.MANAGER)
    events = [EventInput(LeadRef(lead_id=lead.id), "pricing_request", occurred_at=NOW - timedelta(hours=3)),
              EventInput(LeadRef(lead_id=lead.id), "pricing_request")]
    record_events(session, actor, events, now=NOW, batch=True)
    session.commit()
    session.refresh(lead)
    assert (lead.risk_level, lead.risk_points, lead.risk_reasons) == ("low", 0, [])

    # A day later nobody has called them back: their request waits on us, in the stored reasons too.
    assert reassess_expired_risk(session, NOW + timedelta(days=1)) >= 1
    session.refresh(lead)
    assert [r["text"] for r in lead.risk_reasons] == [
        "No contact from us since their pricing request on 12 Nov"]


def test_a_friendly_reply_is_no_risk_and_a_note_counts_too(session):
    ria = make_user(session, "Ria Rep")
    lead = make_lead(session, "Grace", now=NOW, owner=ria, stage=Stage.MEETING, created_ago=timedelta(days=3),
                     activities=[(K.CALL, timedelta(hours=2))])
    log_activity(session, lead_id=lead.id, kind=K.EMAIL_RECEIVED, now=NOW, body=YES)
    session.refresh(lead)
    assert (lead.risk_level, lead.last_reply_sentiment > 0.05) == ("low", True)
    log_activity(session, lead_id=lead.id, kind=K.NOTE, now=NOW, user_id=ria.id,
                 body="They say they are evaluating a cheaper competitor.")
    session.refresh(lead)
    assert [r["code"] for r in lead.risk_reasons] == ["negative_note"]
    assert lead.risk_level == "low"  # 20 points: worth knowing, not yet worth a queue item


def test_closed_deals_have_no_risk_and_leave_the_queue(session):
    ria = make_user(session, "Ria Rep")
    lead = make_lead(session, "Alan", now=NOW, owner=ria, stage=Stage.NEGOTIATION, created_ago=timedelta(days=3),
                     activities=[(K.EMAIL_SENT, timedelta(days=5))])
    log_activity(session, lead_id=lead.id, kind=K.EMAIL_RECEIVED, now=NOW, occurred_at=NOW - timedelta(days=3),
                 body=NO)
    assert "Alan" in _queue(session, ria)
    move_lead_to_stage(session, lead_id=lead.id, to_stage=Stage.LOST, now=NOW)
    session.refresh(lead)
    assert (lead.risk_level, lead.risk_points, lead.risk_reasons) == (None, None, [])
    assert "Alan" not in _queue(session, ria)


def test_the_sweep_reassesses_deals_that_time_alone_has_pushed_past_their_limit(session):
    ria = make_user(session, "Ria Rep")
    # Proposal's limit is 14 days; entered 10 days ago and called yesterday.
    lead = make_lead(session, "Edsger", now=NOW, owner=ria, stage=Stage.PROPOSAL, created_ago=timedelta(days=10),
                     activities=[(K.CALL, timedelta(days=1))])
    assert lead.risk_points == 0
    # The first change time alone brings: past the limit after (14 + 1) x 24 h in the stage.
    assert lead.risk_valid_until == NOW - timedelta(days=10) + timedelta(days=15)
    later = NOW + timedelta(days=5)
    assert reassess_expired_risk(session, NOW) == 0  # nothing has moved yet
    assert reassess_expired_risk(session, later) == 1
    session.refresh(lead)
    assert [r["code"] for r in lead.risk_reasons] == ["stalled"]
    assert lead.risk_reasons[0]["text"] == "In Proposal since 2 Nov, past its 14-day limit"
    assert lead.risk_valid_until > later


def test_a_changed_stage_limit_makes_that_stage_due_for_the_sweep(session):
    ria = make_user(session, "Ria Rep")
    lead = make_lead(session, "Barbara", now=NOW, owner=ria, stage=Stage.PROPOSAL, created_ago=timedelta(days=10),
                     activities=[(K.CALL, timedelta(days=1))])
    set_stagnation_days(session, stage=Stage.PROPOSAL.value, typed="7", actor=None)
    assert reassess_expired_risk(session, NOW) == 1
    session.refresh(lead)
    assert lead.risk_reasons[0]["text"] == "In Proposal since 2 Nov, past its 7-day limit"


def test_reassessing_all_scores_replies_stored_without_sentiment(session):
    """Replies from before sentiment was stored (an older database, an import) get theirs the first
    time their deal is reassessed, and keep it."""
    ria = make_user(session, "Ria Rep")
    lead = make_lead(session, "Linus", now=NOW, owner=ria, stage=Stage.QUALIFIED, created_ago=timedelta(days=3),
                     activities=[(K.CALL, timedelta(days=4))])
    session.add(Activity(lead_id=lead.id, kind=K.EMAIL_RECEIVED.value, occurred_at=NOW - timedelta(days=2),
                         body="Budget frozen until next year, unfortunately."))
    session.commit()
    assert reassess_all_risk(session, NOW) >= 1
    session.refresh(lead)
    assert lead.risk_level == "high"
    stored = session.execute(text("SELECT sentiment FROM activities WHERE lead_id = :id AND kind = 'email_received'"),
                             {"id": lead.id}).scalar_one()
    assert stored < -0.05


def test_the_database_refuses_a_risk_level_that_does_not_match_its_points(session):
    ria = make_user(session, "Ria Rep")
    lead = make_lead(session, "Ken", now=NOW, owner=ria)
    import pytest
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        session.execute(text("UPDATE leads SET risk_level = 'high', risk_points = 10 WHERE id = :id"),
                        {"id": lead.id})
        session.flush()
    session.rollback()
    assert session.get(Lead, lead.id) is not None


def test_reassessing_in_batches_stores_what_assessing_each_lead_alone_gives(session):
    """Generated deals in every stage with random activities, tones and ages: the batch path (read
    in bulk, only changed rows written) stores exactly what the pure rules give lead by lead, and a
    second pass at the same moment writes nothing."""
    import random

    from crm_app.scoring.engine import ActivityFact
    from crm_app.scoring.risk import Message, RiskFacts, assess_risk

    rng = random.Random(11)
    kinds = list(K)
    expected = {}
    for i in range(120):
        stage = rng.choice(list(Stage))
        entered = NOW - timedelta(days=rng.randint(0, 60), hours=rng.randint(0, 23))
        lead = Lead(name=f"Batch {i}", email=f"batch{i}@example.com", company="Acme", source="website",
                    stage=stage.value, tier="cold", created_at=entered - timedelta(days=rng.randint(0, 30)),
                    stage_entered_at=entered)
        session.add(lead)
        session.flush()
        acts = []
        for _ in range(rng.choice([0, 1, 3, 8, 15])):
            kind = rng.choice(kinds)
            at = NOW - timedelta(days=rng.randint(0, 70), minutes=rng.randint(0, 1440))
            tone = rng.choice([None, -0.8, -0.05, 0.0, 0.6]) if kind in (K.EMAIL_RECEIVED, K.NOTE) else None
            acts.append((kind, at, tone))
            session.add(Activity(lead_id=lead.id, kind=kind.value, occurred_at=at, sentiment=tone))
        limit = session.execute(text("SELECT stagnation_days FROM stage_rules WHERE stage = :s"),
                                {"s": stage.value}).scalar()
        facts = RiskFacts(stage=stage, stage_entered_at=entered, created_at=lead.created_at,
                          stage_limit_days=limit,
                          activities=tuple(ActivityFact(k, t) for k, t, _ in acts),
                          messages=tuple(Message(k, t, s) for k, t, s in acts
                                         if k in (K.EMAIL_RECEIVED, K.NOTE)))
        expected[lead.id] = assess_risk(facts, NOW)
    session.flush()
    reassess_all_risk(session, NOW, batch_size=50)
    rows = session.execute(text("SELECT id, risk_level, risk_points, risk_reasons, risk_valid_until, "
                                "last_reply_at, "
                                "last_reply_sentiment, risk_at FROM leads WHERE id = ANY(:ids)"),
                           {"ids": list(expected)}).all()
    for row in rows:
        want = expected[row.id]
        assert (row.risk_level, row.risk_points, row.risk_reasons, row.risk_valid_until, row.last_reply_at,
                row.last_reply_sentiment) == (
            want.level.value if want.level else None, want.points if want.level else None,
            [r.as_dict() for r in want.reasons], want.valid_until, want.last_reply_at,
            want.last_reply_sentiment,
        ), row.id
    assert {r.risk_level for r in rows} >= {"low", "medium", "high", None}
    assert reassess_all_risk(session, NOW, batch_size=50) == 0
