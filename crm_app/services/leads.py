"""Use cases on one lead: log an activity, move it to a stage. Each rescores in the same transaction."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, update
from sqlmodel import Session

from crm_app.db.models import Activity, Lead, StageChange, User
from crm_app.db.security import acting_user_id
from crm_app.domain import (
    CONTACT_KINDS,
    CONTENT_READ_KINDS,
    REP_LOGGED_KINDS,
    ActivityKind,
    Play,
    Role,
    Stage,
)
from crm_app.scoring import ENGAGEMENT_KINDS, ScoreResult
from crm_app.services import audit
from crm_app.services.errors import InvalidInput, NotFound, StaleLead
from crm_app.services.permissions import CurrentUser, recorded_as, require_role
from crm_app.services.risk import message_sentiment
from crm_app.services.scoring import rescore_lead

MAX_BODY = 20_000
MAX_SUBJECT = 300


def lock_lead(session: Session, lead_id: int, expected_version: int | None) -> Lead:
    """Load the lead FOR UPDATE so concurrent writers queue up, then check it is unchanged."""
    lead = session.get(Lead, lead_id, with_for_update=True)
    if lead is None:
        raise NotFound(f"Lead {lead_id} no longer exists.")
    if expected_version is not None and lead.version != expected_version:
        raise StaleLead(
            f"{lead.name} was changed by someone else a moment ago. "
            "The latest version is shown; please try again."
        )
    return lead


def bump_version(lead: Lead, now: datetime) -> None:
    lead.version += 1
    lead.updated_at = now


@dataclass(frozen=True)
class CheckedActivity:
    """An activity that passed every rule, ready to be added to its lead."""

    kind: ActivityKind
    occurred_at: datetime
    subject: str | None
    body: str | None
    play: Play | None


def check_activity(
    *,
    kind: ActivityKind | str,
    now: datetime,
    occurred_at: datetime | None = None,
    subject: str | None = None,
    body: str | None = None,
    play: Play | str | None = None,
) -> CheckedActivity:
    """The activity's fields checked and tidied; InvalidInput naming the field otherwise."""
    try:
        kind = ActivityKind(kind)
    except ValueError:
        raise InvalidInput(f"Unknown activity type {kind!r}.", field="kind") from None
    occurred_at = occurred_at or now
    if occurred_at > now:
        raise InvalidInput("An activity cannot be in the future.", field="occurred_at")
    subject = (subject or "").strip() or None
    body = (body or "").strip() or None
    if subject and len(subject) > MAX_SUBJECT:
        raise InvalidInput(f"Subject is too long (max {MAX_SUBJECT} characters).", field="subject")
    if body and len(body) > MAX_BODY:
        raise InvalidInput(f"Text is too long (max {MAX_BODY:,} characters).", field="body")
    if kind is ActivityKind.NOTE and not body:
        raise InvalidInput("A note needs some text.", field="body")
    return CheckedActivity(kind, occurred_at, subject, body, _checked_play(play, kind))


def add_activity(session: Session, lead: Lead, activity: CheckedActivity, *, now: datetime,
                 user_id: int | None = None) -> None:
    """Add a checked activity to a locked lead and update what it changes on the lead (last
    activity, last contact, snooze, version). No rescoring and no commit: the caller does both."""
    kind, occurred_at = activity.kind, activity.occurred_at
    session.add(
        Activity(lead_id=lead.id, kind=kind.value, occurred_at=occurred_at, user_id=user_id,
                 subject=activity.subject, body=activity.body, created_at=now,
                 play=activity.play and activity.play.value,
                 sentiment=message_sentiment(kind, activity.body, names=(lead.name, lead.company or "")))
    )
    if kind in ENGAGEMENT_KINDS:
        # The prospect did something new: a snoozed lead comes back to the queue.
        lead.snoozed_until = None
        if lead.last_activity_at is None or occurred_at > lead.last_activity_at:
            lead.last_activity_at = occurred_at
    if kind in CONTACT_KINDS and (lead.last_contacted_at is None or occurred_at > lead.last_contacted_at):
        lead.last_contacted_at = occurred_at
    bump_version(lead, now)


