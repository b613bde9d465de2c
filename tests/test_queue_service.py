"""The action queue on real PostgreSQL: which leads, in which order, in which words, every one of them
reachable page by page, under row-level security; and the actions on it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from crm_app.db.models import Activity, FollowUp, Lead
from crm_app.domain import REQUEST_KINDS
from crm_app.domain import ActivityKind as K
from crm_app.domain import Stage
from crm_app.scoring import tier_for
from crm_app.services.errors import InvalidInput, StaleLead
from crm_app.services.leads import add_activity, check_activity, log_activity
from crm_app.services.queue import (
    ANSWERED_FOR,
    FRESH_WINDOW,
    GROUPS,
    action_queue,
    dismiss_item,
    fresh_signal,
    schedule_follow_up,
    snooze_lead,
    snooze_time,
    work_item,
)
from tests.conftest import NOW
from tests.factories import acting, make_lead, make_user

HOT = [(K.PRICING_REQUEST, timedelta(minutes=20)), (K.DEMO_REQUEST, timedelta(days=2))]
RECENT = timedelta(days=2)  # in the New stage for 2 days: within its 7-day limit, not stuck


def _follow_up(session, lead, owner, due_in: timedelta, note: str | None = None) -> FollowUp:
    follow_up = FollowUp(lead_id=lead.id, owner_id=owner.id, due_at=NOW + due_in, note=note)
    session.add(follow_up)
    session.commit()
    return follow_up


def _score(session, lead, score: int, at: datetime = NOW) -> Lead:
    """Give a lead a score as a rescoring at `at` would store it, whatever the engine: the queue's
    rules are about tiers and signals, not about how an engine arrives at a score."""
    session.execute(text("UPDATE leads SET score = :score, tier = :tier, scored_at = :at WHERE id = :id"),
                    {"score": score, "tier": tier_for(score).value, "at": at, "id": lead.id})
    session.commit()
    session.refresh(lead)
    return lead


def _queue(session, owner_id, now=NOW, **kw):
    return action_queue(session, owner_id=owner_id, now=now, **kw)


def _names(session, owner_id, now=NOW, **kw):
    return [item.name for item in _queue(session, owner_id, now, **kw).items]


def _counts(page) -> dict[str, int]:
    return {g.kind: g.count for g in page.groups}


@pytest.fixture
def team(session):
    """Ria's book: one of each kind of item, plus leads that must not show."""
    ria = make_user(session, "Ria Rep")
    sam = make_user(session, "Sam Seller")
    ada = make_lead(session, "Ada", now=NOW, owner=ria, company_size=120, activities=HOT,
                    created_ago=RECENT)  # asked for pricing 20 minutes ago
    grace = make_lead(session, "Grace", now=NOW, owner=ria, created_ago=RECENT,
                      activities=[(K.EMAIL_OPENED, timedelta(days=3))])
    alan = make_lead(session, "Alan", now=NOW, owner=ria, stage=Stage.NEGOTIATION, company_size=800,
                     created_ago=timedelta(days=21))  # stuck: 21 > 14 days
    edsger = make_lead(session, "Edsger", now=NOW, owner=ria, stage=Stage.PROPOSAL,
                       created_ago=timedelta(days=3))  # proposal limit 14: not stuck
    barbara = make_lead(session, "Barbara", now=NOW, owner=ria, stage=Stage.WON, company_size=120,
                        activities=HOT)  # asked for pricing, but closed
    linus = make_lead(session, "Linus", now=NOW, owner=sam, company_size=120, activities=HOT,
                      created_ago=RECENT)  # Sam's
    _follow_up(session, grace, ria, -timedelta(days=2), "send the proposal")
    return {"ria": ria, "sam": sam, "ada": ada, "grace": grace, "alan": alan, "edsger": edsger,
            "barbara": barbara, "linus": linus}


