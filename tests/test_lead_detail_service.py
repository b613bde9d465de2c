"""Editing a lead: validated at the edge, refused when stale, never losing what was stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from crm_app.db.models import Lead
from crm_app.domain import ActivityKind as K
from crm_app.domain import Stage
from crm_app.services.errors import InvalidInput, StaleLead
from crm_app.services.lead_detail import LeadEdit, lead_detail, update_lead
from crm_app.services.leads import log_activity, move_lead_to_stage
from tests.conftest import NOW
from tests.factories import make_lead, make_user


def _edit(lead: Lead, **changes) -> LeadEdit:
    base = dict(name=lead.name, email=lead.email or "", company=lead.company or "",
                company_size=str(lead.company_size or ""), deal_value=str(lead.deal_value), source=lead.source,
                owner_id=str(lead.owner_id or ""))
    return LeadEdit(**{**base, **changes})


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"name": "   "}, "name"),
        ({"email": "not-an-email"}, "email"),
        ({"company_size": "-3"}, "company_size"),
        ({"company_size": "12.5"}, "company_size"),
        ({"deal_value": "lots"}, "deal_value"),
        ({"deal_value": "-10"}, "deal_value"),
        ({"deal_value": "NaN"}, "deal_value"),
        ({"source": "carrier pigeon"}, "source"),
        ({"owner_id": "999999"}, "owner_id"),
        ({"owner_id": "Maya"}, "owner_id"),
        ({"company_size": "²"}, "company_size"),
    ],
)
def test_bad_edits_name_the_field_and_keep_the_stored_lead(session, changes, field):
    lead = make_lead(session, "Ada", now=NOW, company_size=20, deal_value=500)
    with pytest.raises(InvalidInput) as refused:
        update_lead(session, lead_id=lead.id, edit=_edit(lead, **changes), expected_version=lead.version, now=NOW)
    assert refused.value.field == field
    session.expire_all()
    stored = session.get(Lead, lead.id)
    assert (stored.name, stored.company_size, stored.deal_value, stored.version) == ("Ada", 20, 500, lead.version)


def test_a_duplicate_email_is_refused_on_the_email_field(session):
    make_lead(session, "Ada", now=NOW)
    grace = make_lead(session, "Grace", now=NOW)
    with pytest.raises(InvalidInput) as refused:
        update_lead(session, lead_id=grace.id, edit=_edit(grace, email="ADA@example.com"),
                    expected_version=grace.version, now=NOW)
    assert refused.value.field == "email"


def test_an_edit_rescores_and_a_stale_edit_is_refused(session):
    rep = make_user(session, "Ria Rep")
    lead = make_lead(session, "Ada", now=NOW, company_size=20)
    seen = lead.version
    updated = update_lead(session, lead_id=lead.id, edit=_edit(lead, company_size="1,200", owner_id=str(rep.id),
                                                               deal_value="$12,500.50"),
                          expected_version=seen, now=NOW)
    assert (updated.score, updated.company_size, str(updated.deal_value), updated.owner_id) == (
        10, 1200, "12500.50", rep.id)
    with pytest.raises(StaleLead):
        update_lead(session, lead_id=lead.id, edit=_edit(lead, name="Overwritten"), expected_version=seen, now=NOW)
    session.expire_all()
    assert session.get(Lead, lead.id).name == "Ada"


def test_detail_timeline_merges_activities_and_stage_changes_newest_first(session):
    rep = make_user(session, "Ria Rep")
    lead = make_lead(session, "Ada", now=NOW, owner=rep, activities=[(K.DEMO_REQUEST, timedelta(days=2))])
    move_lead_to_stage(session, lead_id=lead.id, to_stage="qualified", now=NOW - timedelta(days=1), user_id=rep.id)
    log_activity(session, lead_id=lead.id, kind=K.NOTE, body="Budget approved", now=NOW, user_id=rep.id)
    detail = lead_detail(session, lead.id, NOW)
    assert [(e.title, e.by) for e in detail.timeline] == [
        ("Note", "Ria Rep"), ("Moved from New to Qualified", "Ria Rep"), ("Demo request", "Prospect")]
    assert detail.timeline[0].body == "Budget approved"
    assert sum(r.points for r in detail.reasons) == detail.score
    assert detail.days_in_stage == 1


def test_managers_see_the_leads_own_changes_on_its_timeline_reps_do_not(session):
    from crm_app.domain import Role
    from crm_app.services.permissions import CurrentUser

    rep_row, boss_row = make_user(session, "Ria Rep"), make_user(session, "Meg Manager", role="manager")
    rep = CurrentUser(rep_row.id, rep_row.email, rep_row.name, Role.REP)
    boss = CurrentUser(boss_row.id, boss_row.email, boss_row.name, Role.MANAGER)
    lead = make_lead(session, "Ada", now=NOW, owner=rep_row, company="Engines")
    update_lead(session, lead_id=lead.id, edit=_edit(lead, company="Analytical Engines"),
                expected_version=lead.version, now=NOW + timedelta(minutes=5), actor_id=rep_row.id)
    move_lead_to_stage(session, lead_id=lead.id, to_stage="contacted", now=NOW + timedelta(minutes=6),
                       user_id=rep_row.id)

    managers_view = lead_detail(session, lead.id, NOW + timedelta(minutes=7), boss).timeline
    edits = [e for e in managers_view if e.kind == "audit"]
    assert [(e.title, e.body, e.by) for e in edits] == [("Lead edited", "company: Engines \u2192 Analytical Engines",
                                                         "Ria Rep")]
    assert managers_view[0].title == "Moved from New to Contacted"  # newest first; a move is shown once
    assert not [e for e in lead_detail(session, lead.id, NOW + timedelta(minutes=7), rep).timeline if e.kind == "audit"]


def test_only_a_fresh_signal_promises_a_call_within_the_hour(session):
    """Issue #12: "Call within the hour" was promised for every Hot lead, even one quiet for weeks."""
    fresh = make_lead(session, "Fresh", now=NOW, company_size=120,
                      activities=[(K.PRICING_REQUEST, timedelta(minutes=12))])
    assert lead_detail(session, fresh.id, NOW).tier_advice == (
        "Asked for pricing 12 min ago: call within the hour")
    stale = make_lead(session, "Stale", now=NOW, company_size=120,
                      activities=[(K.PRICING_REQUEST, timedelta(days=9)),
                                  (K.DEMO_REQUEST, timedelta(days=9))])
    session.execute(text("UPDATE leads SET score = 80, tier = 'hot', scored_at = :at WHERE id = :id"),
                    {"at": NOW - timedelta(days=9), "id": stale.id})
    session.expire_all()
    assert lead_detail(session, stale.id, NOW).tier_advice == "Most likely to buy: work first"


def test_a_closed_deal_asks_nothing_of_the_rep(session):
    """A won deal's page said "Cold · Leave to marketing" (session 11 note)."""
    for stage, said in ((Stage.WON, "Won: closed, nothing to do"), (Stage.LOST, "Lost: closed, nothing to do")):
        lead = make_lead(session, f"Closed {stage}", now=NOW, stage=stage,
                         activities=[(K.PRICING_REQUEST, timedelta(minutes=12))])
        assert lead_detail(session, lead.id, NOW).tier_advice == said