def log_activity(
    session: Session,
    *,
    lead_id: int,
    kind: ActivityKind | str,
    now: datetime,
    user_id: int | None = None,
    occurred_at: datetime | None = None,
    subject: str | None = None,
    body: str | None = None,
    expected_version: int | None = None,
    play: Play | str | None = None,
    asked: Collection[ActivityKind | str] = (),
) -> ScoreResult:
    """Record what happened with a lead, rescore it and commit. Returns the new score.

    `asked` is what the prospect asked for in that conversation (a call, meeting or reply): a pricing
    or demo request, each stored as the prospect's own request at the same moment, logged by the rep
    (the timeline says who heard it) and scored as the rubric says.

    `play` tags rep outreach with the sales play it was (a call as a pricing call), or a
    prospect's visit or click with the content it opened; it must fit the activity's kind.

    On a session acting as a user, the activity is that user's: `user_id` None means them, and
    another user's id is refused (Forbidden)."""
    user_id = recorded_as(session, user_id, "log an activity")
    activity = check_activity(kind=kind, now=now, occurred_at=occurred_at, subject=subject, body=body, play=play)
    if acting_user_id(session) is not None and activity.kind not in REP_LOGGED_KINDS:
        # What the activity form offers, checked here too: a crafted event cannot log a pricing request.
        raise InvalidInput("Log a call, email, meeting, note or reply: what the prospect does on their own "
                           "comes in from integrations.", field="kind")
    requests = _asked_in(activity, asked, now)
    lead = lock_lead(session, lead_id, expected_version)
    add_activity(session, lead, activity, now=now, user_id=user_id)
    for request in requests:
        add_activity(session, lead, request, now=now, user_id=user_id)
    result = rescore_lead(session, lead, now)
    session.commit()
    return result


# What a prospect can ask for in a conversation a rep logs, and the conversations that can carry it.
ASKABLE_KINDS = (ActivityKind.PRICING_REQUEST, ActivityKind.DEMO_REQUEST)
CONVERSATION_KINDS = {ActivityKind.CALL: "Said on a call", ActivityKind.MEETING: "Said in a meeting",
                      ActivityKind.EMAIL_RECEIVED: "Asked in their reply"}


def _asked_in(conversation: CheckedActivity, asked: Collection[ActivityKind | str], now: datetime
              ) -> list[CheckedActivity]:
    """The requests heard in a logged conversation, checked: only pricing or demo, each at most once,
    and only in a call, meeting or reply (a note or a sent email is not the prospect speaking)."""
    if not asked:
        return []
    try:
        kinds = list(dict.fromkeys(ActivityKind(k) for k in asked))
    except ValueError:
        raise InvalidInput("A prospect can ask for pricing or a demo.", field="asked") from None
    if any(k not in ASKABLE_KINDS for k in kinds):
        raise InvalidInput("A prospect can ask for pricing or a demo.", field="asked")
    if conversation.kind not in CONVERSATION_KINDS:
        raise InvalidInput("What the prospect asked for is logged with a call, a meeting or their reply.",
                           field="asked")
    heard = CONVERSATION_KINDS[conversation.kind]
    return [check_activity(kind=k, now=now, occurred_at=conversation.occurred_at, subject=heard) for k in kinds]


def _checked_play(play: Play | str | None, kind: ActivityKind) -> Play | None:
    """The play as a Play, or None; refused when the activity cannot be that play."""
    if play in (None, ""):
        return None
    try:
        play = Play(play)
    except ValueError:
        raise InvalidInput(f"Unknown play {play!r}.", field="play") from None
    fits = play.kinds + (CONTENT_READ_KINDS if play.is_content else ())
    if kind not in fits:
        done_as = " or ".join(k.label.lower() for k in play.kinds)
        raise InvalidInput(f"A {play.label.lower()} is logged as a {done_as}: pick that as the activity type.",
                           field="play")
    return play


def move_lead_to_stage(
    session: Session,
    *,
    lead_id: int,
    to_stage: Stage | str,
    now: datetime,
    user_id: int | None = None,
    expected_version: int | None = None,
    lost_reason: str | None = None,
    lost_note: str | None = None,
    won_value: Decimal | None = None,
    closed_at: datetime | None = None,
) -> Lead:
    """Move a lead to another stage, record the change, rescore and commit.

    A move to Lost keeps why (`lost_reason`, an entry of the team's list or any short text, and
    `lost_note`, free text); a move to Won may confirm the deal's value (`won_value`) and the day it
    closed (`closed_at`, not in the future nor before the lead arrived). Reopening a lost deal clears
    its reason. The pages ask for these; the REST API may leave them out.

    `expected_version` is the version the user saw; if someone changed the lead since, the move is
    refused with StaleLead and nothing is written.

    On a session acting as a user, the move is that user's: `user_id` None means them, and another
    user's id is refused (Forbidden).
    """
    user_id = recorded_as(session, user_id, "move a lead")
    try:
        to_stage = Stage(to_stage)
    except ValueError:
        raise InvalidInput(f"Unknown stage {to_stage!r}.", field="stage") from None
    try:
        lead = lock_lead(session, lead_id, expected_version)
    except StaleLead:
        # The refused attempt is history too: who tried to move it where, from what they saw.
        current = session.get(Lead, lead_id)
        current_stage, name = (current.stage, current.name) if current else (None, None)
        session.rollback()
        audit.record(session, now=now, actor_id=user_id, action="stage_move_refused", entity="lead",
                     entity_id=lead_id, lead_id=lead_id, old={"stage": current_stage, "seen_version": expected_version},
                     new={"stage": to_stage.value})
        session.commit()
        raise
    if lead.stage == to_stage.value:
        return lead
    closing = check_closing(lead, to_stage, now=now, lost_reason=lost_reason, lost_note=lost_note,
                            won_value=won_value, closed_at=closed_at)
    from_stage = lead.stage
    session.add(
        StageChange(lead_id=lead.id, from_stage=lead.stage, to_stage=to_stage.value,
                    changed_at=now, user_id=user_id)
    )
    lead.stage = to_stage.value
    lead.stage_entered_at = now
    lead.closed_at = (closing.closed_at or now) if to_stage.is_closed else None
    lead.lost_reason, lead.lost_note = closing.lost_reason, closing.lost_note
    if closing.won_value is not None:
        lead.deal_value = closing.won_value
    bump_version(lead, now)
    result = rescore_lead(session, lead, now)
    # Keep what the score said when the deal closed, to check later whether scores predict wins.
    lead.score_at_close = result.score if to_stage.is_closed else None
    audit.record(session, now=now, actor_id=user_id, action="stage_moved", entity="lead", entity_id=lead.id,
                 lead_id=lead.id, old={"stage": from_stage}, new={"stage": to_stage.value, **closing.changes()})
    session.commit()
    return lead


