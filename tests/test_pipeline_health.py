"""Pipeline health on real PostgreSQL: per stage, per tier, stuck deals, new leads per week."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm_app.domain import ActivityKind as K
from crm_app.domain import Stage
from crm_app.services.pipeline_health import drying_up, pipeline_health, week_start
from tests.conftest import NOW
from tests.factories import make_lead, make_user

HOT = [(K.PRICING_REQUEST, timedelta(minutes=20)), (K.DEMO_REQUEST, timedelta(days=2))]


def test_counts_and_values_per_open_stage_tiers_and_stuck_deals(session):
    ria = make_user(session, "Ria Rep")
    sam = make_user(session, "Sam Seller")
    make_lead(session, "A", now=NOW, owner=ria, deal_value=1000, company_size=120, activities=HOT)
    make_lead(session, "B", now=NOW, owner=ria, deal_value=2500, created_ago=timedelta(days=1))
    make_lead(session, "C", now=NOW, owner=ria, stage=Stage.NEGOTIATION, deal_value=40000,
              created_ago=timedelta(days=15))  # stuck: 15 > 14 days
    make_lead(session, "D", now=NOW, owner=ria, stage=Stage.WON, deal_value=99000)  # closed
    make_lead(session, "E", now=NOW, owner=sam, stage=Stage.NEGOTIATION, deal_value=7000,
              created_ago=timedelta(days=2))

    mine = pipeline_health(session, owner_id=ria.id, now=NOW)
    by_stage = {s.stage: s for s in mine.stages}
    assert [s.stage for s in mine.stages] == ["new", "contacted", "qualified", "meeting", "proposal",
                                              "negotiation"]
    assert (by_stage["new"].count, by_stage["new"].value_label) == (2, "$3,500")
    assert (by_stage["negotiation"].count, by_stage["negotiation"].value, by_stage["negotiation"].stuck) \
        == (1, 40000.0, 1)
    assert by_stage["proposal"].count == 0
    # A's "new" stage is 30 days old (limit 7): stuck too. B's is 1 day old.
    assert (mine.open_count, mine.open_value_label, mine.stuck) == (3, "$43,500", 2)
    assert (mine.hot, mine.warm, mine.cold) == (1, 0, 2)

    team = pipeline_health(session, owner_id=None, now=NOW)
    assert {s.stage: s.count for s in team.stages}["negotiation"] == 2
    assert team.open_value_label == "$50,500"


def _leads_in_weeks(session, owner, per_week: list[int]):
    """`per_week[i]` leads created in the week `len - 1 - i` weeks before NOW's (Tuesday noon)."""
    start = week_start(NOW)
    for i, count in enumerate(per_week):
        weeks_back = len(per_week) - 1 - i
        for j in range(count):
            created = start - timedelta(weeks=weeks_back) + timedelta(days=1, hours=12)
            if created > NOW:
                created = start
            make_lead(session, f"W{i}-{j}", now=NOW, owner=owner, created_ago=NOW - created)


def test_new_leads_per_week_and_the_drying_up_warning(session):
    ria = make_user(session, "Ria Rep")
    _leads_in_weeks(session, ria, [1, 0, 5, 5, 5, 5, 2, 3])  # 8 weeks, this week last

    health = pipeline_health(session, owner_id=ria.id, now=NOW)
    assert [w.count for w in health.weeks] == [1, 0, 5, 5, 5, 5, 2, 3]
    assert [w.current for w in health.weeks] == [False] * 7 + [True]
    assert health.weeks[-1].label == "9 Nov"  # NOW is Thursday 12 Nov 2026
    assert health.baseline == 5.0
    assert health.drying_up  # last week 2 < 60% of 5
    assert "Last week brought 2 new leads, against 5.0 a week" in health.drying_message


def test_no_warning_when_last_week_held_up(session):
    ria = make_user(session, "Ria Rep")
    _leads_in_weeks(session, ria, [0, 0, 5, 5, 5, 5, 3, 2])  # last week 3 = 60%: not below
    health = pipeline_health(session, owner_id=ria.id, now=NOW)
    assert not health.drying_up
    assert health.drying_message == ""


@pytest.mark.parametrize(
    "weeks,days_in,warn",
    [
        ([5, 5, 5, 5, 3, 0], 2.9, False),  # too early in the week to judge its pace
        ([5, 5, 5, 5, 3, 1], 3.0, True),  # on pace for 2.3 < 3
        ([5, 5, 5, 5, 3, 2], 3.0, False),  # on pace for 4.7
        ([1, 1, 1, 1, 0, 0], 6.0, False),  # too few leads to call it a trend
        ([5, 5, 5, 5, 2, 5], 1.0, True),  # last week alone is enough
    ],
)
def test_drying_up_rule(weeks, days_in, warn):
    assert drying_up(weeks, days_in)[0] is warn