def test_queue_lists_fresh_then_overdue_then_stuck_with_words_a_rep_understands(session, team):
    page = _queue(session, team["ria"].id)

    assert [i.name for i in page.items] == ["Ada", "Grace", "Alan"]
    assert (page.total, page.matching, page.offset) == (3, 3, 0)
    ada, grace, alan = page.items
    assert (ada.kind, ada.kind_label, ada.headline) == (
        "fresh", "New signals", "Asked for pricing 20 min ago: call within the hour")
    assert ada.score == team["ada"].score
    assert (grace.kind, grace.headline) == ("overdue", "Follow up: overdue by 2 days — ‘send the proposal’")
    assert grace.follow_up_id > 0
    assert (alan.kind, alan.headline) == (
        "stuck", "Stuck in Negotiation for 21 days (limit 14): re-engage or close")
    assert [i.position for i in page.items] == [1, 2, 3]
    assert _counts(page) == {"fresh": 1, "overdue": 1, "hot": 0, "due": 0, "risk": 0, "stuck": 1}


def test_manager_view_holds_the_whole_team_and_a_lead_appears_once_with_its_other_reasons(session, team):
    _follow_up(session, team["ada"], team["ria"], timedelta(hours=1), "confirm the budget")
    items = _queue(session, None).items

    # Ada and Linus asked for pricing at the same moment: the higher score first, then the lower id.
    assert [i.name for i in items] == ["Ada", "Linus", "Grace", "Alan"]
    assert items[0].kind == "fresh"
    assert items[0].secondary == ["Follow up: due today at 16:00 — ‘confirm the budget’"]
    assert items[0].follow_up_id > 0  # logging a call on the item completes the follow-up too


# --- Fresh intent first ----------------------------------------------------------------------------


def test_a_fresh_pricing_request_goes_above_an_older_hot_lead_with_a_higher_score(session):
    """Issue #12: a fresh pricing request ranked below 25 Hot leads whose news was days old."""
    rep = make_user(session, "Ria Rep")
    old = _score(session, make_lead(session, "Old Hot", now=NOW, owner=rep, created_ago=RECENT,
                                    activities=[(K.DEMO_REQUEST, timedelta(days=10)),
                                                (K.PRICING_REQUEST, timedelta(days=9))]),
                 95, at=NOW - timedelta(days=9))
    new = _score(session, make_lead(session, "New Ask", now=NOW, owner=rep, created_ago=RECENT,
                                    activities=[(K.PRICING_REQUEST, timedelta(minutes=12))]), 45)
    assert old.score > new.score

    items = _queue(session, rep.id).items
    assert [(i.name, i.kind) for i in items] == [("New Ask", "fresh"), ("Old Hot", "hot")]
    assert items[0].headline == "Asked for pricing 12 min ago: call within the hour"
    assert items[1].headline == "Hot: last signal 9 days ago (asked for pricing), never contacted: follow up"
    assert "call" not in items[1].headline.lower()


def test_fresh_signals_come_newest_first_then_by_score_then_by_deal_value(session):
    rep = make_user(session, "Ria Rep")

    def lead(name, kind, ago, score, value=1000):
        made = make_lead(session, name, now=NOW, owner=rep, created_ago=RECENT, deal_value=value,
                         activities=[(kind, ago)])
        return _score(session, made, score, at=NOW - timedelta(days=5))

    lead("Demo 2h", K.DEMO_REQUEST, timedelta(hours=2), 90)
    lead("Reply 5m", K.EMAIL_RECEIVED, timedelta(minutes=5), 30)
    lead("Form small", K.FORM_SUBMISSION, timedelta(hours=1), 60, value=1000)
    lead("Form big", K.FORM_SUBMISSION, timedelta(hours=1), 60, value=50_000)
    lead("Form likely", K.FORM_SUBMISSION, timedelta(hours=1), 65, value=10)
    lead("Form 5h", K.FORM_SUBMISSION, timedelta(hours=5), 99)  # outside the 4-hour window

    items = _queue(session, rep.id).items
    assert [i.name for i in items if i.kind == "fresh"] == [
        "Reply 5m", "Form likely", "Form big", "Form small", "Demo 2h"]
    assert [i.headline for i in items[:2]] == ["Replied by email 5 min ago: call within the hour",
                                              "Submitted a form 1 h ago: call within the hour"]
    assert [(i.name, i.kind) for i in items[5:]] == [("Form 5h", "hot")]
    assert FRESH_WINDOW == timedelta(hours=4)


