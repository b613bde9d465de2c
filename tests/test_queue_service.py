"""The action queue on real PostgreSQL: which leads, in which order, in which words, and the actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from crm_app.db.models import Activity, FollowUp, Lead
from crm_app.domain import ActivityKind as K
from crm_app.domain import Stage
from crm_app.services.errors import InvalidInput, StaleLead
from crm_app.services.leads import log_activity
from crm_app.services.queue import (
    action_queue,
    dismiss_item,
    schedule_follow_up,
    snooze_lead,
    snooze_time,
    work_item,
)
from tests.conftest import NOW
from tests.factories import make_lead, make_user

HOT = [(K.PRICING_REQUEST, timedelta(minutes=20)), (K.DEMO_REQUEST, timedelta(days=2))]


def _follow_up(session, lead, owner, due_in: timedelta, note: str | None = None) -> FollowUp:
    follow_up = FollowUp(lead_id=lead.id, owner_id=owner.id, due_at=NOW + due_in, note=note)
    session.add(follow_up)
    session.commit()
    return follow_up


def _names(session, owner_id, now=NOW):
    return [item.name for item in action_queue(session, owner_id=owner_id, now=now)[0]]


@pytest.fixture
def team(session):
    """Ria's book: one of each kind of item, plus leads that must not show."""
    ria = make_user(session, "Ria Rep")
    sam = make_user(session, "Sam Seller")
    # New leads entered their stage 2 days ago: within the 7-day limit, so not stuck.
    ada = make_lead(session, "Ada", now=NOW, owner=ria, company_size=120, activities=HOT,
                    created_ago=timedelta(days=2))  # 85, hot
    grace = make_lead(session, "Grace", now=NOW, owner=ria, created_ago=timedelta(days=2),
                      activities=[(K.EMAIL_OPENED, timedelta(days=3))])  # 5
    alan = make_lead(session, "Alan", now=NOW, owner=ria, stage=Stage.NEGOTIATION, company_size=800,
                     created_ago=timedelta(days=21))  # 10, stuck 21 > 14 days
    edsger = make_lead(session, "Edsger", now=NOW, owner=ria, stage=Stage.PROPOSAL,
                       created_ago=timedelta(days=3))  # proposal limit 14: not stuck
    barbara = make_lead(session, "Barbara", now=NOW, owner=ria, stage=Stage.WON, company_size=120,
                        activities=HOT)  # hot but closed
    linus = make_lead(session, "Linus", now=NOW, owner=sam, company_size=120, activities=HOT,
                      created_ago=timedelta(days=2))  # Sam's
    _follow_up(session, grace, ria, -timedelta(days=2), "send the proposal")
    return {"ria": ria, "sam": sam, "ada": ada, "grace": grace, "alan": alan, "edsger": edsger,
            "barbara": barbara, "linus": linus}


def test_queue_lists_overdue_then_hot_then_stuck_with_words_a_rep_understands(session, team):
    items, total = action_queue(session, owner_id=team["ria"].id, now=NOW)

    assert [i.name for i in items] == ["Grace", "Ada", "Alan"]
    assert total == 3
    grace, ada, alan = items
    assert (ada.kind, ada.headline) == ("hot", "Call: asked for pricing 20 min ago")
    assert ada.score == team["ada"].score == 85
    assert (grace.kind, grace.headline) == ("overdue", "Follow up: overdue by 2 days — ‘send the proposal’")
    assert grace.follow_up_id > 0
    assert (alan.kind, alan.headline) == (
        "stuck", "Stuck in Negotiation for 21 days (limit 14): re-engage or close")
    assert [i.rank for i in items] == [500 + 5, 400 + 85, 100 + 10]


def test_manager_view_holds_the_whole_team_and_a_lead_appears_once_with_its_other_reasons(session, team):
    _follow_up(session, team["ada"], team["ria"], timedelta(hours=1), "confirm the budget")
    items, _ = action_queue(session, owner_id=None, now=NOW)

    assert [i.name for i in items] == ["Grace", "Ada", "Linus", "Alan"]
    assert items[1].headline.startswith("Call:")
    assert items[1].secondary == ["Follow up: due today at 16:00 — ‘confirm the budget’"]


