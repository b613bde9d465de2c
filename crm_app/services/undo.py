"""Undo: the reverse of a move, a snooze, a "done" or a logged activity, as a new change of its own.

The toasts of those actions offer Undo for a few seconds (crm_app/state/undo.py). Nothing here rewrites
history: a move back is a stage change of its own (the lead's history shows both moves), a snooze
undone and a follow-up reopened are audit entries, and an activity taken back is removed with an audit
entry holding what it said (the app role may not delete activities; the database's
crm_retract_own_activity, migration 0024, removes only the acting user's own logged activity).

Each function takes the version the lead had right after the action: if anyone changed the lead since,
the undo is refused (StaleLead) rather than undoing their change too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, text
from sqlmodel import Session

from crm_app.db.models import Activity, FollowUp, Lead
from crm_app.db.security import acting_user_id
from crm_app.domain import CONTACT_KINDS, Stage
from crm_app.scoring import ENGAGEMENT_KINDS
from crm_app.services import audit
from crm_app.services.errors import NotFound, StaleLead
from crm_app.services.lead_actions import BulkOutcome
from crm_app.services.leads import bump_version, lock_lead, move_lead_to_stage
from crm_app.services.permissions import recorded_as
from crm_app.services.scoring import rescore_lead

def undo_stage_move(session: Session, *, lead_id: int, back_to: Stage | str, expected_version: int,
                    now: datetime, user_id: int | None = None) -> Lead:
    """Move a lead back to the stage it left: a stage change of its own (from the stage it was moved
    to, back), rescored, with an audit entry saying it was an undo; commits."""
    user_id = recorded_as(session, user_id, "undo a move")
    lead = lock_lead(session, lead_id, expected_version)
    audit.record(session, now=now, actor_id=user_id, action="stage_move_undone", entity="lead", entity_id=lead_id,
                 lead_id=lead_id, old={"stage": lead.stage}, new={"stage": Stage(back_to).value})
    # The move itself writes the stage change, the "stage_moved" entry and the rescore, and commits.
    return move_lead_to_stage(session, lead_id=lead_id, to_stage=back_to, now=now, user_id=user_id,
                              expected_version=expected_version)


def undo_stage_moves(session: Session, *, moves: list[tuple[int, str, int]], now: datetime,
                     user_id: int | None = None) -> BulkOutcome:
    """Undo a bulk move: each lead (id, the stage it left, its version right after the move) goes
    back as undo_stage_move does, one commit each. A lead someone changed since (or that is no longer
    visible) keeps its change and is counted as skipped, so the rest still go back."""
    user_id = recorded_as(session, user_id, "undo a move")
    changed, stale, gone = 0, 0, 0
    for lead_id, back_to, version in moves:
        try:
            undo_stage_move(session, lead_id=lead_id, back_to=back_to, expected_version=version, now=now,
                            user_id=user_id)
            changed += 1
        except StaleLead:
            session.rollback()
            stale += 1
        except NotFound:
            session.rollback()
            gone += 1
    return BulkOutcome(changed, {k: v for k, v in (("changed by someone since", stale),
                                                   ("no longer visible to you", gone)) if v})


def undo_snooze(session: Session, *, lead_id: int, snoozed_until: datetime | None, expected_version: int,
                now: datetime, follow_up_id: int | None = None, follow_up_due: datetime | None = None,
                user_id: int | None = None) -> Lead:
    """Put a lead's snooze (and the follow-up the snooze postponed) back as it was before; commits."""
    user_id = recorded_as(session, user_id, "undo a snooze")
    lead = lock_lead(session, lead_id, expected_version)
    old = {"snoozed_until": lead.snoozed_until}
    lead.snoozed_until = snoozed_until
    if follow_up_id and follow_up_due is not None:
        follow_up = session.get(FollowUp, follow_up_id, with_for_update=True)
        if follow_up is None or follow_up.lead_id != lead_id:
            raise NotFound("That follow-up no longer exists.")
        old["follow_up_due"] = follow_up.due_at
        follow_up.due_at = follow_up_due
    bump_version(lead, now)
    audit.record(session, now=now, actor_id=user_id, action="snooze_undone", entity="lead", entity_id=lead_id,
                 lead_id=lead_id, old=old, new={"snoozed_until": snoozed_until, "follow_up_due": follow_up_due})
    session.commit()
    return lead


