"""Follow-ups as the backbone, notifications and closing deals (issue #14), on real PostgreSQL under
row-level security as the app runs them.

The notification triggers look at the database's clock (a backfill of old events stays quiet), so
these tests use the real time, not the suite's fixed NOW."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlmodel import Session

from crm_app.db.models import FollowUp, Lead, Notification
from crm_app.domain import ActivityKind as K
from crm_app.domain import Source, Stage
from crm_app.services.analytics import AnalyticsFilter
from crm_app.services.errors import Forbidden, InvalidInput, NotFound
from crm_app.services.follow_ups import (
    DUE_CHOICES,
    due_time,
    lead_follow_ups,
    mark_follow_up_done,
    postpone_follow_up,
    schedule_next_step,
)
from crm_app.services.lead_actions import move_leads_to_stage
from crm_app.services.leads import log_activity, move_lead_to_stage, reassign_leads
from crm_app.services.lost_reasons import NO_REASON, add_reason, lost_reason_tables, reason_labels, remove_reason
from crm_app.services.notifications import bell, mark_read, notify_due_follow_ups
from crm_app.services.permissions import CurrentUser
from crm_app.services.pipeline import BoardFilter, board_columns
from crm_app.domain import Role
from tests.factories import acting, make_lead, make_user




@pytest.fixture
def now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def team(session: Session, now: datetime) -> dict:
    ria, sam = make_user(session, "Ria Rep"), make_user(session, "Sam Seller")
    maya = make_user(session, "Maya Manager", role="manager")
    return {"ria": ria, "sam": sam, "maya": maya,
            "mine": make_lead(session, "Ada Lovelace", now=now, owner=ria, stage=Stage.QUALIFIED),
            "sams": make_lead(session, "Alan Turing", now=now, owner=sam)}


def _as_user(user) -> CurrentUser:
    return CurrentUser(user.id, user.email, user.name, Role(user.role))


# --- Follow-ups ---------------------------------------------------------------------------------


def test_next_step_is_listed_on_the_lead_and_colours_its_card(session, team, now):
    ria, lead = team["ria"], team["mine"]
    with acting(session, ria) as db:
        schedule_next_step(db, lead_id=lead.id, kind="call", due_at=due_time("tomorrow", now), now=now,
                           note="Walk through pricing")
        lines = lead_follow_ups(db, lead.id, now)
        assert [(x.what, x.status, x.note, x.owner) for x in lines] == [
            ("Call", "planned", "Walk through pricing", "Ria Rep")]
        card = _card(db, lead.id, now, ria.id)
        assert (card.activity, card.activity_label.startswith("Next step planned")) == ("planned", True)

    # An hour later than it was due, it is overdue: on the lead page and in red on the board.
    later = due_time("tomorrow", now) + timedelta(hours=1)
    with acting(session, ria) as db:
        assert [(x.status, x.when) for x in lead_follow_ups(db, lead.id, later)] == [("overdue", "overdue by 1 h")]
        assert _card(db, lead.id, later, ria.id).activity == "overdue"
        postpone_follow_up(db, follow_up_id=lines[0].id, lead_id=lead.id, choice="next_week", now=later)
        assert _card(db, lead.id, later, ria.id).activity == "planned"
        mark_follow_up_done(db, follow_up_id=lines[0].id, lead_id=lead.id, now=later)
        assert lead_follow_ups(db, lead.id, later) == []
        assert _card(db, lead.id, later, ria.id).activity == "none"


def _card(db, lead_id, now, owner_id):
    columns = board_columns(db, flt=BoardFilter(owner_id=owner_id), now=now)
    return next(card for column in columns for card in column.cards if card.id == lead_id)


def test_next_step_is_refused_with_the_field_named(session, team, now):
    ria = team["ria"]
    with acting(session, ria) as db:
        for kind, due, field in (("fax", now + timedelta(hours=1), "next_kind"), ("call", now, "due"),
                                 ("call", now + timedelta(days=400), "due")):
            with pytest.raises(InvalidInput) as refused:
                schedule_next_step(db, lead_id=team["mine"].id, kind=kind, due_at=due, now=now)
            assert refused.value.field == field
        # Another rep's lead is not there for Ria, whatever its id.
        with pytest.raises(NotFound):
            schedule_next_step(db, lead_id=team["sams"].id, kind="call", due_at=now + timedelta(hours=2), now=now)
        with pytest.raises(Forbidden):
            schedule_next_step(db, lead_id=team["mine"].id, kind="call", due_at=now + timedelta(hours=2), now=now,
                               owner_id=team["sam"].id)
    assert session.execute(select(FollowUp)).scalars().all() == []


@settings(max_examples=60, deadline=None)
@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
       st.sampled_from(sorted(DUE_CHOICES)))
def test_every_due_choice_lies_ahead_within_two_weeks(moment, choice):
    now = moment.replace(tzinfo=timezone.utc)
    due = due_time(choice, now)
    assert now < due <= now + timedelta(days=15)


# --- Notifications ------------------------------------------------------------------------------


def test_a_pricing_request_notifies_the_owner_only(session, team, now):
    ria, sam, lead = team["ria"], team["sam"], team["mine"]
    log_activity(session, lead_id=lead.id, kind=K.PRICING_REQUEST, now=now)  # the REST API's path
    with acting(session, ria) as db:
        seen = bell(db, user_id=ria.id, now=now)
        assert seen.unread == 1
        assert (seen.lines[0].kind, seen.lines[0].href) == ("pricing_request", f"/leads/{lead.id}")
        assert seen.lines[0].message == "Ada Lovelace (Acme) asked for pricing"
    with acting(session, sam) as db:
        # Row security: Sam cannot read Ria's notification even by asking for her id.
        assert bell(db, user_id=ria.id, now=now).unread == 0
        assert mark_read(db, user_id=ria.id, now=now) == 0
    with acting(session, ria) as db:
        assert mark_read(db, user_id=ria.id, now=now) == 1
        assert bell(db, user_id=ria.id, now=now).unread == 0


def test_old_events_and_unowned_leads_stay_quiet(session, team, now):
    pool = make_lead(session, "Grace Hopper", now=now, owner=None)
    log_activity(session, lead_id=pool.id, kind=K.DEMO_REQUEST, now=now)
    log_activity(session, lead_id=team["mine"].id, kind=K.PRICING_REQUEST, now=now,
                 occurred_at=now - timedelta(days=3))  # a backfill
    # What the owner heard on a call and logged themself is not news to them.
    log_activity(session, lead_id=team["mine"].id, kind=K.PRICING_REQUEST, now=now, user_id=team["ria"].id)
    assert session.execute(select(Notification)).scalars().all() == []


def test_assignment_hot_and_at_risk(session, team, now):
    ria, sam, maya = team["ria"], team["sam"], team["maya"]
    # A manager gives Sam's lead to Ria: Ria hears of it; claiming one's own does not notify.
    reassign_leads(session, lead_ids=[team["sams"].id], owner_id=ria.id, now=now, actor=_as_user(maya))
    kinds = lambda user: [n.kind for n in session.execute(  # noqa: E731
        select(Notification).where(Notification.user_id == user.id).order_by(Notification.id)).scalars()]
    assert kinds(ria) == ["assigned"]
    # Prospect activity that makes the lead Hot notifies its owner (after the request itself).
    lead = team["mine"]
    for kind in (K.PRICING_REQUEST, K.DEMO_REQUEST, K.MEETING, K.EMAIL_RECEIVED):
        log_activity(session, lead_id=lead.id, kind=kind, now=now)
    session.refresh(lead)
    assert lead.tier == "hot"
    assert kinds(ria).count("hot") == 1
    # A team deal going At risk tells the managers, not the rep.
    session.execute(text("UPDATE leads SET risk_level = 'high', risk_points = 80 WHERE id = :id"), {"id": lead.id})
    assert kinds(maya) == ["at_risk"] and "at_risk" not in kinds(ria)


def test_one_statement_writing_many_leads_notifies_as_one_write_per_lead_would(session, team, now):
    """The news trigger runs once per statement (migration 0034): a bulk write, as an import or a
    sweep makes, tells each person of each lead once, and leaves alone the leads it did not change."""
    ria, sam, maya = team["ria"], team["sam"], team["maya"]
    ada, alan = team["mine"], team["sams"]
    quiet = make_lead(session, "Grace Hopper", now=now, owner=ria)
    session.execute(text("UPDATE leads SET risk_level = 'high', risk_points = 80 WHERE id = :id"), {"id": quiet.id})
    before = session.execute(select(Notification.id)).scalars().all()
    # Ada and Alan go At risk in one statement; Grace was already: the managers hear of Ada and Alan.
    session.execute(text("UPDATE leads SET risk_level = 'high', risk_points = 80 WHERE id = ANY(:ids)"),
                    {"ids": [ada.id, alan.id, quiet.id]})
    # Both given to Sam in one statement: he hears of Ada, not of his own Alan.
    session.execute(text("UPDATE leads SET owner_id = :sam WHERE id = ANY(:ids)"),
                    {"sam": sam.id, "ids": [ada.id, alan.id]})
    news = session.execute(select(Notification.user_id, Notification.lead_id, Notification.kind)
                           .where(Notification.id.not_in(before), Notification.user_id.in_([ria.id, sam.id, maya.id]))
                           .order_by(Notification.id)).all()
    assert news == [(maya.id, ada.id, "at_risk"), (maya.id, alan.id, "at_risk"), (sam.id, ada.id, "assigned")]
    assert ria.id not in {user for user, _lead, _kind in news}


def test_a_due_follow_up_notifies_once(session, team, now):
    ria, lead = team["ria"], team["mine"]
    with acting(session, ria) as db:
        schedule_next_step(db, lead_id=lead.id, kind="email", due_at=now + timedelta(hours=1), now=now)
    assert notify_due_follow_ups(session, now) == 0
    later = now + timedelta(hours=1, minutes=1)
    assert notify_due_follow_ups(session, later) == 1
    assert notify_due_follow_ups(session, later) == 0  # once
    with acting(session, ria) as db:
        seen = bell(db, user_id=ria.id, now=later)
    assert [(x.kind, x.message) for x in seen.lines] == [("follow_up_due", "Email Ada Lovelace (Acme) is due")]


# --- Closing deals ------------------------------------------------------------------------------


def test_lost_reason_is_kept_shown_by_source_and_stage_and_forgotten_on_reopen(session, team, now):
    ria, maya = team["ria"], team["maya"]
    other = make_lead(session, "Linus T", now=now, owner=ria, source=Source.LINKEDIN, stage=Stage.PROPOSAL)
    with acting(session, ria) as db:
        move_lead_to_stage(db, lead_id=team["mine"].id, to_stage=Stage.LOST, now=now,
                           lost_reason="Price too high", lost_note="Went with the cheaper plan elsewhere")
        move_leads_to_stage(db, lead_ids=[other.id], to_stage=Stage.LOST, now=now, lost_reason="Price too high")
    with acting(session, maya) as db:
        move_lead_to_stage(db, lead_id=team["sams"].id, to_stage=Stage.LOST, now=now)  # no reason (API)
        by_source, by_stage = lost_reason_tables(db, flt=AnalyticsFilter())
    assert by_source.columns == ["LinkedIn", "Website"]  # the sources' own order
    assert [(r.reason, r.total, r.counts) for r in by_source.rows] == [
        ("Price too high", 2, [1, 1]), (NO_REASON, 1, [0, 1])]
    assert by_stage.columns == ["New", "Qualified", "Proposal"]
    assert [(r.reason, r.counts) for r in by_stage.rows] == [("Price too high", [0, 1, 1]), (NO_REASON, [1, 0, 0])]
    # Reopened, the deal forgets why it was lost.
    with acting(session, ria) as db:
        move_lead_to_stage(db, lead_id=other.id, to_stage=Stage.NEGOTIATION, now=now)
    session.refresh(other)
    assert (other.lost_reason, other.lost_note) == (None, None)


def test_won_confirms_value_and_close_date(session, team, now):
    lead = team["mine"]
    day = now - timedelta(days=2)
    with acting(session, team["ria"]) as db:
        with pytest.raises(InvalidInput) as refused:
            move_lead_to_stage(db, lead_id=lead.id, to_stage=Stage.WON, now=now, closed_at=now + timedelta(days=1))
        assert refused.value.field == "closed_at"
        move_lead_to_stage(db, lead_id=lead.id, to_stage=Stage.WON, now=now, won_value=Decimal("4200.50"),
                           closed_at=day)
    session.refresh(lead)
    assert (lead.stage, lead.deal_value, lead.closed_at) == ("won", Decimal("4200.50"), day)


def test_only_managers_change_the_list(session, team):
    ria, maya = team["ria"], team["maya"]
    with acting(session, maya) as db:
        add_reason(db, label="  Lost to   in-house build ", actor=_as_user(maya))
        with pytest.raises(InvalidInput):
            add_reason(db, label="lost to in-house build", actor=_as_user(maya))
    with acting(session, ria) as db:
        assert reason_labels(db)[-1] == "Lost to in-house build"
        with pytest.raises(Forbidden):
            remove_reason(db, label="No budget", actor=_as_user(ria))
        # Row security refuses too, even past the service.
        assert db.execute(text("DELETE FROM lost_reasons WHERE label = 'No budget'")).rowcount == 0
    with acting(session, maya) as db:
        remove_reason(db, label="No budget", actor=_as_user(maya))
        assert "No budget" not in reason_labels(db)