def test_a_call_in_the_last_hour_takes_a_hot_lead_off_the_queue(session, team):
    log_activity(session, lead_id=team["ada"].id, kind=K.CALL, now=NOW, user_id=team["ria"].id,
                 occurred_at=NOW - timedelta(minutes=59))
    assert "Ada" not in _names(session, team["ria"].id)
    # An hour and a bit later it is due a call again.
    assert "Ada" in _names(session, team["ria"].id, now=NOW + timedelta(minutes=2))


def test_follow_ups_later_today_show_but_tomorrows_do_not(session, team):
    _follow_up(session, team["edsger"], team["ria"], timedelta(hours=8, minutes=59), "today")  # 23:59
    _follow_up(session, team["edsger"], team["ria"], timedelta(hours=9, minutes=1), "tomorrow")
    items, _ = action_queue(session, owner_id=team["ria"].id, now=NOW)
    edsger = next(i for i in items if i.name == "Edsger")
    assert (edsger.kind, edsger.headline) == ("due", "Follow up: due today at 23:59 — ‘today’")
    assert edsger.secondary == []


def test_stagnation_counts_from_the_stage_limit_exactly(session, team):
    alan = team["alan"]
    # Negotiation allows 14 days: stuck from the 15th whole day, the rule every page shares.
    session.get(Lead, alan.id).stage_entered_at = NOW - timedelta(days=15) + timedelta(seconds=1)
    session.commit()
    assert "Alan" not in _names(session, team["ria"].id)  # 14 whole days and then some: not yet
    assert "Alan" in _names(session, team["ria"].id, now=NOW + timedelta(seconds=1))


def test_snooze_hides_an_item_until_the_time(session, team):
    ada, version = team["ada"], team["ada"].version
    until = snooze_time("hour", NOW)
    snooze_lead(session, lead_id=ada.id, until=until, now=NOW, expected_version=version)

    assert "Ada" not in _names(session, team["ria"].id)
    assert "Ada" not in _names(session, team["ria"].id, now=until - timedelta(seconds=1))
    assert "Ada" in _names(session, team["ria"].id, now=until)
    assert session.get(Lead, ada.id).version == version + 1


def test_snoozing_a_follow_up_item_postpones_the_follow_up(session, team):
    grace = team["grace"]
    item = next(i for i in action_queue(session, owner_id=team["ria"].id, now=NOW)[0] if i.name == "Grace")
    until = snooze_time("tomorrow", NOW)
    snooze_lead(session, lead_id=grace.id, until=until, now=NOW, follow_up_id=item.follow_up_id)

    assert "Grace" not in _names(session, team["ria"].id)
    assert session.get(FollowUp, item.follow_up_id).due_at == until
    again = action_queue(session, owner_id=team["ria"].id, now=until + timedelta(minutes=5))[0]
    assert "Follow up: overdue by 5 min — ‘send the proposal’" in [i.headline for i in again]


def test_done_on_a_follow_up_removes_it(session, team):
    item = action_queue(session, owner_id=team["ria"].id, now=NOW)[0][0]
    assert item.name == "Grace"
    dismiss_item(session, lead_id=item.lead_id, follow_up_id=item.follow_up_id, now=NOW)

    assert session.get(FollowUp, item.follow_up_id).done_at == NOW
    assert _names(session, team["ria"].id) == ["Ada", "Alan"]


def test_done_on_a_hot_lead_hides_it_until_the_prospect_engages_again(session, team):
    ada = team["ada"]
    dismiss_item(session, lead_id=ada.id, now=NOW, expected_version=ada.version)
    assert "Ada" not in _names(session, team["ria"].id, now=NOW + timedelta(days=30))

    log_activity(session, lead_id=ada.id, kind=K.EMAIL_RECEIVED, now=NOW + timedelta(days=1))
    items = action_queue(session, owner_id=team["ria"].id, now=NOW + timedelta(days=1, minutes=3))[0]
    assert [(i.name, i.headline) for i in items if i.kind == "hot"] == [
        ("Ada", "Call: replied by email 3 min ago")]


