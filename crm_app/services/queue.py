"""The action queue: what a rep should do right now, most urgent first, and the one-click actions on it.

An item is a lead with a reason to act on it now:

    hot        a Hot open lead nobody has called, emailed or met in the last hour, not snoozed
    overdue    an open follow-up whose due time has passed
    due        an open follow-up due later today
    risk       an open deal at High risk (scoring/risk.py: a negative reply, no contact since,
               stalled, ...), not snoozed
    stuck      an open deal longer in its stage than the stage rule allows, not snoozed

Ranking (all in SQL): rank = urgency points of the reason + the lead's score (0-100), where

    overdue follow-up 500, hot 400, follow-up due later today 300, deal at high risk 200,
    stuck deal 100.

Points are 100 apart, so the reason decides and the score breaks ties: first the promises the rep
has already broken (few, and made by the rep), then Hot leads waiting for their call, then what is
due later today, then deals at high risk, then stuck deals. A deal at risk is a deal slipping away
that can still be saved today (a "no" to answer, a silence to break), so it comes before a deal
that is merely stuck; it comes after the follow-ups the rep promised for today and the Hot leads
whose hour is running out. A stuck deal that is also at high risk shows once, as at risk. Equal ranks go to the lead created first (lowest id). A lead
appears once, under its highest-ranked reason; its other reasons are listed with it as secondary.

Snoozing hides a lead's hot and stuck reasons until the given time (the prospect doing something
new brings it back early: `log_activity` clears the snooze). A follow-up is the rep's own promise,
so a snooze does not hide it; snoozing a follow-up item postpones that follow-up to the same time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import FollowUp, Lead
from crm_app.db.queries import money, stuck_sql
from crm_app.domain import CONTACT_KINDS, OPEN_STAGES, ActivityKind, Stage
from crm_app.scoring import ENGAGEMENT_KINDS
from crm_app.scoring.risk import risk_headline
from crm_app.services.errors import InvalidInput, NotFound, StaleLead
from crm_app.services.leads import bump_version, lock_lead, log_activity
from crm_app.services.next_action import next_actions
from crm_app.services.permissions import recorded_as

OVERDUE_POINTS = 500
HOT_POINTS = 400
DUE_TODAY_POINTS = 300
AT_RISK_POINTS = 200
STUCK_POINTS = 100
CONTACT_WINDOW = timedelta(hours=1)
# "Done" on a lead without a follow-up: hidden until the prospect does something new.
UNTIL_NEXT_ENGAGEMENT = datetime(9999, 12, 31, tzinfo=timezone.utc)
MAX_FOLLOW_UP_DAYS = 365
MAX_FOLLOW_UP_NOTE = 500

KIND_LABELS = {"hot": "Hot", "overdue": "Overdue", "due": "Due today", "risk": "At risk", "stuck": "Stuck"}

# What the prospect last did, as a rep would say it after "Call: ".
_ENGAGED = {
    ActivityKind.PRICING_REQUEST: "asked for pricing",
    ActivityKind.DEMO_REQUEST: "asked for a demo",
    ActivityKind.PRICING_PAGE_VISIT: "viewed the pricing page",
    ActivityKind.EMAIL_RECEIVED: "replied by email",
    ActivityKind.EMAIL_CLICKED: "clicked a link in your email",
    ActivityKind.EMAIL_OPENED: "opened your email",
    ActivityKind.PAGE_VISIT: "visited the website",
    ActivityKind.FORM_SUBMISSION: "submitted a form",
    ActivityKind.MEETING: "had a meeting",
}


@dataclass
class QueueItem:
    """One line of the queue: the lead, why it is there and what to do."""

    lead_id: int
    name: str
    company: str
    owner: str
    stage: str
    value_label: str
    score: int
    tier: str
    kind: str  # hot | overdue | due | risk | stuck
    kind_label: str
    headline: str  # "Call: asked for pricing 20 min ago"
    rank: int
    version: int
    follow_up_id: int = 0  # the follow-up this item is about (0: none)
    secondary: list[str] = field(default_factory=list)
    # The suggested step: the next best action (services/next_action.py).
    suggestion: str = ""  # "Case study · High confidence"
    suggestion_why: str = ""
    suggestion_basis: str = ""  # history | rule


# --- Words ---------------------------------------------------------------------------------


def _span(delta: timedelta) -> str:
    """A duration as a rep says it: "20 min", "3 h", "2 days"."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 1)} min"
    if minutes < 24 * 60:
        return f"{minutes // 60} h"
    days = minutes // (24 * 60)
    return "1 day" if days == 1 else f"{days} days"