def reopen_follow_up(session: Session, *, follow_up_id: int, lead_id: int, now: datetime,
                     user_id: int | None = None) -> FollowUp:
    """Undo "done" on a follow-up: it is open again (due when it was); commits."""
    user_id = recorded_as(session, user_id, "reopen a follow-up")
    follow_up = session.get(FollowUp, follow_up_id, with_for_update=True)
    if follow_up is None or follow_up.lead_id != lead_id or session.get(Lead, lead_id) is None:
        raise NotFound("That follow-up no longer exists.")
    audit.record(session, now=now, actor_id=user_id, action="follow_up_reopened", entity="follow_up",
                 entity_id=follow_up_id, lead_id=lead_id, old={"done_at": follow_up.done_at}, new={"done_at": None})
    follow_up.done_at = None
    session.commit()
    return follow_up


def _latest(session: Session, lead_id: int, kinds) -> datetime | None:
    return session.execute(select(func.max(Activity.occurred_at)).where(
        Activity.lead_id == lead_id, Activity.kind.in_([k.value for k in kinds]))).scalar_one()


def undo_logged_activity(session: Session, *, lead_id: int, logged_at: datetime, now: datetime,
                         user_id: int | None = None) -> int:
    """Take back what one "log" wrote at `logged_at` on a lead (the activity, and from the queue the
    follow-up it scheduled and the one it marked done): the activity is removed with an audit entry
    holding what it said, the lead's last contact and activity are recomputed and it is rescored;
    commits. Returns how many activities were removed (0: nothing of the user's at that time)."""
    user_id = recorded_as(session, user_id, "undo a logged activity")
    lead = lock_lead(session, lead_id, None)
    logged = session.execute(select(Activity).where(
        Activity.lead_id == lead_id, Activity.created_at == logged_at, Activity.user_id == user_id)).scalars().all()
    removed = 0
    for activity in logged:
        kept = {"kind": activity.kind, "occurred_at": activity.occurred_at, "subject": activity.subject,
                "body": activity.body, "play": activity.play}
        if acting_user_id(session) is not None:
            gone = session.execute(text("SELECT crm_retract_own_activity(:id)"), {"id": activity.id}).scalar()
            if gone is None:
                continue
        else:
            session.delete(activity)
        session.flush()
        audit.record(session, now=now, actor_id=user_id, action="activity_removed", entity="activity",
                     entity_id=activity.id, lead_id=lead_id, old=kept, new=None)
        removed += 1
    session.expire_all()
    lead = session.get(Lead, lead_id)
    # What the log did to the queue goes too: the follow-up it scheduled, the one it marked done.
    for follow_up in session.execute(select(FollowUp).where(
            FollowUp.lead_id == lead_id, FollowUp.created_at == logged_at)).scalars():
        audit.record(session, now=now, actor_id=user_id, action="follow_up_cancelled", entity="follow_up",
                     entity_id=follow_up.id, lead_id=lead_id, old={"due_at": follow_up.due_at},
                     new={"cancelled": True})
        follow_up.done_at = now  # cancelled: closed, so it leaves the queue, and kept in history
    for follow_up in session.execute(select(FollowUp).where(
            FollowUp.lead_id == lead_id, FollowUp.done_at == logged_at)).scalars():
        audit.record(session, now=now, actor_id=user_id, action="follow_up_reopened", entity="follow_up",
                     entity_id=follow_up.id, lead_id=lead_id, old={"done_at": logged_at}, new={"done_at": None})
        follow_up.done_at = None
    lead.last_contacted_at = _latest(session, lead_id, CONTACT_KINDS)
    lead.last_activity_at = _latest(session, lead_id, ENGAGEMENT_KINDS)
    bump_version(lead, now)
    rescore_lead(session, lead, now)
    session.commit()
    return removed