def test_contacting_after_the_signal_takes_it_off_and_a_new_signal_brings_it_back(session):
    rep = make_user(session, "Ria Rep")
    lead = make_lead(session, "Pat", now=NOW, owner=rep, created_ago=RECENT,
                     activities=[(K.PRICING_REQUEST, timedelta(minutes=30))])
    _score(session, lead, 80, at=NOW - timedelta(minutes=30))
    assert _queue(session, rep.id).items[0].kind == "fresh"

    log_activity(session, lead_id=lead.id, kind=K.CALL, now=NOW, occurred_at=NOW - timedelta(minutes=10),
                 user_id=rep.id)
    _score(session, lead, 80, at=NOW)
    # Contacted 10 minutes ago and nothing new since: nothing to do now, for a day.
    assert _names(session, rep.id) == []
    assert _names(session, rep.id, now=NOW + ANSWERED_FOR - timedelta(minutes=11)) == []
    later = _queue(session, rep.id, now=NOW + ANSWERED_FOR).items
    assert [(i.kind, i.headline) for i in later] == [
        ("hot", "Hot: last signal 1 day ago (asked for pricing), last contact 1 day ago: follow up")]

    # The prospect writes back: on top again at once, as a fresh reply.
    log_activity(session, lead_id=lead.id, kind=K.EMAIL_RECEIVED, now=NOW + timedelta(minutes=2))
    _score(session, lead, 80, at=NOW + timedelta(minutes=2))
    back = _queue(session, rep.id, now=NOW + timedelta(minutes=5)).items
    assert [(i.kind, i.headline) for i in back] == [
        ("fresh", "Replied by email 3 min ago: call within the hour")]


def test_a_look_at_the_website_after_our_call_brings_a_hot_lead_back_but_not_to_the_top(session):
    rep = make_user(session, "Ria Rep")
    lead = make_lead(session, "Vic", now=NOW, owner=rep, created_ago=RECENT,
                     activities=[(K.PRICING_REQUEST, timedelta(days=3)), (K.CALL, timedelta(hours=2)),
                                 (K.PAGE_VISIT, timedelta(minutes=30))])
    _score(session, lead, 75, at=NOW - timedelta(days=3))
    assert [(i.kind, i.headline) for i in _queue(session, rep.id).items] == [
        ("hot", "Hot: last signal 30 min ago (visited the website), not contacted since: follow up")]


def test_a_hot_lead_last_met_says_so_once(session):
    rep = make_user(session, "Ria Rep")
    lead = make_lead(session, "Met", now=NOW, owner=rep, created_ago=RECENT,
                     activities=[(K.PRICING_REQUEST, timedelta(days=6)), (K.MEETING, timedelta(days=2))])
    _score(session, lead, 85, at=NOW - timedelta(days=6))
    assert [i.headline for i in _queue(session, rep.id).items] == ["Hot: last met 2 days ago: follow up"]