def relative_time(moment: datetime, now: datetime) -> str:
    """"just now", "20 min ago", "3 h ago", "2 days ago"."""
    if now - moment < timedelta(minutes=1):
        return "just now"
    return f"{_span(now - moment)} ago"


def _quoted(note: str | None) -> str:
    return f" — ‘{note.strip()}’" if note and note.strip() else ""


def _hot_text(last_kind: str | None, last_at: datetime | None, now: datetime) -> str:
    if last_kind and last_at:
        return f"Call: {_ENGAGED[ActivityKind(last_kind)]} {relative_time(last_at, now)}"
    return "Call: Hot lead, not contacted yet"


def _follow_up_text(due_at: datetime, note: str | None, now: datetime) -> str:
    if due_at < now:
        return f"Follow up: overdue by {_span(now - due_at)}{_quoted(note)}"
    return f"Follow up: due today at {due_at:%H:%M}{_quoted(note)}"


def _stuck_text(stage: str, entered_at: datetime, limit_days: int, now: datetime) -> str:
    # Stuck means more whole days than the limit (db.queries.stuck_sql), so days > limit_days here.
    days = (now - entered_at).days
    return f"Stuck in {Stage(stage).label} for {days} days (limit {limit_days}): re-engage or close"


def end_of_day(now: datetime) -> datetime:
    """Midnight after `now`, in `now`'s time zone: follow-ups due before it are due today."""
    return datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=now.tzinfo)


# --- The queue ----------------------------------------------------------------------------

_QUEUE_SQL = """
WITH scoped AS (
    SELECT l.id, l.score, l.tier, l.stage, l.stage_entered_at, l.last_contacted_at, l.snoozed_until,
           l.risk_level
      FROM leads l
     WHERE l.stage = ANY(:open_stages)
       AND (CAST(:owner_id AS integer) IS NULL OR l.owner_id = :owner_id)
),
follow_ups_due AS (
    -- A lead's earliest open follow-up that is due by the end of today.
    SELECT DISTINCT ON (f.lead_id) f.lead_id, f.id, f.due_at, f.note
      FROM follow_ups f
      JOIN leads l ON l.id = f.lead_id AND l.stage = ANY(:open_stages)
     WHERE f.done_at IS NULL AND f.due_at < :day_end
       AND (CAST(:owner_id AS integer) IS NULL OR f.owner_id = :owner_id)
     ORDER BY f.lead_id, f.due_at, f.id
),
candidates AS (
    SELECT s.id AS lead_id, 'hot' AS kind, :hot_points + s.score AS rank,
           NULL::integer AS follow_up_id, NULL::timestamptz AS due_at, NULL::text AS note
      FROM scoped s
     WHERE s.tier = 'hot'
       AND (s.last_contacted_at IS NULL OR s.last_contacted_at <= :contact_cutoff)
       AND (s.snoozed_until IS NULL OR s.snoozed_until <= :now)
    UNION ALL
    SELECT f.lead_id, CASE WHEN f.due_at < :now THEN 'overdue' ELSE 'due' END,
           CASE WHEN f.due_at < :now THEN :overdue_points ELSE :due_points END + l.score,
           f.id, f.due_at, f.note
      FROM follow_ups_due f JOIN leads l ON l.id = f.lead_id
    UNION ALL
    SELECT s.id, 'risk', :risk_points + s.score, NULL, NULL, NULL
      FROM scoped s
     WHERE s.risk_level = 'high'
       AND (s.snoozed_until IS NULL OR s.snoozed_until <= :now)
    UNION ALL
    SELECT s.id, 'stuck', :stuck_points + s.score, NULL, NULL, NULL
      FROM scoped s JOIN stage_rules r ON r.stage = s.stage
     WHERE {stuck}
       AND (s.snoozed_until IS NULL OR s.snoozed_until <= :now)
),
best AS (
    SELECT lead_id, max(rank) AS best_rank FROM candidates GROUP BY lead_id
),
top AS (
    SELECT lead_id, best_rank, count(*) OVER () AS total
      FROM best ORDER BY best_rank DESC, lead_id LIMIT :limit
)
SELECT t.lead_id, t.best_rank, t.total, c.kind, c.rank, c.follow_up_id, c.due_at, c.note,
       l.name, l.company, l.score, l.tier, l.stage, l.stage_entered_at, l.deal_value, l.version,
       u.name AS owner_name, r.stagnation_days, e.kind AS last_kind, e.occurred_at AS last_at,
       l.risk_reasons
  FROM top t
  JOIN candidates c ON c.lead_id = t.lead_id
  JOIN leads l ON l.id = t.lead_id
  LEFT JOIN users u ON u.id = l.owner_id
  LEFT JOIN stage_rules r ON r.stage = l.stage
  LEFT JOIN LATERAL (
        SELECT a.kind, a.occurred_at FROM activities a
         WHERE a.lead_id = l.id AND a.kind = ANY(:engagement_kinds) AND a.occurred_at <= :now
         ORDER BY a.occurred_at DESC LIMIT 1
  ) e ON TRUE
 ORDER BY t.best_rank DESC, t.lead_id, c.rank DESC
""".replace("{stuck}", stuck_sql("s.stage_entered_at", "r.stagnation_days"))


