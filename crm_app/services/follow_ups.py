"""Follow-ups as the backbone: the next step after every logged activity, a lead's open follow-ups,
and each deal's activity status on the board.

A follow-up is the rep's promise to do something (call, email, meeting) by a time. The action queue
(services/queue.py) lists the ones due by tonight; this module schedules them with a kind and a due
time, lists a lead's open ones (overdue first), and marks done or postpones them. Marking done and
postponing reuse the queue's rules (`complete_follow_up`, `snooze_time`), so the lead page and the
queue cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlmodel import Session

from crm_app.db.models import FollowUp, User
from crm_app.services.errors import InvalidInput, NotFound
from crm_app.services.leads import lock_lead
from crm_app.services.permissions import recorded_as
from crm_app.services.queue import MAX_FOLLOW_UP_NOTE, _open_follow_up, complete_follow_up, snooze_time, span

# What the next step is, as the select offers it.
NEXT_STEP_KINDS = {"call": "Call", "email": "Email", "meeting": "Meeting"}
# When it is due, as the select offers it (resolved by `due_time`).
DUE_CHOICES = {
    "hour": "In 1 hour",
    "today": "Today 16:00",
    "tomorrow": "Tomorrow 9:00",
    "2days": "In 2 days, 9:00",
    "next_week": "Next Monday 9:00",
    "2weeks": "In 2 weeks, 9:00",
}
MAX_AHEAD = timedelta(days=365)


def due_time(choice: str, now: datetime) -> datetime:
    """When a due choice falls, in `now`'s time zone. "Today 16:00" after 15:00 means in an hour."""
    nine = time(9, 0, tzinfo=now.tzinfo)
    if choice == "hour":
        return now + timedelta(hours=1)
    if choice == "today":
        four = datetime.combine(now.date(), time(16, 0, tzinfo=now.tzinfo))
        return four if four - now >= timedelta(hours=1) else now + timedelta(hours=1)
    if choice == "tomorrow":
        return datetime.combine(now.date() + timedelta(days=1), nine)
    if choice == "2days":
        return datetime.combine(now.date() + timedelta(days=2), nine)
    if choice == "next_week":
        return snooze_time("next_week", now)
    if choice == "2weeks":
        return datetime.combine(now.date() + timedelta(days=14), nine)
    raise InvalidInput(f"Unknown due time {choice!r}.", field="due")


def check_next_step(kind: str, due_at: datetime, note: str | None, now: datetime) -> tuple[str, str | None]:
    """The next step's kind and note checked; InvalidInput naming the field otherwise."""
    if kind not in NEXT_STEP_KINDS:
        raise InvalidInput("Choose a call, an email or a meeting.", field="next_kind")
    if due_at <= now:
        raise InvalidInput("The next step must be due in the future.", field="due")
    if due_at - now > MAX_AHEAD:
        raise InvalidInput("Schedule the next step within a year.", field="due")
    note = (note or "").strip() or None
    if note and len(note) > MAX_FOLLOW_UP_NOTE:
        raise InvalidInput(f"Note is too long (max {MAX_FOLLOW_UP_NOTE} characters).", field="next_note")
    return kind, note


def schedule_next_step(
    session: Session, *, lead_id: int, kind: str, due_at: datetime, now: datetime,
    note: str | None = None, owner_id: int | None = None,
) -> FollowUp:
    """Promise the lead a call, email or meeting by `due_at` and commit. On a session acting as a
    user the follow-up is theirs (`owner_id` None means them); it shows in their queue when due."""
    owner_id = recorded_as(session, owner_id, "schedule a follow-up")
    kind, note = check_next_step(kind, due_at, note, now)
    lock_lead(session, lead_id, None)  # refuses a lead the session cannot see, as "no longer exists"
    follow_up = FollowUp(lead_id=lead_id, owner_id=owner_id, due_at=due_at, note=note, kind=kind,
                         created_at=now)
    session.add(follow_up)
    session.commit()
    return follow_up


@dataclass
class FollowUpLine:
    """One open follow-up as the lead page lists it."""

    id: int
    kind: str  # call | email | meeting | "" (older follow-ups did not say)
    what: str  # "Call"
    due: str  # "Tue 9 Dec, 09:00"
    when: str  # "overdue by 2 days" | "in 3 h"
    status: str  # overdue | due_today | planned
    note: str
    owner: str


def lead_follow_ups(session: Session, lead_id: int, now: datetime) -> list[FollowUpLine]:
    """The lead's open follow-ups, the earliest (most overdue) first."""
    rows = session.execute(
        select(FollowUp.id, FollowUp.kind, FollowUp.due_at, FollowUp.note, User.name)
        .outerjoin(User, User.id == FollowUp.owner_id)
        .where(FollowUp.lead_id == lead_id, FollowUp.done_at.is_(None))
        .order_by(FollowUp.due_at, FollowUp.id)
        .limit(50)
    ).all()
    tonight = datetime.combine(now.date() + timedelta(days=1), time(0, tzinfo=now.tzinfo))
    lines = []
    for r in rows:
        if r.due_at < now:
            status, when = "overdue", f"overdue by {span(now - r.due_at)}"
        else:
            status, when = ("due_today" if r.due_at < tonight else "planned"), f"in {span(r.due_at - now)}"
        lines.append(FollowUpLine(
            id=r.id, kind=r.kind or "", what=NEXT_STEP_KINDS.get(r.kind or "", "Follow up"),
            due=f"{r.due_at:%a} {r.due_at.day} {r.due_at:%b, %H:%M}", when=when, status=status,
            note=r.note or "", owner=r.name or "Unassigned"))
    return lines


def mark_follow_up_done(session: Session, *, follow_up_id: int, lead_id: int, now: datetime) -> FollowUp:
    """The lead page's "Done" on one follow-up (the queue's rule)."""
    return complete_follow_up(session, follow_up_id=follow_up_id, now=now, lead_id=lead_id)


def postpone_follow_up(session: Session, *, follow_up_id: int, lead_id: int, choice: str, now: datetime) -> FollowUp:
    """The lead page's "Snooze" on one follow-up: due again at the snooze choice's time, and commit."""
    until = snooze_time(choice, now)
    follow_up = _open_follow_up(session, follow_up_id, lead_id)
    if follow_up is None:  # pragma: no cover - _open_follow_up raises instead
        raise NotFound("That follow-up no longer exists.")
    follow_up.due_at = until
    session.add(follow_up)
    session.commit()
    return follow_up
