"""The rubric, case by case, including every boundary and cap; then properties for any input."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_app.domain import ActivityKind as K
from crm_app.domain import Tier
from crm_app.scoring import ActivityFact, LeadFacts, RuleBasedScoringEngine, tier_for

NOW = datetime(2026, 11, 12, 15, 0, tzinfo=timezone.utc)
ENGINE = RuleBasedScoringEngine()


def ago(**delta) -> datetime:
    return NOW - timedelta(**delta)


def facts(*activities: tuple[K, datetime], size: int | None = None) -> LeadFacts:
    return LeadFacts(company_size=size, activities=[ActivityFact(k, t) for k, t in activities])


CASES = [
    # (description, facts, expected score)
    ("nothing known", facts(), 0),
    ("pricing request long ago: +30 pricing, +5 one interaction", facts((K.PRICING_REQUEST, ago(days=10))), 35),
    ("pricing page visit counts as pricing interest", facts((K.PRICING_PAGE_VISIT, ago(days=3))), 35),
    ("demo request long ago: +15, +5", facts((K.DEMO_REQUEST, ago(days=5))), 20),
    ("size 50 is not over 50", facts(size=50), 0),
    ("size 51 is over 50", facts(size=51), 10),
    ("size 0 is allowed", facts(size=0), 0),
    ("activity 23h59m ago is recent", facts((K.PAGE_VISIT, ago(hours=23, minutes=59))), 25),
    ("activity exactly 24h ago is not recent", facts((K.PAGE_VISIT, ago(hours=24))), 5),
    ("activity 24h01m ago is not recent", facts((K.PAGE_VISIT, ago(hours=24, minutes=1))), 5),
    ("activity right now is recent", facts((K.EMAIL_OPENED, NOW)), 25),
    ("activity in the future is not known yet", facts((K.PRICING_REQUEST, NOW + timedelta(minutes=1))), 0),
    ("5 interactions: 25", facts(*[(K.EMAIL_OPENED, ago(days=d + 2)) for d in range(5)]), 25),
    ("6 interactions: capped at 25", facts(*[(K.EMAIL_OPENED, ago(days=d + 2)) for d in range(6)]), 25),
    ("4 interactions: 20", facts(*[(K.EMAIL_OPENED, ago(days=d + 2)) for d in range(4)]), 20),
    ("a rep's call does not count", facts((K.CALL, ago(hours=1))), 0),
    ("a rep's sent email and note do not count", facts((K.EMAIL_SENT, ago(hours=1)), (K.NOTE, ago(hours=1))), 0),
    ("a meeting counts as engagement", facts((K.MEETING, ago(hours=2))), 25),
    ("two pricing requests score pricing once", facts((K.PRICING_REQUEST, ago(days=9)), (K.PRICING_REQUEST, ago(days=8))), 40),
    (
        "everything: the maximum is exactly 100",
        facts(
            (K.PRICING_REQUEST, ago(hours=1)),
            (K.DEMO_REQUEST, ago(hours=2)),
            *[(K.PAGE_VISIT, ago(days=d + 1)) for d in range(6)],
            size=51,
        ),
        100,
    ),
]


@pytest.mark.parametrize("description,lead,expected", CASES, ids=[c[0] for c in CASES])
def test_rubric(description: str, lead: LeadFacts, expected: int) -> None:
    result = ENGINE.score(lead, NOW)
    assert result.score == expected
    assert sum(r.points for r in result.reasons) == result.score
    assert result.tier is tier_for(expected)


@pytest.mark.parametrize(
    "score,tier",
    [(0, Tier.COLD), (39, Tier.COLD), (40, Tier.WARM), (69, Tier.WARM), (70, Tier.HOT), (100, Tier.HOT)],
)
def test_tier_boundaries(score: int, tier: Tier) -> None:
    assert tier_for(score) is tier


@pytest.mark.parametrize("score", [-1, 101])
def test_tier_refuses_scores_outside_0_100(score: int) -> None:
    with pytest.raises(ValueError):
        tier_for(score)


def test_reasons_read_like_a_rep_would_say_them() -> None:
    result = ENGINE.score(
        facts((K.PRICING_REQUEST, ago(hours=3)), (K.DEMO_REQUEST, ago(days=2)), size=120), NOW
    )
    assert [(r.points, r.text) for r in result.reasons] == [
        (30, "Asked for pricing on 12 Nov"),
        (20, "Active in the last 24 hours (pricing request, 12 Nov 12:00)"),
        (15, "Requested a demo on 10 Nov"),
        (10, "Company has 120 employees (over 50)"),
        (10, "2 interactions (+5 each)"),
    ]
    assert result.score == 30 + 20 + 15 + 10 + 10
    assert result.tier is Tier.HOT


def test_every_pricing_request_is_named_with_its_date_and_a_view_of_the_page_only_without_one() -> None:
    asked_twice = ENGINE.score(
        facts((K.PRICING_PAGE_VISIT, ago(hours=1)), (K.PRICING_REQUEST, ago(days=2)),
              (K.PRICING_REQUEST, ago(days=400))), NOW,
    )  # fmt: skip
    assert asked_twice.reasons[0].text == "Asked for pricing 2 times: 10 Nov and 8 Oct 2025"
    only_viewed = ENGINE.score(facts((K.PRICING_PAGE_VISIT, ago(days=3)), (K.PRICING_PAGE_VISIT, ago(days=1))), NOW)
    assert only_viewed.reasons[0].text == "Viewed the pricing page 2 times, last on 11 Nov"
    assert sum(r.points == 30 for r in asked_twice.reasons) == 1  # pricing interest counts once


def test_a_reps_own_work_is_never_a_reason() -> None:
    logged = ENGINE.score(facts((K.CALL, ago(minutes=5)), (K.EMAIL_SENT, ago(days=1)), (K.NOTE, ago(hours=2))), NOW)
    assert logged.score == 0 and logged.reasons == ()


def test_recency_bonus_says_when_it_runs_out() -> None:
    result = ENGINE.score(facts((K.PAGE_VISIT, ago(hours=5))), NOW)
    assert result.valid_until == ago(hours=5) + timedelta(hours=24)
    assert ENGINE.score(facts((K.PAGE_VISIT, ago(days=5))), NOW).valid_until is None


kinds = st.sampled_from(list(K))
moments = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(timezone.utc)
)
lead_facts = st.builds(
    LeadFacts,
    company_size=st.one_of(st.none(), st.integers(min_value=0, max_value=1_000_000)),
    activities=st.lists(st.builds(ActivityFact, kinds, moments), max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(lead=lead_facts, now=moments)
def test_score_stays_within_0_100_and_equals_its_reasons(lead: LeadFacts, now: datetime) -> None:
    result = ENGINE.score(lead, now)
    assert 0 <= result.score <= 100
    assert sum(r.points for r in result.reasons) == result.score
    assert all(r.points > 0 and r.text for r in result.reasons)
    assert result.tier is tier_for(result.score)


@settings(max_examples=200, deadline=None)
@given(lead=lead_facts, now=moments, extra=st.builds(ActivityFact, kinds, moments))
def test_more_engagement_never_lowers_the_score(lead: LeadFacts, now: datetime, extra: ActivityFact) -> None:
    more = LeadFacts(company_size=lead.company_size, activities=[*lead.activities, extra])
    assert ENGINE.score(more, now).score >= ENGINE.score(lead, now).score


def test_an_activity_stamped_later_counts_from_its_moment_and_the_score_says_until_when() -> None:
    """A visit sent with a later time (an API client's clock, an event logged ahead) is not known yet:
    the score ignores it, but says it holds only until then, so the sweep rescores the lead then."""
    later = NOW + timedelta(hours=3)
    result = ENGINE.score(facts((K.PRICING_REQUEST, later), size=200), NOW)
    assert result.score == 10 and result.valid_until == later
    at_the_time = ENGINE.score(facts((K.PRICING_REQUEST, later), size=200), later)
    assert at_the_time.score == 10 + 30 + 20 + 5


around = st.integers(min_value=-60 * 24, max_value=10 * 24).map(lambda h: NOW + timedelta(hours=h))
leads_around_now = st.builds(
    LeadFacts,
    company_size=st.one_of(st.none(), st.integers(min_value=0, max_value=1_000)),
    activities=st.lists(st.builds(ActivityFact, kinds, around), max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(lead=leads_around_now, hours=st.integers(min_value=1, max_value=20 * 24))
def test_a_score_holds_until_its_valid_until(lead: LeadFacts, hours: int) -> None:
    """What the sweep relies on: the stored score stays true until `valid_until` (or for good without
    one), activities stamped after `now` included."""
    result = ENGINE.score(lead, NOW)
    later = NOW + timedelta(hours=hours)
    if result.valid_until is not None and later >= result.valid_until:
        return
    again = ENGINE.score(lead, later)
    assert (again.score, again.tier, [(r.points, r.key) for r in again.reasons]) == (
        result.score, result.tier, [(r.points, r.key) for r in result.reasons])