def action_queue(
    session: Session, *, owner_id: int | None, now: datetime, limit: int = 25
) -> tuple[list[QueueItem], int]:
    """The ranked to-do list for one rep (`owner_id`) or the whole team (None), and how many
    leads need action in all (the list stops at `limit`). See the module docstring for the rules."""
    rows = session.execute(
        text(_QUEUE_SQL),
        {
            "open_stages": [s.value for s in OPEN_STAGES],
            "engagement_kinds": [k.value for k in ENGAGEMENT_KINDS],
            "owner_id": owner_id,
            "now": now,
            "day_end": end_of_day(now),
            "contact_cutoff": now - CONTACT_WINDOW,
            "hot_points": HOT_POINTS,
            "overdue_points": OVERDUE_POINTS,
            "due_points": DUE_TODAY_POINTS,
            "risk_points": AT_RISK_POINTS,
            "stuck_points": STUCK_POINTS,
            "limit": limit,
        },
    ).all()
    items: list[QueueItem] = []
    total = 0
    for r in rows:
        total = r.total
        if r.kind == "hot":
            words = _hot_text(r.last_kind, r.last_at, now)
        elif r.kind == "stuck":
            words = _stuck_text(r.stage, r.stage_entered_at, r.stagnation_days, now)
        elif r.kind == "risk":
            words = risk_headline(r.risk_reasons, Stage(r.stage).label, now)
        else:
            words = _follow_up_text(r.due_at, r.note, now)
        if items and items[-1].lead_id == r.lead_id:
            items[-1].secondary.append(words)  # rows of one lead come best reason first
            continue
        items.append(
            QueueItem(
                lead_id=r.lead_id,
                name=r.name,
                company=r.company or "",
                owner=r.owner_name or "Unassigned",
                stage=Stage(r.stage).label,
                value_label=money(r.deal_value),
                score=r.score,
                tier=r.tier,
                kind=r.kind,
                kind_label=KIND_LABELS[r.kind],
                headline=words,
                rank=r.rank,
                version=r.version,
                follow_up_id=r.follow_up_id or 0,
            )
        )
    _attach_suggestions(session, items, now)
    return items, total


def _attach_suggestions(session: Session, items: list[QueueItem], now: datetime) -> None:
    """Each item's next best action, from the precomputed play statistics (no history scan)."""
    actions = next_actions(session, [item.lead_id for item in items], now)
    for item in items:
        action = actions.get(item.lead_id)
        if action is not None:
            item.suggestion, item.suggestion_why, item.suggestion_basis = action.headline, action.why, action.basis


# --- Actions --------------------------------------------------------------------------------

SNOOZE_CHOICES = {"hour": "In 1 hour", "tomorrow": "Tomorrow 9:00", "next_week": "Next week"}


def snooze_time(choice: str, now: datetime) -> datetime:
    """When a snooze choice ends: in an hour, tomorrow at 9:00, or next Monday at 9:00."""
    nine = time(9, 0, tzinfo=now.tzinfo)
    if choice == "hour":
        return now + timedelta(hours=1)
    if choice == "tomorrow":
        return datetime.combine(now.date() + timedelta(days=1), nine)
    if choice == "next_week":
        return datetime.combine(now.date() + timedelta(days=7 - now.weekday()), nine)
    raise InvalidInput(f"Unknown snooze choice {choice!r}.", field="snooze")


def _open_follow_up(session: Session, follow_up_id: int, lead_id: int | None = None) -> FollowUp:
    follow_up = session.get(FollowUp, follow_up_id, with_for_update=True)
    # Row security hides another rep's follow-up (migration 0011); its lead is checked here too, so
    # the service refuses the same way on a session that is not under row security.
    if (follow_up is None or (lead_id is not None and follow_up.lead_id != lead_id)
            or session.get(Lead, follow_up.lead_id) is None):
        raise NotFound("That follow-up no longer exists.")
    if follow_up.done_at is not None:
        raise StaleLead("That follow-up was already marked done.")
    return follow_up


