"""Settings a manager types in: source costs and stage stagnation limits, with their messages."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crm_app.db.models import SourceCost, StageRule
from crm_app.services import settings as team_settings
from crm_app.services.errors import InvalidInput
from tests.conftest import NOW


def test_a_typed_cost_is_stored_changed_and_cleared(session):
    row = team_settings.set_source_cost(session, source="paid_search", typed="$12,500", now=NOW, actor=None)
    assert (row.cost, row.cost_label) == ("12500", "$12,500")
    assert session.get(SourceCost, "paid_search").cost == Decimal("12500.00")
    team_settings.set_source_cost(session, source="paid_search", typed="99.50", now=NOW, actor=None)
    assert session.get(SourceCost, "paid_search").cost == Decimal("99.50")
    row = team_settings.set_source_cost(session, source="paid_search", typed="  ", now=NOW, actor=None)
    assert row.cost_label == "Not set" and session.get(SourceCost, "paid_search") is None


def test_every_source_is_listed_with_or_without_a_cost(session):
    team_settings.set_source_cost(session, source="events", typed="800", now=NOW, actor=None)
    rows = {r.source: r for r in team_settings.source_costs(session)}
    assert len(rows) == 7
    assert rows["events"].cost_label == "$800" and rows["referral"].cost_label == "Not set"


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("lots", "Enter an amount in dollars"),
        ("-5", "cannot be negative"),
        ("1.005", "two decimals"),
        ("99999999999", "more than"),
        ("nan", "Enter an amount"),
    ],
)
def test_bad_costs_are_refused_with_a_message_and_nothing_changes(session, typed, message):
    team_settings.set_source_cost(session, source="webinar", typed="500", now=NOW, actor=None)
    with pytest.raises(InvalidInput, match=message) as error:
        team_settings.set_source_cost(session, source="webinar", typed=typed, now=NOW, actor=None)
    assert error.value.field == "cost"
    assert session.get(SourceCost, "webinar").cost == Decimal("500")


def test_the_largest_cost_is_named_to_the_cent(session):
    # Rounded to whole dollars it read "more than $10,000,000,000" for exactly $10,000,000,000.
    with pytest.raises(InvalidInput, match=r"^That is more than \$9,999,999,999\.99\.$"):
        team_settings.set_source_cost(session, source="webinar", typed="10,000,000,000", now=NOW, actor=None)
    assert team_settings.parse_cost("9,999,999,999.99") == Decimal("9999999999.99")


def test_stage_limits_are_listed_in_pipeline_order_and_edited(session):
    rows = team_settings.stage_rules(session)
    assert [r.stage for r in rows] == ["new", "contacted", "qualified", "meeting", "proposal", "negotiation"]
    assert rows[0].days == "7"  # seeded by migration 0002
    team_settings.set_stagnation_days(session, stage="proposal", typed=" 21 ", actor=None)
    assert session.get(StageRule, "proposal").stagnation_days == 21


@pytest.mark.parametrize(
    ("stage", "typed", "field", "message"),
    [
        ("new", "0", "days", "between 1 and 365"),
        ("new", "366", "days", "between 1 and 365"),
        ("new", "2.5", "days", "whole number"),
        ("new", "²", "days", "whole number"),
        ("new", "", "days", "whole number"),
        ("won", "5", "stage", "closed stage"),
        ("limbo", "5", "stage", "Unknown stage"),
    ],
)
def test_bad_stage_limits_are_refused(session, stage, typed, field, message):
    with pytest.raises(InvalidInput, match=message) as error:
        team_settings.set_stagnation_days(session, stage=stage, typed=typed, actor=None)
    assert error.value.field == field
    assert session.get(StageRule, "new").stagnation_days == 7  # the default, unchanged