def test_a_stale_version_is_refused_and_nothing_changes(session, team):
    ada = team["ada"]
    with pytest.raises(StaleLead):
        snooze_lead(session, lead_id=ada.id, until=NOW + timedelta(hours=1), now=NOW,
                    expected_version=ada.version - 1)
    assert session.get(Lead, ada.id).snoozed_until is None


def test_logging_a_call_from_a_follow_up_item_completes_it_and_schedules_the_next(session, team):
    ria, grace = team["ria"], team["grace"]
    item = next(i for i in action_queue(session, owner_id=ria.id, now=NOW)[0] if i.name == "Grace")
    work_item(session, lead_id=grace.id, kind=K.CALL, now=NOW, user_id=ria.id, body="Sent it over",
              follow_up_id=item.follow_up_id, follow_up_days=3, follow_up_note="check they read it",
              expected_version=item.version)

    call = session.execute(select(Activity).where(Activity.lead_id == grace.id, Activity.kind == "call")).scalar_one()
    assert (call.body, call.user_id) == ("Sent it over", ria.id)
    assert session.get(FollowUp, item.follow_up_id).done_at == NOW
    follow_ups = session.execute(
        select(FollowUp).where(FollowUp.lead_id == grace.id, FollowUp.done_at.is_(None))).scalars().all()
    assert [(f.due_at, f.note, f.owner_id) for f in follow_ups] == [
        (NOW + timedelta(days=3), "check they read it", ria.id)]
    assert "Grace" not in _names(session, ria.id)
    assert "Grace" in _names(session, ria.id, now=NOW + timedelta(days=3))


def test_bad_input_writes_nothing(session, team):
    ria, grace = team["ria"], team["grace"]
    with pytest.raises(InvalidInput) as refused:
        work_item(session, lead_id=grace.id, kind=K.NOTE, now=NOW, user_id=ria.id, body=" ",
                  follow_up_days=2)
    assert refused.value.field == "body"
    assert session.execute(select(FollowUp).where(FollowUp.lead_id == grace.id)).scalars().all()[0].due_at \
        == NOW - timedelta(days=2)
    assert len(session.execute(select(FollowUp).where(FollowUp.lead_id == grace.id)).all()) == 1
    with pytest.raises(InvalidInput):
        schedule_follow_up(session, lead_id=grace.id, owner_id=ria.id, in_days=0, now=NOW)
    with pytest.raises(InvalidInput):
        snooze_lead(session, lead_id=grace.id, until=NOW, now=NOW)


def test_snooze_choices_end_when_they_say(session):
    # NOW is Thursday 12 Nov 2026, 15:00 UTC.
    assert snooze_time("hour", NOW) == NOW + timedelta(hours=1)
    assert snooze_time("tomorrow", NOW) == NOW.replace(day=13, hour=9)
    assert snooze_time("next_week", NOW) == NOW.replace(day=16, hour=9)


def test_nothing_to_do_gives_an_empty_queue(session):
    rep = make_user(session, "Quiet Rep")
    make_lead(session, "Calm", now=NOW, owner=rep, created_ago=timedelta(days=1))
    make_lead(session, "Closed", now=NOW, owner=rep, stage=Stage.LOST, company_size=120, activities=HOT)
    assert action_queue(session, owner_id=rep.id, now=NOW) == ([], 0)


def test_a_deal_just_past_its_limit_says_its_whole_days(session, team):
    session.get(Lead, team["alan"].id).stage_entered_at = NOW - timedelta(days=15, hours=3)
    session.commit()
    alan = next(i for i in action_queue(session, owner_id=team["ria"].id, now=NOW)[0] if i.name == "Alan")
    assert alan.headline == "Stuck in Negotiation for 15 days (limit 14): re-engage or close"