def test_a_lead_that_turned_hot_after_something_the_prospect_did_is_fresh(session):
    rep = make_user(session, "Ria Rep")
    visits = make_lead(session, "Visits", now=NOW, owner=rep, created_ago=RECENT,
                       activities=[(K.PRICING_PAGE_VISIT, timedelta(minutes=40))])
    _score(session, visits, 55, at=NOW - timedelta(minutes=41))
    _score(session, visits, 72, at=NOW - timedelta(minutes=40))  # turned Hot with that visit
    # Made Hot 30 minutes ago by arithmetic alone (a new model), the prospect quiet for 10 days.
    quiet = make_lead(session, "Quiet", now=NOW, owner=rep, created_ago=RECENT,
                      activities=[(K.PAGE_VISIT, timedelta(days=10))])
    _score(session, quiet, 71, at=NOW - timedelta(minutes=30))
    # Turned Hot 5 hours ago: no longer fresh.
    earlier = make_lead(session, "Earlier", now=NOW, owner=rep, created_ago=RECENT,
                        activities=[(K.EMAIL_CLICKED, timedelta(hours=5))])
    _score(session, earlier, 74, at=NOW - timedelta(hours=5))

    items = _queue(session, rep.id).items
    assert [(i.name, i.kind) for i in items] == [("Visits", "fresh"), ("Earlier", "hot"), ("Quiet", "hot")]
    assert items[0].headline == "Turned Hot (viewed the pricing page 40 min ago): call within the hour"
    assert fresh_signal(session, visits.id, NOW) == items[0].headline
    assert fresh_signal(session, quiet.id, NOW) is None


def test_the_database_keeps_when_a_lead_turned_hot(session):
    lead = make_lead(session, "Temp", now=NOW, created_ago=RECENT)
    assert lead.hot_since is None
    _score(session, lead, 80, at=NOW - timedelta(hours=3))
    assert lead.hot_since == NOW - timedelta(hours=3)
    _score(session, lead, 90, at=NOW)  # still Hot: since when it turned
    assert lead.hot_since == NOW - timedelta(hours=3)
    _score(session, lead, 60, at=NOW)
    assert lead.hot_since is None
    _score(session, lead, 70, at=NOW + timedelta(minutes=1))
    assert lead.hot_since == NOW + timedelta(minutes=1)
    with pytest.raises(IntegrityError), session.begin_nested():
        session.execute(text("UPDATE leads SET hot_since = NULL WHERE id = :id"), {"id": lead.id})


def test_call_within_the_hour_is_promised_only_for_a_fresh_signal(session, team):
    ria = team["ria"]
    # Five Hot leads with old news, one fresh request.
    for n in range(5):
        old = make_lead(session, f"Old {n}", now=NOW, owner=ria, created_ago=RECENT,
                        activities=[(K.PRICING_REQUEST, timedelta(days=9 + n))])
        _score(session, old, 90 - n, at=NOW - timedelta(days=9))
    items = _queue(session, ria.id).items
    promising = [i.name for i in items
                 if "call within the hour" in i.headline or "call now" in i.headline.lower()]
    assert promising == ["Ada"]
    assert [i.kind for i in items].count("hot") == 5


# --- Every item reachable, and counted -------------------------------------------------------------


@pytest.fixture
def big_book(session):
    """A rep with 36 leads waiting: 3 fresh, 2 overdue, 30 older Hot, 1 stuck."""
    rep = make_user(session, "Busy Rep")
    for n in range(30):
        _score(session, make_lead(session, f"Hot {n:02}", now=NOW, owner=rep, created_ago=RECENT),
               70 + n % 30, at=NOW - timedelta(days=3))
    for n in range(3):
        make_lead(session, f"Fresh {n}", now=NOW, owner=rep, created_ago=RECENT,
                  activities=[(K.DEMO_REQUEST, timedelta(minutes=10 + n))])
    for n in range(2):
        _follow_up(session, make_lead(session, f"Promised {n}", now=NOW, owner=rep, created_ago=RECENT), rep,
                   -timedelta(hours=n + 1))
    make_lead(session, "Stuck", now=NOW, owner=rep, stage=Stage.NEGOTIATION, created_ago=timedelta(days=20))
    return rep


