"""Notifications: what a user should hear about (a lead of theirs asked for pricing or a demo,
turned Hot, was assigned to them, a follow-up fell due; for managers, a team deal went At risk).

The database writes them (triggers of migration 0023), so every writer of leads and activities (a
page, the REST API, an import, the sweep) notifies the same way; the sweep adds the follow-ups that
fell due (`notify_due_follow_ups`). Each insert sends `NOTIFY crm_leads, 'n<user id>'`, which the
bell (state/notifications.py) hears through crm_app/live.py. Under row-level security a user reads
and marks only their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlmodel import Session

from crm_app.db.models import Notification
from crm_app.services.queue import relative_time

BELL_SIZE = 15  # notifications the bell's list shows
# A follow-up notifies once, when it falls due; one overdue for longer than this when the sweep
# first sees it (the app was off) is in the queue's Overdue group already and stays quiet.
DUE_LOOKBACK = timedelta(days=2)
ICONS = {"pricing_request": "badge-dollar-sign", "demo_request": "presentation", "hot": "flame",
         "assigned": "user-plus", "at_risk": "triangle-alert", "follow_up_due": "alarm-clock"}


def live_key(user_id: int) -> str:
    """The live-update key a user's notifications are announced under (crm_app/live.py)."""
    return f"n{user_id}"


@dataclass
class NotificationLine:
    id: int
    kind: str
    icon: str
    message: str
    when: str  # "12 min ago"
    href: str  # the lead's page
    unread: bool


@dataclass
class Bell:
    unread: int
    lines: list[NotificationLine]
    newest_id: int


def bell(session: Session, *, user_id: int, now: datetime, limit: int = BELL_SIZE) -> Bell:
    """The user's unread count and newest notifications (their own only, also under row security)."""
    unread = session.execute(
        select(func.count()).select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
    ).scalar_one()
    rows = session.execute(
        select(Notification).where(Notification.user_id == user_id)
        .order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    ).scalars().all()
    lines = [NotificationLine(
        id=n.id, kind=n.kind, icon=ICONS.get(n.kind, "bell"), message=n.message,
        when=relative_time(min(n.created_at, now), now), href=f"/leads/{n.lead_id}" if n.lead_id else "/",
        unread=n.read_at is None) for n in rows]
    return Bell(unread=unread, lines=lines, newest_id=max((line.id for line in lines), default=0))


def mark_read(session: Session, *, user_id: int, now: datetime, notification_id: int | None = None) -> int:
    """Mark one notification (or all of the user's) read and commit; returns how many changed."""
    query = update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    if notification_id is not None:
        query = query.where(Notification.id == notification_id)
    changed = session.execute(query.values(read_at=now)).rowcount
    session.commit()
    return changed


_DUE_SQL = """
WITH fresh AS (
    INSERT INTO notifications (user_id, lead_id, follow_up_id, kind, message, created_at)
    SELECT f.owner_id, f.lead_id, f.id, 'follow_up_due',
           left(CASE f.kind WHEN 'call' THEN 'Call ' WHEN 'email' THEN 'Email ' WHEN 'meeting' THEN 'Meeting with '
                            ELSE 'Follow up with ' END
                || l.name || coalesce(' (' || nullif(l.company, '') || ')', '') || ' is due'
                || coalesce(': ' || f.note, ''), 300),
           :now
      FROM follow_ups f JOIN leads l ON l.id = f.lead_id
     WHERE f.done_at IS NULL AND f.owner_id IS NOT NULL AND f.due_at <= :now AND f.due_at > :since
       AND l.stage NOT IN ('won', 'lost')
     ORDER BY f.id  -- ids in the follow-ups' order, whatever order the rows lie in
    ON CONFLICT (follow_up_id) WHERE kind = 'follow_up_due' DO NOTHING
    RETURNING user_id
)
SELECT user_id, pg_notify('crm_leads', 'n' || user_id::text) FROM (SELECT DISTINCT user_id FROM fresh) u
"""


def notify_due_follow_ups(session: Session, now: datetime) -> int:
    """Notify the owners of follow-ups that fell due since the last round (once each) and commit.
    Runs as the tables' owner (the sweep). Returns how many users were told."""
    told = len(session.execute(text(_DUE_SQL), {"now": now, "since": now - DUE_LOOKBACK}).all())
    session.commit()
    return told
