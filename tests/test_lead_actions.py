"""A rep's everyday actions on real PostgreSQL, under row-level security as the app runs them: add a
lead, claim from the pool and return to it, move and snooze a selection, edit a row inline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlmodel import Session

from crm_app.db.models import AuditEntry, Lead, StageChange
from crm_app.db.queries import LeadFilter
from crm_app.domain import ActivityKind as K
from crm_app.domain import Stage
from crm_app.services.errors import Forbidden, InvalidInput, StaleLead
from crm_app.services.exporting import filter_from_dict, filter_to_dict, stream_leads_csv
from crm_app.services.lead_actions import (
    claim_leads,
    create_lead,
    edit_inline,
    move_leads_to_stage,
    return_to_pool,
    snooze_leads,
)
from crm_app.services.lead_detail import LeadEdit
from tests.conftest import NOW
from tests.factories import acting, make_lead, make_user




@pytest.fixture
def team(session: Session) -> dict:
    ria, sam = make_user(session, "Ria Rep"), make_user(session, "Sam Seller")
    maya = make_user(session, "Maya Manager", role="manager")
    return {
        "ria": ria, "sam": sam, "maya": maya,
        "mine": make_lead(session, "Ada Lovelace", now=NOW, owner=ria),
        "pool": make_lead(session, "Edsger Dijkstra", now=NOW, owner=None),
        "pool2": make_lead(session, "Barbara Liskov", now=NOW, owner=None, stage=Stage.WON),
        "sams": make_lead(session, "Alan Turing", now=NOW, owner=sam),
    }


def _new(**fields) -> LeadEdit:
    return LeadEdit(**{"name": "Katherine Johnson", "email": "kj@nasa.example", "company": "NASA",
                       "company_size": "250", "source": "referral", "deal_value": "15,000", **fields})


def _audit(session: Session, action: str) -> list[AuditEntry]:
    return list(session.execute(select(AuditEntry).where(AuditEntry.action == action)).scalars())


# --- Adding a lead ---------------------------------------------------------------------------------


def test_a_rep_adds_a_lead_for_themself_scored_at_once_with_its_history(session, team):
    with acting(session, team["ria"]) as db:
        lead = create_lead(db, edit=_new(owner_id=str(team["ria"].id)), stage="contacted", now=NOW)
    stored = session.get(Lead, lead.id)
    session.refresh(stored)
    assert (stored.owner_id, stored.stage, str(stored.deal_value), stored.company_size) == (
        team["ria"].id, "contacted", "15000.00", 250)
    # Scored at once: the referral source and a 250-person company earn their rubric points with reasons.
    assert stored.score > 0 and stored.scored_at == NOW and stored.score_reasons
    assert sum(r["points"] for r in stored.score_reasons) == stored.score
    change = session.execute(select(StageChange).where(StageChange.lead_id == lead.id)).scalars().one()
    assert (change.from_stage, change.to_stage, change.user_id) == (None, "contacted", team["ria"].id)
    created = _audit(session, "lead_created")
    assert [(e.lead_id, e.actor_id, e.new["via"]) for e in created] == [(lead.id, team["ria"].id, "app")]


def test_a_rep_may_add_to_the_pool_but_not_for_another_rep(session, team):
    with acting(session, team["ria"]) as db:
        pooled = create_lead(db, edit=_new(owner_id=""), now=NOW)
        assert pooled.owner_id is None
        with pytest.raises(Forbidden, match="A rep adds leads for themself or the unassigned pool"):
            create_lead(db, edit=_new(email="other@nasa.example", owner_id=str(team["sam"].id)), now=NOW)
    assert session.execute(select(Lead).where(Lead.email == "other@nasa.example")).first() is None


def test_a_manager_may_add_a_lead_for_anyone_active(session, team):
    with acting(session, team["maya"]) as db:
        lead = create_lead(db, edit=_new(owner_id=str(team["sam"].id)), now=NOW)
    assert session.get(Lead, lead.id).owner_id == team["sam"].id


def test_a_duplicate_email_is_refused_without_naming_whose_lead_has_it(session, team):
    sams_email = team["sams"].email.upper()  # any case: the unique index is on lower(email)
    with acting(session, team["ria"]) as db:
        with pytest.raises(InvalidInput) as refused:
            create_lead(db, edit=_new(email=sams_email, owner_id=str(team["ria"].id)), now=NOW)
    assert (str(refused.value), refused.value.field) == ("Another lead already has this email.", "email")
    assert "Alan" not in str(refused.value) and "Sam" not in str(refused.value)


@pytest.mark.parametrize("fields,field", [
    ({"name": "  "}, "name"),
    ({"email": "not-an-email"}, "email"),
    ({"deal_value": "lots"}, "deal_value"),
    ({"company_size": "-3"}, "company_size"),
    ({"source": "carrier pigeon"}, "source"),
    ({"owner_id": "999999"}, "owner_id"),
])
def test_bad_input_names_the_field_and_saves_nothing(session, team, fields, field):
    before = session.execute(text("SELECT count(*) FROM leads")).scalar_one()
    with acting(session, team["ria"]) as db:
        with pytest.raises(InvalidInput) as refused:
            create_lead(db, edit=_new(**fields), now=NOW)
    assert refused.value.field == field
    assert session.execute(text("SELECT count(*) FROM leads")).scalar_one() == before


def test_an_unknown_stage_is_refused_on_the_stage_field(session, team):
    with acting(session, team["ria"]) as db, pytest.raises(InvalidInput) as refused:
        create_lead(db, edit=_new(), stage="dreaming", now=NOW)
    assert refused.value.field == "stage"


# --- Claiming and returning --------------------------------------------------------------------------


def test_a_rep_claims_pool_leads_only_and_hears_why_the_rest_were_skipped(session, team):
    ids = [team["pool"].id, team["pool2"].id, team["mine"].id, team["sams"].id]
    with acting(session, team["ria"]) as db:
        outcome = claim_leads(db, lead_ids=ids, now=NOW)
    assert outcome.changed == 2
    # Sam's lead is invisible to Ria under row-level security: skipped as not visible, never claimed.
    assert outcome.summary("Claimed") == "Claimed 2 leads; skipped 2: 1 already yours, 1 no longer visible to you."
    owners = dict(session.execute(select(Lead.id, Lead.owner_id).where(Lead.id.in_(ids))).all())
    assert owners == {team["pool"].id: team["ria"].id, team["pool2"].id: team["ria"].id,
                      team["mine"].id: team["ria"].id, team["sams"].id: team["sam"].id}
    claimed = _audit(session, "lead_claimed")
    assert sorted((e.lead_id, e.actor_id, e.old["owner_id"], e.new["owner_id"]) for e in claimed) == sorted(
        [(team["pool"].id, team["ria"].id, None, team["ria"].id),
         (team["pool2"].id, team["ria"].id, None, team["ria"].id)])


def test_a_manager_claiming_skips_leads_other_reps_own(session, team):
    with acting(session, team["maya"]) as db:
        outcome = claim_leads(db, lead_ids=[team["sams"].id, team["pool"].id], now=NOW)
    assert outcome.summary("Claimed") == "Claimed 1 lead; skipped 1: 1 owned by someone else."
    assert session.get(Lead, team["sams"].id).owner_id == team["sam"].id


def test_a_rep_returns_own_leads_to_the_pool(session, team):
    version = team["mine"].version
    with acting(session, team["ria"]) as db:
        outcome = return_to_pool(db, lead_ids=[team["mine"].id, team["pool"].id], now=NOW)
    assert outcome.summary("Returned") == "Returned 1 lead; skipped 1: 1 already in the pool."
    lead = session.get(Lead, team["mine"].id)
    session.refresh(lead)
    assert lead.owner_id is None and lead.version == version + 1
    [entry] = _audit(session, "lead_returned")
    assert (entry.old, entry.new) == ({"owner_id": team["ria"].id}, {"owner_id": None})


def test_an_empty_or_huge_selection_is_refused(session, team):
    with acting(session, team["ria"]) as db:
        with pytest.raises(InvalidInput, match="Select at least one lead"):
            claim_leads(db, lead_ids=[], now=NOW)
        with pytest.raises(InvalidInput, match="at most 500"):
            claim_leads(db, lead_ids=list(range(1, 502)), now=NOW)


# --- Acting on a selection -------------------------------------------------------------------------


def test_a_bulk_move_touches_only_visible_leads_with_history_and_new_scores(session, team):
    ids = [team["mine"].id, team["pool"].id, team["sams"].id]
    with acting(session, team["ria"]) as db:
        outcome = move_leads_to_stage(db, lead_ids=ids, to_stage="won", now=NOW)
    assert outcome.summary("Moved") == "Moved 2 leads; skipped 1: 1 no longer visible to you."
    stages = dict(session.execute(select(Lead.id, Lead.stage).where(Lead.id.in_(ids))).all())
    assert stages == {team["mine"].id: "won", team["pool"].id: "won", team["sams"].id: "new"}
    won = session.get(Lead, team["mine"].id)
    session.refresh(won)
    assert won.closed_at == NOW and won.score_at_close is not None and won.scored_at == NOW
    assert session.execute(select(StageChange.lead_id).where(StageChange.to_stage == "won",
                                                             StageChange.user_id == team["ria"].id)
                           ).scalars().all().__len__() == 2
    assert len(_audit(session, "stage_moved")) == 2


def test_a_bulk_won_keeps_each_value_and_takes_the_close_day_given(session, team):
    """Ten deals signed last week are marked Won today: they close on the day given (a lead that
    arrived after it, on the day it arrived), each keeps its own value; a future day is refused."""
    late = make_lead(session, "Late Arrival", now=NOW, owner=team["ria"], deal_value=7000)
    session.execute(text("UPDATE leads SET created_at = :at WHERE id = :id"),
                    {"at": NOW - timedelta(days=2), "id": late.id})
    session.commit()
    mine = team["mine"]
    values = dict(session.execute(select(Lead.id, Lead.deal_value).where(Lead.id.in_([mine.id, late.id]))).all())
    with acting(session, team["ria"]) as db:
        with pytest.raises(InvalidInput, match="future"):
            move_leads_to_stage(db, lead_ids=[mine.id, late.id], to_stage="won", now=NOW,
                                closed_at=NOW + timedelta(days=1))
        db.rollback()
        move_leads_to_stage(db, lead_ids=[mine.id, late.id], to_stage="won", now=NOW,
                            closed_at=NOW - timedelta(days=7))
    session.expire_all()
    stored = {r.id: r for r in session.execute(select(Lead).where(Lead.id.in_([mine.id, late.id]))).scalars()}
    assert stored[mine.id].closed_at == NOW - timedelta(days=7)
    assert stored[late.id].closed_at == NOW - timedelta(days=2)
    assert {i: r.deal_value for i, r in stored.items()} == values
    assert {r.stage for r in stored.values()} == {"won"}


def test_a_bulk_move_skips_leads_already_there(session, team):
    with acting(session, team["ria"]) as db:
        outcome = move_leads_to_stage(db, lead_ids=[team["mine"].id, team["pool2"].id], to_stage="won", now=NOW)
    assert outcome.summary("Moved") == "Moved 1 lead; skipped 1: 1 already in that stage."


def test_bulk_snooze_uses_the_queue_choices_and_skips_closed_deals(session, team):
    with acting(session, team["ria"]) as db:
        outcome = snooze_leads(db, lead_ids=[team["mine"].id, team["pool2"].id, team["sams"].id],
                               choice="hour", now=NOW)
        with pytest.raises(InvalidInput):
            snooze_leads(db, lead_ids=[team["mine"].id], choice="forever", now=NOW)
    assert outcome.summary("Snoozed") == ("Snoozed 1 lead; skipped 2: 1 closed deals, "
                                          "1 no longer visible to you.")
    lead = session.get(Lead, team["mine"].id)
    session.refresh(lead)
    assert lead.snoozed_until == NOW + timedelta(hours=1)
    assert session.get(Lead, team["sams"].id).snoozed_until is None


def test_export_of_selected_rows_holds_only_those_the_user_may_see(session, team):
    flt = LeadFilter(ids=(team["mine"].id, team["sams"].id))
    again, _ = filter_from_dict(filter_to_dict(flt, "score"))  # through the signed link's payload
    assert again == flt
    with acting(session, team["ria"]) as db:
        body = "".join(stream_leads_csv(db.connection(), again))
    assert "Ada Lovelace" in body and "Alan Turing" not in body and "Edsger" not in body


# --- Inline edit -----------------------------------------------------------------------------------


def test_inline_edit_saves_value_owner_and_stage_with_the_lead_pages_rules(session, team):
    lead, version = team["pool"], team["pool"].version
    with acting(session, team["ria"]) as db:
        saved = edit_inline(db, lead_id=lead.id, expected_version=version, now=NOW,
                            changes={"deal_value": "25,000", "owner_id": str(team["ria"].id), "stage": "qualified"})
    assert (saved.stage, str(saved.deal_value), saved.owner_id) == ("qualified", "25000.00", team["ria"].id)
    assert saved.version == version + 2  # the edit, then the move
    assert [e.new for e in _audit(session, "lead_edited")] == [{"deal_value": "25000.00", "owner_id": team["ria"].id}]


def test_inline_edit_refuses_bad_values_other_owners_and_stale_rows(session, team):
    lead = team["mine"]
    value = lead.deal_value
    with acting(session, team["ria"]) as db:
        with pytest.raises(InvalidInput) as bad:
            edit_inline(db, lead_id=lead.id, expected_version=lead.version, now=NOW, changes={"deal_value": "-5"})
        assert bad.value.field == "deal_value"
        with pytest.raises(Forbidden):
            edit_inline(db, lead_id=lead.id, expected_version=lead.version, now=NOW,
                        changes={"owner_id": str(team["sam"].id)})
        with pytest.raises(StaleLead, match="changed by someone else"):
            edit_inline(db, lead_id=lead.id, expected_version=lead.version - 1, now=NOW,
                        changes={"deal_value": "7000"})
        with pytest.raises(StaleLead):
            edit_inline(db, lead_id=lead.id, expected_version=lead.version - 1, now=NOW, changes={"stage": "won"})
    stored = session.get(Lead, lead.id)
    session.refresh(stored)
    assert (stored.stage, stored.owner_id, stored.deal_value) == ("new", team["ria"].id, value)


def test_a_logged_pricing_request_still_counts_after_an_inline_edit(session, team):
    """The edit rescores with the lead's activities, not from scratch."""
    lead = make_lead(session, "Mary Jackson", now=NOW, owner=team["ria"],
                     activities=[(K.PRICING_REQUEST, timedelta(hours=1))])
    score = lead.score
    with acting(session, team["ria"]) as db:
        saved = edit_inline(db, lead_id=lead.id, expected_version=lead.version, now=NOW, changes={"deal_value": "9000"})
    assert saved.score == score > 0


def test_the_owner_select_offers_only_what_the_role_may_choose():
    from crm_app.db.queries import UserOption
    from crm_app.state.new_lead import owner_choices

    team = [UserOption(1, "Maya Manager", "manager"), UserOption(2, "Ria Rep", "rep"), UserOption(3, "Sam Seller", "rep")]
    assert owner_choices("2", "rep", team) == [["2", "Me"], ["pool", "Unassigned pool"]]
    assert owner_choices("1", "manager", team) == [["pool", "Unassigned pool"], ["1", "Maya Manager (me)"],
                                                   ["2", "Ria Rep"], ["3", "Sam Seller"]]