def test_paging_reaches_every_item_and_the_counts_match_the_database(session, big_book):
    first = _queue(session, big_book.id)
    second = _queue(session, big_book.id, offset=25)
    assert (first.total, first.matching, second.offset) == (36, 36, 25)
    assert [i.position for i in first.items + second.items] == list(range(1, 37))
    ids = [i.lead_id for i in first.items + second.items]
    assert len(set(ids)) == 36
    assert [i.kind for i in first.items][:6] == ["fresh"] * 3 + ["overdue"] * 2 + ["hot"]
    assert second.items[-1].name == "Stuck"  # item 36, reachable
    assert _queue(session, big_book.id, offset=50).items == []

    counts = _counts(first)
    assert counts == {"fresh": 3, "overdue": 2, "hot": 30, "due": 0, "risk": 0, "stuck": 1}
    db = session.execute(text(
        """SELECT count(*) FILTER (WHERE tier = 'hot' AND last_activity_at IS NULL) AS hot,
                  count(*) FILTER (WHERE EXISTS (
                      SELECT 1 FROM activities a
                       WHERE a.lead_id = leads.id AND a.kind = 'demo_request'
                         AND a.occurred_at > :cut)) AS fresh,
                  (SELECT count(*) FROM follow_ups
                    WHERE owner_id = :rep AND done_at IS NULL AND due_at < :now) AS overdue,
                  count(*) AS all_leads
             FROM leads WHERE owner_id = :rep"""),
        {"rep": big_book.id, "now": NOW, "cut": NOW - FRESH_WINDOW}).one()
    assert (counts["hot"], counts["fresh"], counts["overdue"]) == (db.hot, db.fresh, db.overdue)
    assert sum(counts.values()) == first.total == db.all_leads


def test_one_group_at_a_time_pages_through_it(session, big_book):
    hot = _queue(session, big_book.id, group="hot")
    more = _queue(session, big_book.id, group="hot", offset=25)
    assert (hot.matching, hot.total, len(hot.items), len(more.items)) == (30, 36, 25, 5)
    assert {i.kind for i in hot.items + more.items} == {"hot"}
    assert [i.position for i in more.items] == [26, 27, 28, 29, 30]
    scores = [i.score for i in hot.items + more.items]
    assert scores == sorted(scores, reverse=True)
    assert _counts(hot) == _counts(_queue(session, big_book.id))  # counts are for every group, always
    with pytest.raises(InvalidInput):
        _queue(session, big_book.id, group="urgent")




def test_under_row_level_security_a_rep_gets_their_queue_and_a_manager_the_team(session, team):
    manager = make_user(session, "Meg Manager", role="manager")
    as_owner = [(i.lead_id, i.kind) for i in _queue(session, team["ria"].id).items]
    team_view = [(i.lead_id, i.kind) for i in _queue(session, None).items]
    with acting(session, team["ria"].id) as ria:
        assert [(i.lead_id, i.kind) for i in _queue(ria, team["ria"].id).items] == as_owner
        assert _queue(ria, team["sam"].id).items == []  # Sam's leads are not hers to see
    with acting(session, manager.id) as meg:
        assert [(i.lead_id, i.kind) for i in _queue(meg, None).items] == team_view
    assert len(team_view) > len(as_owner)


# --- The queue's invariants, for any book --------------------------------------------------------

KINDS = [K.PRICING_REQUEST, K.DEMO_REQUEST, K.EMAIL_RECEIVED, K.FORM_SUBMISSION, K.PAGE_VISIT,
         K.EMAIL_OPENED, K.CALL, K.EMAIL_SENT, K.MEETING]
