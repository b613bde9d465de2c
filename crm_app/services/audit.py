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
from crm_app.domain import Role
from crm_app.services.permissions import CurrentUser, require_role

# Every action the log records, as a manager reads it in the filter.
ACTION_LABELS = {
    "lead_edited": "Lead edited",
    "stage_moved": "Stage moved",
    "stage_move_refused": "Stage move refused (someone moved it first)",
    "lead_reassigned": "Lead reassigned",
    "lead_claimed": "Lead claimed",
    "lead_returned": "Lead returned to the pool",
    "lead_created": "Lead created",
    "leads_imported": "Leads imported",
    "engine_switched": "Scoring engine switched",
    "model_activated": "Model activated",
    "user_created": "User added",
    "role_changed": "Role changed",
    "user_deactivated": "User deactivated",
    "user_activated": "User reactivated",
    "password_changed": "Password changed",
    "first_admin": "First admin created",
    "api_key_created": "API key created",
    "api_key_revoked": "API key revoked",
    # Undo on a toast (services/undo.py): each undo is a change of its own.
    "stage_move_undone": "Stage move undone",
    "snooze_undone": "Snooze undone",
    "follow_up_reopened": "Follow-up reopened (done undone)",
    "follow_up_cancelled": "Follow-up cancelled (log undone)",
    "activity_removed": "Activity removed (log undone)",
}


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


def _value(value: Any) -> str:
    if value is None or value == "":
        return "(empty)"
    return str(value)


def describe(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """The change in words, one "field: old -> new" per changed field (plain text, shown inert)."""
    old, new = old or {}, new or {}
    parts = []
    for key in list(dict.fromkeys([*old, *new])):
        label = key.replace("_", " ")
        if key in old and key in new:
            parts.append(f"{label}: {_value(old[key])} \u2192 {_value(new[key])}")
        elif key in new:
            parts.append(f"{label}: {_value(new[key])}")
        else:
            parts.append(f"{label} was {_value(old[key])}")
    return "; ".join(parts)


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    at_label: str
    actor: str
    action: str
    action_label: str
    entity: str
    entity_id: int | None
    lead_id: int | None
    change: str


def entries(
    session: Session,
    *,
    actor: CurrentUser,
    lead_id: int | None = None,
    actor_id: int | None = None,
    action: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[AuditRow]:
    """The newest entries first, filtered; page with `before_id` (the last id of the previous page).
    Managers only: the log shows changes across the whole team."""
    require_role(actor, Role.MANAGER, "read the audit log")
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
    return [
        AuditRow(
            id=r.id,
            at=r.at,
            at_label=f"{r.at:%Y-%m-%d %H:%M}",
            actor=r.actor,
            action=r.action,
            action_label=ACTION_LABELS.get(r.action, r.action.replace("_", " ").capitalize()),
            entity=r.entity,
            entity_id=r.entity_id,
            lead_id=r.lead_id,
            change=describe(r.old, r.new),
        )
        for r in rows
    ]