def snooze_lead(
    session: Session,
    *,
    lead_id: int,
    until: datetime,
    now: datetime,
    follow_up_id: int | None = None,
    expected_version: int | None = None,
) -> Lead:
    """Hide a lead from the queue until `until` and commit. With `follow_up_id`, that follow-up is
    postponed to the same time, so the item really goes away until then."""
    if until <= now:
        raise InvalidInput("A snooze must end in the future.", field="snooze")
    lead = lock_lead(session, lead_id, expected_version)
    if follow_up_id:
        follow_up = _open_follow_up(session, follow_up_id, lead_id)
        follow_up.due_at = until
        session.add(follow_up)
    lead.snoozed_until = until
    bump_version(lead, now)
    session.add(lead)
    session.commit()
    return lead


def complete_follow_up(
    session: Session, *, follow_up_id: int, now: datetime, lead_id: int | None = None
) -> FollowUp:
    """Mark a follow-up done (of `lead_id`, when given) and commit."""
    follow_up = _open_follow_up(session, follow_up_id, lead_id)
    follow_up.done_at = now
    session.add(follow_up)
    session.commit()
    return follow_up


def _new_follow_up(
    session: Session, *, lead_id: int, owner_id: int | None, in_days: int, note: str | None, now: datetime
) -> FollowUp:
    if not 1 <= in_days <= MAX_FOLLOW_UP_DAYS:
        raise InvalidInput(f"Follow up in 1 to {MAX_FOLLOW_UP_DAYS} days.", field="follow_up_days")
    note = (note or "").strip() or None
    if note and len(note) > MAX_FOLLOW_UP_NOTE:
        raise InvalidInput(f"Follow-up note is too long (max {MAX_FOLLOW_UP_NOTE} characters).",
                           field="follow_up_note")
    follow_up = FollowUp(lead_id=lead_id, owner_id=owner_id, due_at=now + timedelta(days=in_days),
                         note=note, created_at=now)
    session.add(follow_up)
    return follow_up


def schedule_follow_up(
    session: Session, *, lead_id: int, owner_id: int | None, in_days: int, now: datetime,
    note: str | None = None,
) -> FollowUp:
    """Promise to get back to a lead in `in_days` days and commit; it shows in the queue when due."""
    if session.get(Lead, lead_id) is None:
        raise NotFound(f"Lead {lead_id} no longer exists.")
    follow_up = _new_follow_up(session, lead_id=lead_id, owner_id=owner_id, in_days=in_days,
                               note=note, now=now)
    session.commit()
    return follow_up


def dismiss_item(
    session: Session, *, lead_id: int, now: datetime, follow_up_id: int | None = None,
    expected_version: int | None = None,
) -> None:
    """"Done" on a queue item: a follow-up is marked done; any other item is snoozed until the
    prospect's next engagement."""
    if follow_up_id:
        complete_follow_up(session, follow_up_id=follow_up_id, now=now, lead_id=lead_id)
    else:
        snooze_lead(session, lead_id=lead_id, until=UNTIL_NEXT_ENGAGEMENT, now=now,
                    expected_version=expected_version)


def work_item(
    session: Session,
    *,
    lead_id: int,
    kind: ActivityKind | str,
    now: datetime,
    user_id: int | None,
    body: str | None = None,
    follow_up_id: int | None = None,
    follow_up_days: int | None = None,
    follow_up_note: str | None = None,
    expected_version: int | None = None,
) -> None:
    """Log what the rep did from the queue (call, email, meeting, note), in one transaction:
    the activity is logged and the lead rescored; reaching out (call, email, meeting) on a
    follow-up item marks that follow-up done; `follow_up_days` schedules the next one."""
    user_id = recorded_as(session, user_id, "log an activity")  # the next follow-up is theirs too
    try:
        # The lead first: a follow-up queued for a lead the user cannot see would be refused by row
        # security as a database error at the next flush, not as "no longer exists".
        lock_lead(session, lead_id, expected_version)
        if follow_up_days:
            _new_follow_up(session, lead_id=lead_id, owner_id=user_id, in_days=follow_up_days,
                           note=follow_up_note, now=now)
        if follow_up_id and kind in [k.value for k in CONTACT_KINDS]:
            _open_follow_up(session, follow_up_id, lead_id).done_at = now
        log_activity(session, lead_id=lead_id, kind=kind, now=now, user_id=user_id, body=body,
                     expected_version=expected_version)  # commits all of the above
    except BaseException:
        session.rollback()
        raise