minutes_ago = st.integers(min_value=1, max_value=60 * 24 * 6)
a_lead = st.fixed_dictionaries({
    "score": st.integers(min_value=0, max_value=100),
    "turned_ago": minutes_ago,
    "stage": st.sampled_from([Stage.NEW, Stage.NEGOTIATION, Stage.PROPOSAL]),
    "entered_days": st.integers(min_value=1, max_value=40),
    "activities": st.lists(st.tuples(st.sampled_from(KINDS), minutes_ago), max_size=4),
    "follow_up_in": st.one_of(st.none(), st.integers(min_value=-3000, max_value=500)),
    "risk": st.sampled_from([None, "high"]),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(a_lead, min_size=1, max_size=9), st.integers(min_value=1, max_value=5))
def test_any_book_pages_to_the_same_list_in_group_order_with_true_counts_and_words(session, leads, size):
    rep = session.execute(text("SELECT id FROM users WHERE email = 'prop@test.crm'")).scalar()
    if rep is None:
        rep = make_user(session, "Prop Rep").id
    with session.begin_nested() as example:
        made = {}
        for n, spec in enumerate(leads):
            lead = Lead(name=f"P{n}", source="website", stage=spec["stage"].value, owner_id=rep,
                        created_at=NOW - timedelta(days=60),
                        stage_entered_at=NOW - timedelta(days=spec["entered_days"]),
                        score=spec["score"], tier=tier_for(spec["score"]).value,
                        scored_at=NOW - timedelta(minutes=spec["turned_ago"]),
                        risk_level=spec["risk"], risk_points=60 if spec["risk"] else None)
            session.add(lead)
            session.flush()
            for kind, ago in spec["activities"]:
                checked = check_activity(kind=kind, now=NOW, occurred_at=NOW - timedelta(minutes=ago))
                add_activity(session, lead, checked, now=NOW)
            if spec["follow_up_in"] is not None:
                session.add(FollowUp(lead_id=lead.id, owner_id=rep,
                                     due_at=NOW + timedelta(minutes=spec["follow_up_in"])))
            session.flush()
            made[lead.id] = (lead, spec)

        whole = _queue(session, rep, limit=1000)
        paged, offset = [], 0
        while True:
            page = _queue(session, rep, limit=size, offset=offset)
            if not page.items:
                break
            paged += page.items
            offset += size
        # Every item reachable, each once, in the same order.
        assert [(i.lead_id, i.kind, i.position) for i in paged] == [
            (i.lead_id, i.kind, i.position) for i in whole.items]
        assert [i.position for i in whole.items] == list(range(1, len(whole.items) + 1))
        assert len({i.lead_id for i in whole.items}) == len(whole.items) == whole.total
        # Counts are the items of each group; groups come in their order.
        assert _counts(whole) == {kind: sum(1 for i in whole.items if i.kind == kind) for kind in GROUPS}
        order = [list(GROUPS).index(i.kind) for i in whole.items]
        assert order == sorted(order)
        for item in whole.items:
            lead, spec = made[item.lead_id]
            session.refresh(lead)
            # Only a fresh signal promises a call within the hour.
            assert ("call within the hour" in item.headline) == (item.kind == "fresh")
            if item.kind == "fresh":
                requests = [NOW - timedelta(minutes=ago) for kind, ago in spec["activities"]
                            if kind in REQUEST_KINDS]
                contacted = lead.last_contacted_at
                asked = any(t > NOW - FRESH_WINDOW and (contacted is None or t > contacted) for t in requests)
                assert asked or (lead.hot_since and lead.hot_since > NOW - FRESH_WINDOW)
            # Contacted lately with nothing from the prospect since: only a promise keeps it here.
            contacted = lead.last_contacted_at
            answered = (contacted is not None and contacted > NOW - ANSWERED_FOR
                        and (lead.last_activity_at is None or lead.last_activity_at <= contacted))
            if answered:
                assert item.kind in ("overdue", "due")
        example.rollback()
    session.expunge_all()


# --- Actions ---------------------------------------------------------------------------------------


def test_follow_ups_later_today_show_but_tomorrows_do_not(session, team):
    _follow_up(session, team["edsger"], team["ria"], timedelta(hours=8, minutes=59), "today")  # 23:59
    _follow_up(session, team["edsger"], team["ria"], timedelta(hours=9, minutes=1), "tomorrow")
    items = _queue(session, team["ria"].id).items
    edsger = next(i for i in items if i.name == "Edsger")
    assert (edsger.kind, edsger.headline) == ("due", "Follow up: due today at 23:59 — ‘today’")
    assert edsger.secondary == []


def test_a_follow_up_on_a_pool_lead_shows_in_the_queue_of_the_rep_who_promised_it(session, team):
    pool = make_lead(session, "Pool Pat", now=NOW, owner=None, created_ago=RECENT)
    _follow_up(session, pool, team["ria"], -timedelta(hours=1), "call back")
    items = _queue(session, team["ria"].id).items
    assert [(i.name, i.kind) for i in items if i.name == "Pool Pat"] == [("Pool Pat", "overdue")]
    assert "Pool Pat" not in _names(session, team["sam"].id)


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
    item = next(i for i in _queue(session, team["ria"].id).items if i.name == "Grace")
    until = snooze_time("tomorrow", NOW)
    snooze_lead(session, lead_id=grace.id, until=until, now=NOW, follow_up_id=item.follow_up_id)

    assert "Grace" not in _names(session, team["ria"].id)
    assert session.get(FollowUp, item.follow_up_id).due_at == until
    again = _queue(session, team["ria"].id, now=until + timedelta(minutes=5)).items
    assert "Follow up: overdue by 5 min — ‘send the proposal’" in [i.headline for i in again]


def test_done_on_a_follow_up_removes_it(session, team):
    item = next(i for i in _queue(session, team["ria"].id).items if i.name == "Grace")
    dismiss_item(session, lead_id=item.lead_id, follow_up_id=item.follow_up_id, now=NOW)

    assert session.get(FollowUp, item.follow_up_id).done_at == NOW
    assert _names(session, team["ria"].id) == ["Ada", "Alan"]


def test_done_on_a_fresh_lead_hides_it_until_the_prospect_engages_again(session, team):
    ada = team["ada"]
    dismiss_item(session, lead_id=ada.id, now=NOW, expected_version=ada.version)
    assert "Ada" not in _names(session, team["ria"].id, now=NOW + timedelta(days=30))

    log_activity(session, lead_id=ada.id, kind=K.EMAIL_RECEIVED, now=NOW + timedelta(days=1))
    items = _queue(session, team["ria"].id, now=NOW + timedelta(days=1, minutes=3)).items
    assert [(i.name, i.headline) for i in items if i.kind == "fresh"] == [
        ("Ada", "Replied by email 3 min ago: call within the hour")]


def test_a_stale_version_is_refused_and_nothing_changes(session, team):
    ada = team["ada"]
    with pytest.raises(StaleLead):
        snooze_lead(session, lead_id=ada.id, until=NOW + timedelta(hours=1), now=NOW,
                    expected_version=ada.version - 1)
    assert session.get(Lead, ada.id).snoozed_until is None


def test_logging_a_call_from_a_follow_up_item_completes_it_and_schedules_the_next(session, team):
    ria, grace = team["ria"], team["grace"]
    item = next(i for i in _queue(session, ria.id).items if i.name == "Grace")
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


def test_nothing_to_do_gives_an_empty_queue_with_zero_counts(session):
    rep = make_user(session, "Quiet Rep")
    make_lead(session, "Calm", now=NOW, owner=rep, created_ago=timedelta(days=1))
    make_lead(session, "Closed", now=NOW, owner=rep, stage=Stage.LOST, company_size=120, activities=HOT)
    page = _queue(session, rep.id)
    assert (page.items, page.total, page.matching) == ([], 0, 0)
    assert _counts(page) == dict.fromkeys(GROUPS, 0)


def test_a_deal_just_past_its_limit_says_its_whole_days(session, team):
    session.get(Lead, team["alan"].id).stage_entered_at = NOW - timedelta(days=15, hours=3)
    session.commit()
    alan = next(i for i in _queue(session, team["ria"].id).items if i.name == "Alan")
    assert alan.headline == "Stuck in Negotiation for 15 days (limit 14): re-engage or close"
