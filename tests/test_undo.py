"""Undo on real PostgreSQL under row-level security, as the toasts' Undo runs it: each undo is a change
of its own (a stage change back, an audit entry), never history rewritten."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlmodel import Session

from crm_app.db.models import Activity, AuditEntry, FollowUp, Lead, StageChange
from crm_app.domain import ActivityKind as K
from crm_app.domain import Stage
from crm_app.services.errors import StaleLead
from crm_app.services.leads import log_activity, move_lead_to_stage
from crm_app.services.queue import snooze_lead, work_item
from crm_app.services.lead_actions import move_leads_to_stage
from crm_app.services.undo import (
    reopen_follow_up,
    undo_logged_activity,
    undo_snooze,
    undo_stage_move,
    undo_stage_moves,
)
from tests.conftest import NOW
from tests.factories import make_lead, make_user
from tests.test_lead_actions import acting


@pytest.fixture
def ria_lead(session: Session):
    ria, sam = make_user(session, "Ria Rep"), make_user(session, "Sam Seller")
    return ria, sam, make_lead(session, "Ada Lovelace", now=NOW, owner=ria)


def _audit(session: Session, lead_id: int) -> list[str]:
    return list(session.execute(select(AuditEntry.action).where(AuditEntry.lead_id == lead_id)
                                .order_by(AuditEntry.id)).scalars())


def test_undoing_a_move_is_a_move_back_with_both_in_the_history(session, ria_lead):
    ria, _, lead = ria_lead
    with acting(session, ria) as db:
        moved = move_lead_to_stage(db, lead_id=lead.id, to_stage=Stage.QUALIFIED, now=NOW)
        back = undo_stage_move(db, lead_id=lead.id, back_to=Stage.NEW, expected_version=moved.version,
                               now=NOW + timedelta(seconds=3))
    assert back.stage == "new"
    changes = session.execute(select(StageChange.from_stage, StageChange.to_stage, StageChange.user_id)
                              .where(StageChange.lead_id == lead.id).order_by(StageChange.id)).all()
    assert [tuple(c) for c in changes][-2:] == [("new", "qualified", ria.id), ("qualified", "new", ria.id)]
    assert _audit(session, lead.id)[-3:] == ["stage_moved", "stage_move_undone", "stage_moved"]


def test_an_undo_after_someone_else_changed_the_lead_is_refused(session, ria_lead):
    ria, _, lead = ria_lead
    with acting(session, ria) as db:
        seen = move_lead_to_stage(db, lead_id=lead.id, to_stage=Stage.QUALIFIED, now=NOW).version
        move_lead_to_stage(db, lead_id=lead.id, to_stage=Stage.MEETING, now=NOW)  # a later change
        with pytest.raises(StaleLead):
            undo_stage_move(db, lead_id=lead.id, back_to=Stage.NEW, expected_version=seen, now=NOW)
    session.expire_all()
    assert session.get(Lead, lead.id).stage == "meeting"


def test_undoing_a_bulk_move_sends_each_lead_back_except_one_changed_since(session, ria_lead):
    """Three leads from two stages moved to Proposal by mistake: Undo sends each back to the stage it
    left; the one a colleague moved on meanwhile keeps that move, and the outcome says so."""
    ria, _, lead = ria_lead
    other = make_lead(session, "Grace Hopper", now=NOW, owner=ria, stage=Stage.CONTACTED)
    third = make_lead(session, "Alan Turing", now=NOW, owner=ria, stage=Stage.QUALIFIED)
    ids = [lead.id, other.id, third.id]
    with acting(session, ria) as db:
        outcome = move_leads_to_stage(db, lead_ids=ids, to_stage=Stage.PROPOSAL, now=NOW)
        assert {m[0]: m[1] for m in outcome.moved} == {lead.id: "new", other.id: "contacted", third.id: "qualified"}
        move_lead_to_stage(db, lead_id=third.id, to_stage=Stage.NEGOTIATION, now=NOW)  # changed since
        undone = undo_stage_moves(db, moves=list(outcome.moved), now=NOW + timedelta(seconds=5))
    assert undone.summary("Undone: moved back") == "Undone: moved back 2 leads; skipped 1: 1 changed by someone since."
    session.expire_all()
    stages = dict(session.execute(select(Lead.id, Lead.stage).where(Lead.id.in_(ids))).all())
    assert stages == {lead.id: "new", other.id: "contacted", third.id: "negotiation"}
    assert _audit(session, other.id)[-3:] == ["stage_moved", "stage_move_undone", "stage_moved"]


def test_undoing_a_log_removes_the_activity_with_an_audit_entry_and_rescores(session, ria_lead):
    ria, _, lead = ria_lead
    session.expire_all()
    before = session.get(Lead, lead.id).score
    logged_at = NOW + timedelta(minutes=1)
    with acting(session, ria) as db:
        log_activity(db, lead_id=lead.id, kind=K.MEETING, now=logged_at, body="Great demo, budget approved")
    session.expire_all()
    assert session.get(Lead, lead.id).last_contacted_at is not None
    with acting(session, ria) as db:
        removed = undo_logged_activity(db, lead_id=lead.id, logged_at=logged_at, now=logged_at + timedelta(seconds=4))
    assert removed == 1
    session.expire_all()
    assert session.execute(select(Activity).where(Activity.lead_id == lead.id, Activity.created_at == logged_at)
                           ).first() is None
    stored = session.get(Lead, lead.id)
    assert stored.last_contacted_at is None and stored.score == before
    entry = session.execute(select(AuditEntry).where(AuditEntry.lead_id == lead.id,
                                                     AuditEntry.action == "activity_removed")).scalar_one()
    assert entry.old["body"] == "Great demo, budget approved" and entry.actor_id == ria.id


def test_a_rep_cannot_take_back_another_reps_activity(session, ria_lead):
    ria, sam, lead = ria_lead
    logged_at = NOW + timedelta(minutes=1)
    log_activity(session, lead_id=lead.id, kind=K.NOTE, now=logged_at, user_id=sam.id, body="Sam's note")
    with acting(session, ria) as db:
        # Ria sees the lead (hers) but the note is Sam's: the undo finds nothing of hers at that time.
        assert undo_logged_activity(db, lead_id=lead.id, logged_at=logged_at, now=logged_at) == 0
    assert session.execute(select(Activity).where(Activity.lead_id == lead.id, Activity.body == "Sam's note")
                           ).first() is not None


def test_undoing_a_queue_log_cancels_the_follow_up_it_scheduled_and_reopens_the_one_it_closed(session, ria_lead):
    ria, _, lead = ria_lead
    open_one = FollowUp(lead_id=lead.id, owner_id=ria.id, due_at=NOW - timedelta(hours=1), created_at=NOW - timedelta(days=2))
    session.add(open_one)
    session.commit()
    logged_at = NOW + timedelta(minutes=2)
    with acting(session, ria) as db:
        work_item(db, lead_id=lead.id, kind="call", now=logged_at, user_id=ria.id, body="Called",
                  follow_up_id=open_one.id, follow_up_days=3)
        undo_logged_activity(db, lead_id=lead.id, logged_at=logged_at, now=logged_at + timedelta(seconds=2))
    session.expire_all()
    follow_ups = session.execute(select(FollowUp).where(FollowUp.lead_id == lead.id).order_by(FollowUp.id)).scalars().all()
    assert follow_ups[0].done_at is None  # the one the call had closed is open again
    assert follow_ups[1].done_at is not None  # the one it scheduled is cancelled, kept in history
    assert {"follow_up_reopened", "follow_up_cancelled", "activity_removed"} <= set(_audit(session, lead.id))


def test_undoing_a_snooze_and_a_done_puts_them_back(session, ria_lead):
    ria, _, lead = ria_lead
    follow_up = FollowUp(lead_id=lead.id, owner_id=ria.id, due_at=NOW - timedelta(hours=1), created_at=NOW)
    session.add(follow_up)
    session.commit()
    due = follow_up.due_at
    with acting(session, ria) as db:
        snoozed = snooze_lead(db, lead_id=lead.id, until=NOW + timedelta(days=1), now=NOW, follow_up_id=follow_up.id)
        undo_snooze(db, lead_id=lead.id, snoozed_until=None, expected_version=snoozed.version, now=NOW,
                    follow_up_id=follow_up.id, follow_up_due=due)
    session.expire_all()
    assert session.get(Lead, lead.id).snoozed_until is None
    assert session.get(FollowUp, follow_up.id).due_at == due
    session.get(FollowUp, follow_up.id).done_at = NOW
    session.commit()
    with acting(session, ria) as db:
        reopen_follow_up(db, follow_up_id=follow_up.id, lead_id=lead.id, now=NOW)
    session.expire_all()
    assert session.get(FollowUp, follow_up.id).done_at is None
    assert {"snooze_undone", "follow_up_reopened"} <= set(_audit(session, lead.id))
