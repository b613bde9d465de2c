"""Deal risk rules, case by case with their boundaries; then properties for any input."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_app.domain import ActivityKind as K
from crm_app.domain import RiskLevel, Stage
from crm_app.scoring.engine import ActivityFact
from crm_app.scoring.risk import Message, RiskFacts, assess_risk, level_for, risk_headline

NOW = datetime(2026, 11, 12, 15, 0, tzinfo=timezone.utc)
NEG, POS = -0.6, 0.7


def ago(**delta) -> datetime:
    return NOW - timedelta(**delta)


def deal(*activities: tuple[K, datetime], messages=(), stage=Stage.PROPOSAL, entered=None, limit=14,
         created=None) -> RiskFacts:
    """A deal in `stage` (entered 3 days ago unless said), with activities and messages. Replies
    and notes given as messages are also activities, as they are in the database."""
    msgs = [Message(k, t, s) for k, t, s in messages]
    return RiskFacts(
        stage=stage, stage_entered_at=entered or ago(days=3), created_at=created or ago(days=10),
        stage_limit_days=limit,
        activities=[ActivityFact(k, t) for k, t in activities] + [ActivityFact(m.kind, m.occurred_at) for m in msgs],
        messages=msgs,
    )


CONTACTED = (K.CALL, ago(days=1))  # a recent call: no "no contact" reason

CASES = [
    # (description, facts, expected points, expected reason codes)
    ("a fresh deal, just contacted: no risk", deal(CONTACTED), 0, []),
    ("negative reply 2 days ago after our last contact, unanswered: high",
     deal((K.CALL, ago(days=5)), messages=[(K.EMAIL_RECEIVED, ago(days=2), NEG)]), 55,
     ["negative_reply", "unanswered"]),
    ("negative reply we answered: medium",
     deal((K.CALL, ago(days=1)), messages=[(K.EMAIL_RECEIVED, ago(days=2), NEG)]), 40, ["negative_reply"]),
    ("a later friendly reply clears the negative one",
     deal((K.CALL, ago(hours=1)), messages=[(K.EMAIL_RECEIVED, ago(days=5), NEG),
                                            (K.EMAIL_RECEIVED, ago(days=2), POS)]), 0, []),
    ("a negative reply older than 30 days no longer counts (our email since is unanswered)",
     deal((K.EMAIL_SENT, ago(days=25)), (K.CALL, ago(days=1)),
          messages=[(K.EMAIL_RECEIVED, ago(days=31), NEG)]), 10, ["no_reply"]),
    ("a reply with no text has no tone",
     deal((K.CALL, ago(days=1)), messages=[(K.EMAIL_RECEIVED, ago(days=2), None)]), 0, []),
    ("a reply unanswered for just under a day is not yet a reason",
     deal((K.CALL, ago(days=3)), messages=[(K.EMAIL_RECEIVED, ago(hours=23), POS)]), 0, []),
    ("negative note: +20", deal(CONTACTED, messages=[(K.NOTE, ago(days=4), NEG)]), 20, ["negative_note"]),
    ("exactly the limit is not past it (stuck needs limit + 1 whole days)",
     deal(CONTACTED, entered=ago(days=14, hours=23)), 0, []),
    ("past the stage limit: +20", deal(CONTACTED, entered=ago(days=15)), 20, ["stalled"]),
    ("over twice the limit: +25", deal(CONTACTED, entered=ago(days=29)), 25, ["stalled"]),
    ("a stage without a limit never stalls", deal(CONTACTED, entered=ago(days=90), limit=None), 0, []),
    ("engagement fell from 4 to 1",
     deal(CONTACTED, *[(K.PAGE_VISIT, ago(days=15 + d)) for d in range(4)], (K.EMAIL_OPENED, ago(days=2))),
     20, ["falling_engagement"]),
    ("engagement from 4 to 2 is not under half",
     deal(CONTACTED, *[(K.PAGE_VISIT, ago(days=15 + d)) for d in range(4)],
          (K.EMAIL_OPENED, ago(days=2)), (K.EMAIL_OPENED, ago(days=3))), 0, []),
    ("2 to 0 is too little to call a trend",
     deal(CONTACTED, (K.PAGE_VISIT, ago(days=16)), (K.PAGE_VISIT, ago(days=17))), 0, []),
    ("no reply to our email of 22 days ago: +10",
     deal((K.EMAIL_SENT, ago(days=22)), CONTACTED, messages=[(K.EMAIL_RECEIVED, ago(days=30), POS)]), 10,
     ["no_reply"]),
    ("their reply 22 days ago, our first call since yesterday: they have had a day, not 3 weeks",
     deal(CONTACTED, messages=[(K.EMAIL_RECEIVED, ago(days=22), POS)]), 0, []),
    # Every answer counts, whatever its channel (issue #12: "No reply since our first contact on 11 Sep"
    # on a lead that asked for pricing twice that day).
    ("a pricing request today ends the silence since our first contact",
     deal((K.EMAIL_SENT, ago(days=60)), CONTACTED, (K.PRICING_REQUEST, ago(hours=2)),
          (K.PRICING_REQUEST, ago(hours=1)), created=ago(days=70)), 0, []),
    ("a demo request is an answer",
     deal((K.EMAIL_SENT, ago(days=60)), CONTACTED, (K.DEMO_REQUEST, ago(days=3)), created=ago(days=70)),
     0, []),
    ("a form is an answer", deal((K.EMAIL_SENT, ago(days=60)), CONTACTED, (K.FORM_SUBMISSION, ago(days=3)),
                                 created=ago(days=70)), 0, []),
    ("a meeting is an answer (and our contact)", deal((K.EMAIL_SENT, ago(days=60)), (K.MEETING, ago(days=2)),
                                                       created=ago(days=70)), 0, []),
    ("a page visit is attention, not an answer",
     deal((K.EMAIL_SENT, ago(days=43)), CONTACTED, (K.PAGE_VISIT, ago(days=1)), created=ago(days=50)), 15,
     ["no_reply"]),
    ("a pricing request left two days without contact from us: +15",
     deal((K.EMAIL_SENT, ago(days=5)), (K.PRICING_REQUEST, ago(days=2)), (K.PRICING_REQUEST, ago(hours=3))),
     15, ["unanswered"]),
    ("a request older than 30 days no longer waits on us (no contact from us does)",
     deal((K.EMAIL_SENT, ago(days=40)), (K.FORM_SUBMISSION, ago(days=31)), created=ago(days=50)), 10,
     ["no_contact"]),
    ("no reply since our first contact 43 days ago: +15",
     deal((K.EMAIL_SENT, ago(days=43)), CONTACTED, created=ago(days=50)), 15, ["no_reply"]),
    ("no contact from us for 15 days: +10", deal((K.CALL, ago(days=15)), created=ago(days=16)), 10,
     ["no_contact"]),
    ("never contacted, arrived 20 days ago: +10", deal(created=ago(days=20)), 10, ["no_contact"]),
    ("old and quiet: stalled twice over, no reply for 6 weeks, no contact: Medium, not High",
     deal((K.EMAIL_SENT, ago(days=60)), entered=ago(days=40), created=ago(days=70)), 50,
     ["stalled", "no_reply", "no_contact"]),
    ("everything at once is capped at 100",
     deal((K.CALL, ago(days=60)), *[(K.PAGE_VISIT, ago(days=15 + d)) for d in range(4)],
          messages=[(K.EMAIL_RECEIVED, ago(days=3), NEG), (K.NOTE, ago(days=3), NEG)],
          entered=ago(days=40), created=ago(days=70)),
     100, ["negative_reply", "unanswered", "negative_note", "stalled", "falling_engagement", "no_contact"]),
]


@pytest.mark.parametrize("description, facts, points, codes", CASES, ids=[c[0] for c in CASES])
def test_rules(description, facts, points, codes):
    result = assess_risk(facts, NOW)
    assert result.points == points
    assert [r.code for r in result.reasons] == codes
    assert result.level is level_for(points)


def test_levels_and_their_boundaries():
    assert [level_for(p) for p in (0, 24, 25, 54, 55, 100)] == [
        RiskLevel.LOW, RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.MEDIUM, RiskLevel.HIGH, RiskLevel.HIGH]
    with pytest.raises(ValueError):
        level_for(101)


def test_closed_deals_have_no_risk():
    for stage in (Stage.WON, Stage.LOST):
        facts = deal(messages=[(K.EMAIL_RECEIVED, ago(days=2), NEG)], stage=stage, entered=ago(days=90))
        result = assess_risk(facts, NOW)
        assert (result.level, result.points, result.reasons) == (None, 0, ())


def test_reasons_say_what_happened_and_when():
    result = assess_risk(deal((K.CALL, ago(days=5)), messages=[(K.EMAIL_RECEIVED, ago(days=2), NEG)],
                              entered=ago(days=20)), NOW)
    assert [(r.points, r.text) for r in result.reasons] == [
        (40, "Negative reply on 10 Nov"),
        (15, "No contact from us since their reply on 10 Nov"),
        (20, "In Proposal since 23 Oct, past its 14-day limit"),
    ]
    assert (result.last_reply_at, result.last_reply_sentiment) == (ago(days=2), NEG)


def test_an_answer_says_what_it_was():
    waiting = assess_risk(deal((K.EMAIL_SENT, ago(days=5)), (K.PRICING_REQUEST, ago(days=2))), NOW)
    assert [r.text for r in waiting.reasons] == ["No contact from us since their pricing request on 10 Nov"]
    assert risk_headline([r.as_dict() for r in waiting.reasons], "Proposal", NOW) == (
        "At risk: pricing request 2 days ago unanswered")
    silent = assess_risk(deal((K.DEMO_REQUEST, ago(days=50)), (K.EMAIL_SENT, ago(days=45)), CONTACTED,
                              created=ago(days=60)), NOW)
    assert [r.text for r in silent.reasons] == ["No reply since our email on 28 Sep (6 weeks or more)"]
    never = assess_risk(deal((K.EMAIL_SENT, ago(days=22)), CONTACTED, created=ago(days=30)), NOW)
    assert [r.text for r in never.reasons] == ["No reply since our first contact on 21 Oct (3 weeks or more)"]


def test_queue_words_are_relative_to_now():
    result = assess_risk(deal((K.CALL, ago(days=5)), messages=[(K.EMAIL_RECEIVED, ago(days=2), NEG)]), NOW)
    reasons = [r.as_dict() for r in result.reasons]
    assert risk_headline(reasons, "Proposal", NOW) == "At risk: negative reply 2 days ago, no contact since"
    later = NOW + timedelta(days=1)
    assert risk_headline(reasons, "Proposal", later) == "At risk: negative reply 3 days ago, no contact since"
    stalled = assess_risk(deal((K.CALL, ago(days=20)), entered=ago(days=30), created=ago(days=40)), NOW)
    assert risk_headline([r.as_dict() for r in stalled.reasons], "Proposal", NOW) == (
        "At risk: 30 days in Proposal, last contact 20 days ago")


def test_valid_until_is_when_time_alone_changes_the_result():
    facts = deal(CONTACTED, entered=ago(days=10))  # the 14-day limit is passed 15 x 24 h after entering
    result = assess_risk(facts, NOW)
    assert result.valid_until == ago(days=10) + timedelta(days=15)
    assert assess_risk(facts, result.valid_until - timedelta(seconds=1)).points == 0
    assert assess_risk(facts, result.valid_until).points == 20


# --- Properties ----------------------------------------------------------------------------------

KINDS = list(K)
moments = st.integers(min_value=1, max_value=90 * 24).map(lambda h: NOW - timedelta(hours=h))
activity = st.tuples(st.sampled_from(KINDS), moments)
message = st.tuples(st.sampled_from([K.EMAIL_RECEIVED, K.NOTE]), moments,
                    st.one_of(st.none(), st.floats(min_value=-1, max_value=1)))
any_deal = st.builds(
    lambda acts, msgs, stage, entered, limit: deal(*acts, messages=msgs, stage=stage, entered=entered,
                                                   limit=limit, created=NOW - timedelta(days=120)),
    st.lists(activity, max_size=12), st.lists(message, max_size=4), st.sampled_from(list(Stage)), moments,
    st.one_of(st.none(), st.integers(min_value=1, max_value=60)),
)


@settings(max_examples=300, deadline=None)
@given(any_deal)
def test_any_deal_has_a_level_that_matches_capped_points_with_reasons(facts):
    result = assess_risk(facts, NOW)
    if facts.stage.is_closed:
        assert result.level is None
        return
    assert 0 <= result.points <= 100
    assert result.points == min(100, sum(r.points for r in result.reasons))
    assert result.level is level_for(result.points)
    assert all(r.points > 0 and r.text for r in result.reasons)
    assert result.valid_until is None or result.valid_until > NOW


@settings(max_examples=200, deadline=None)
@given(any_deal, st.integers(min_value=1, max_value=60 * 24))
def test_nothing_changes_before_valid_until(facts, hours):
    """Between now and valid_until the stored result stays true: the sweep may wait until then."""
    result = assess_risk(facts, NOW)
    later = NOW + timedelta(hours=hours)
    if result.valid_until is not None and later >= result.valid_until:
        return
    again = assess_risk(facts, later)
    assert (again.points, [r.text for r in again.reasons]) == (result.points, [r.text for r in result.reasons])


around = st.integers(min_value=-90 * 24, max_value=10 * 24).map(lambda h: NOW + timedelta(hours=h))
deal_around_now = st.builds(
    lambda acts, msgs, entered, limit: deal(*acts, messages=msgs, entered=entered, limit=limit,
                                            created=NOW - timedelta(days=120)),
    st.lists(st.tuples(st.sampled_from(KINDS), around), max_size=12),
    st.lists(st.tuples(st.sampled_from([K.EMAIL_RECEIVED, K.NOTE]), around,
                       st.one_of(st.none(), st.floats(min_value=-1, max_value=1))), max_size=4),
    moments, st.one_of(st.none(), st.integers(min_value=1, max_value=60)),
)


@settings(max_examples=200, deadline=None)
@given(deal_around_now, st.integers(min_value=1, max_value=20 * 24))
def test_an_activity_stamped_later_ends_the_assessment_when_it_comes(facts, hours):
    """Activities sent with a later time count from their moment: until then the stored risk holds,
    and `valid_until` is no later than the first of them, so the sweep reassesses the deal then."""
    result = assess_risk(facts, NOW)
    upcoming = [a.occurred_at for a in facts.activities if a.occurred_at > NOW]
    if upcoming:
        assert result.valid_until is not None and result.valid_until <= min(upcoming)
    later = NOW + timedelta(hours=hours)
    if result.valid_until is not None and later >= result.valid_until:
        return
    again = assess_risk(facts, later)
    assert (again.points, [r.text for r in again.reasons]) == (result.points, [r.text for r in result.reasons])


@settings(max_examples=200, deadline=None)
@given(any_deal)
def test_a_fresh_negative_reply_never_lowers_the_risk_level(facts):
    """Whatever else is known, a negative reply cannot make a deal safer. (Its points may be a few
    lower than before it: a reply ends "no reply for 6 weeks" and counts as engagement, but the
    level, what reps act on, never drops.)"""
    order = [RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH]
    before = assess_risk(facts, NOW)
    reply = Message(K.EMAIL_RECEIVED, NOW, -0.8)  # newer than anything generated
    worse = RiskFacts(stage=facts.stage, stage_entered_at=facts.stage_entered_at, created_at=facts.created_at,
                      stage_limit_days=facts.stage_limit_days,
                      activities=[*facts.activities, ActivityFact(reply.kind, reply.occurred_at)],
                      messages=[*facts.messages, reply])
    after = assess_risk(worse, NOW)
    if facts.stage.is_closed:
        assert after.level is None
    else:
        assert order.index(after.level) >= order.index(before.level)
        assert after.level is not RiskLevel.LOW


@settings(max_examples=300, deadline=None)
@given(any_deal)
def test_only_a_sign_from_the_deal_makes_it_high(facts):
    """Old and quiet is Medium at most: High needs a negative reply or note, an unanswered reply or
    falling engagement."""
    result = assess_risk(facts, NOW)
    signs = {"negative_reply", "negative_note", "unanswered", "falling_engagement"}
    if result.level is RiskLevel.HIGH:
        assert signs & {r.code for r in result.reasons}


ANSWERS = [K.EMAIL_RECEIVED, K.PRICING_REQUEST, K.DEMO_REQUEST, K.FORM_SUBMISSION, K.MEETING]


def _with_answer(facts: RiskFacts, kind: K, at: datetime, sentiment: float | None = None) -> RiskFacts:
    """The same deal with one more answer from the prospect; a reply is a message too, as in the database."""
    messages = [*facts.messages, Message(kind, at, sentiment)] if kind is K.EMAIL_RECEIVED else facts.messages
    return RiskFacts(stage=facts.stage, stage_entered_at=facts.stage_entered_at, created_at=facts.created_at,
                     stage_limit_days=facts.stage_limit_days,
                     activities=[*facts.activities, ActivityFact(kind, at)], messages=messages)


def _no_reply_points(result) -> int:
    return sum(r.points for r in result.reasons if r.code == "no_reply")


@settings(max_examples=1000, deadline=None)
@given(any_deal, st.sampled_from(ANSWERS), moments,
       st.one_of(st.none(), st.floats(min_value=-1, max_value=1)))
def test_an_answer_never_adds_to_the_silence(facts, kind, at, sentiment):
    """Whenever it came and whatever it was, an answer from the prospect never makes "no reply" worse."""
    before, after = assess_risk(facts, NOW), assess_risk(_with_answer(facts, kind, at, sentiment), NOW)
    assert _no_reply_points(after) <= _no_reply_points(before)


@settings(max_examples=1000, deadline=None)
@given(any_deal, st.sampled_from(ANSWERS), st.one_of(st.none(), st.floats(min_value=0, max_value=1)))
def test_an_answer_just_now_never_raises_the_risk(facts, kind, sentiment):
    """The prospect answering right now (a friendly or toneless reply, a pricing or demo request, a
    form, a meeting) never makes the deal riskier, in points or in level."""
    order = [None, RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH]
    before, after = assess_risk(facts, NOW), assess_risk(_with_answer(facts, kind, NOW, sentiment), NOW)
    assert after.points <= before.points
    assert order.index(after.level) <= order.index(before.level)
    assert not any(r.code == "no_reply" for r in after.reasons)