MAX_LOST_REASON = 120
MAX_LOST_NOTE = 500


@dataclass(frozen=True)
class Closing:
    """What a move to Won or Lost records besides the stage (all None for other moves)."""

    lost_reason: str | None = None
    lost_note: str | None = None
    won_value: Decimal | None = None
    closed_at: datetime | None = None

    def changes(self) -> dict:
        """For the audit entry: what was given, as text."""
        return {k: str(v) for k, v in (("lost_reason", self.lost_reason), ("lost_note", self.lost_note),
                                       ("deal_value", self.won_value), ("closed_at", self.closed_at)) if v is not None}


def check_closing(lead: Lead, to_stage: Stage, *, now: datetime, lost_reason: str | None = None,
                  lost_note: str | None = None, won_value: Decimal | None = None,
                  closed_at: datetime | None = None) -> Closing:
    """The close details of a move checked; InvalidInput naming the field otherwise. Details that do
    not belong to the target stage (a lost reason on a move to Won) are ignored."""
    if to_stage is Stage.LOST:
        reason = (lost_reason or "").strip() or None
        note = (lost_note or "").strip() or None
        if reason and len(reason) > MAX_LOST_REASON:
            raise InvalidInput(f"Lost reason is too long (max {MAX_LOST_REASON} characters).", field="lost_reason")
        if note and len(note) > MAX_LOST_NOTE:
            raise InvalidInput(f"Note is too long (max {MAX_LOST_NOTE} characters).", field="lost_note")
        return Closing(lost_reason=reason, lost_note=note, closed_at=_close_day(lead, closed_at, now))
    if to_stage is Stage.WON:
        if won_value is not None and not (Decimal(0) <= won_value < Decimal("10000000000")):
            raise InvalidInput("Enter a deal value from 0 to 9,999,999,999.", field="won_value")
        return Closing(won_value=won_value, closed_at=_close_day(lead, closed_at, now))
    return Closing()


def _close_day(lead: Lead, closed_at: datetime | None, now: datetime) -> datetime | None:
    if closed_at is None:
        return None
    if closed_at > now:
        raise InvalidInput("The close date cannot be in the future.", field="closed_at")
    if lead.created_at is not None and closed_at < lead.created_at - timedelta(days=1):
        raise InvalidInput("The close date cannot be before the lead arrived.", field="closed_at")
    return closed_at


def reassign_leads(
    session: Session, *, lead_ids: list[int], owner_id: int | None, now: datetime, actor: CurrentUser
) -> int:
    """A manager gives many leads to one owner (None: back to the unassigned pool) and commits.
    Returns the count; each reassigned lead gets an audit entry with its old and new owner."""
    require_role(actor, Role.MANAGER, "reassign leads")
    if not lead_ids:
        raise InvalidInput("Select at least one lead.", field="selection")
    if len(lead_ids) > 500:
        raise InvalidInput("Reassign at most 500 leads at a time.", field="selection")
    if owner_id is not None and session.get(User, owner_id) is None:
        raise InvalidInput("That owner does not exist any more.", field="owner")
    previous = dict(session.execute(
        select(Lead.id, Lead.owner_id)
        .where(Lead.id.in_(lead_ids), Lead.owner_id.is_distinct_from(owner_id))
        .with_for_update()
    ).all())
    changed = session.execute(
        update(Lead)
        .where(Lead.id.in_(list(previous)), Lead.owner_id.is_distinct_from(owner_id))
        .values(owner_id=owner_id, version=Lead.version + 1, updated_at=now)
    ).rowcount
    for lead_id, old_owner in previous.items():
        audit.record(session, now=now, actor_id=actor.id, action="lead_reassigned", entity="lead",
                     entity_id=lead_id, lead_id=lead_id, old={"owner_id": old_owner}, new={"owner_id": owner_id})
    session.commit()
    return changed
