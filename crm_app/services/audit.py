"""The audit trail: who changed what and when, with the values before and after.

Services call `record` inside the transaction that makes the change, so an entry exists exactly
when the change committed. Values are stored as JSON; they are shown as text, never as markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.models import AuditEntry


def _plain(value: Any) -> Any:
    """A value as JSON can hold it: dates as ISO text, decimals as text, containers recursively."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def record(
    session: Session,
    *,
    now: datetime,
    actor_id: int | None,
    action: str,
    entity: str,
    entity_id: int | None = None,
    lead_id: int | None = None,
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
) -> None:
    """Add one entry to the caller's transaction (no commit)."""
    session.add(
        AuditEntry(
            at=now,
            actor_id=actor_id,
            action=action,
            entity=entity,
            entity_id=entity_id,
            lead_id=lead_id,
            old=_plain(old) if old is not None else None,
            new=_plain(new) if new is not None else None,
        )
    )


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the keys whose value changed: (old values, new values)."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: int | None
    lead_id: int | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None


def entries(
    session: Session,
    *,
    lead_id: int | None = None,
    actor_id: int | None = None,
    action: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditRow]:
    """The newest entries first, filtered; page with `before_id` (the last id of the previous page)."""
    rows = session.execute(
        text(
            """
            SELECT a.id, a.at, coalesce(u.name, 'System') AS actor, a.action, a.entity, a.entity_id,
                   a.lead_id, a.old, a.new
              FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
             WHERE (CAST(:lead_id AS integer) IS NULL OR a.lead_id = :lead_id)
               AND (CAST(:actor_id AS integer) IS NULL OR a.actor_id = :actor_id)
               AND (CAST(:action AS text) IS NULL OR a.action = :action)
               AND (CAST(:before_id AS bigint) IS NULL OR a.id < :before_id)
             ORDER BY a.id DESC
             LIMIT :limit
            """
        ),
        {"lead_id": lead_id, "actor_id": actor_id, "action": action, "before_id": before_id, "limit": limit},
    )
    return [AuditRow(*row) for row in rows]
