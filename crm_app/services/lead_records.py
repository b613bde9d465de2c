"""Leads as records for other systems (the REST API): one lead, or a page of leads with a cursor.

Pages are keyset-paginated in SQL (never OFFSET over the whole table, never every lead at once),
and run under the caller's row-level security like every other read.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.queries import TIER_SCORES, search_pattern
from crm_app.domain import Stage, Tier
from crm_app.services.errors import InvalidInput, NotFound

MAX_PAGE = 200
SORTS = ("score", "updated")

_COLUMNS = """
    l.id, l.external_id, l.name, l.email, l.phone, l.title, l.company, l.company_size, l.source, l.stage,
    l.owner_id, u.name AS owner_name, u.email AS owner_email, l.deal_value, l.score, l.tier, l.score_reasons,
    l.scored_at, l.score_valid_until, l.risk_level, l.risk_points, l.risk_reasons, l.version, l.created_at,
    l.updated_at, l.last_activity_at, l.last_contacted_at, l.closed_at, l.custom_fields
"""
_FROM = " FROM leads l LEFT JOIN users u ON u.id = l.owner_id "


@dataclass(frozen=True)
class LeadQuery:
    tier: str | None = None
    stage: str | None = None
    owner: str | None = None  # "me", "pool", or a user id as text
    search: str | None = None
    updated_since: datetime | None = None
    sort: str = "score"
    limit: int = 50
    cursor: str | None = None


def _record(row: Any) -> dict[str, Any]:
    data = dict(row._mapping)
    owner = None
    if data["owner_id"] is not None:
        owner = {"id": data["owner_id"], "name": data["owner_name"], "email": data["owner_email"]}
    for key in ("owner_id", "owner_name", "owner_email"):
        data.pop(key)
    data["owner"] = owner
    data["deal_value"] = str(data["deal_value"])
    data["reasons"] = data.pop("score_reasons") or []
    data["risk_reasons"] = data["risk_reasons"] or []
    data["custom_fields"] = data["custom_fields"] or {}
    return data


def get_lead(session: Session, lead_id: int) -> dict[str, Any]:
    row = session.execute(text(f"SELECT {_COLUMNS} {_FROM} WHERE l.id = :id"), {"id": lead_id}).first()
    if row is None:
        raise NotFound(f"There is no lead {lead_id}.")
    return _record(row)


def get_leads(session: Session, lead_ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = session.execute(text(f"SELECT {_COLUMNS} {_FROM} WHERE l.id = ANY(:ids)"), {"ids": lead_ids})
    return {row.id: _record(row) for row in rows}


def _encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


_INT4 = 2_147_483_647  # PostgreSQL integer: a larger id or score in a cursor is not one we gave out


def _whole(value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(value)
    return value


def _decode_cursor(cursor: str, sort: str) -> list[Any]:
    """The cursor's [score, id] or [updated_at, id], exactly as _encode_cursor wrote them; anything
    else (tampered, another sort's, out of range) is an InvalidInput naming the cursor."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(values, list) or len(values) != 2:
            raise ValueError(values)
        last_id = _whole(values[1], 1, _INT4)
        if sort == "score":
            return [_whole(values[0], 0, 100), last_id]
        if not isinstance(values[0], str):
            raise ValueError(values[0])
        moment = datetime.fromisoformat(values[0])
        if moment.tzinfo is None:
            raise ValueError(values[0])
        return [moment, last_id]
    except (ValueError, TypeError, OverflowError, RecursionError):  # JSON and base64 errors are ValueErrors
        raise InvalidInput("This cursor is not one this API gave out; start again without it.",
                           field="cursor") from None


def list_leads(session: Session, query: LeadQuery, *, viewer_id: int) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the leads the viewer may see, best first (or most recently updated first), and the
    cursor for the next page (None on the last page)."""
    if query.sort not in SORTS:
        raise InvalidInput(f"sort is one of: {', '.join(SORTS)}.", field="sort")
    if not 1 <= query.limit <= MAX_PAGE:
        raise InvalidInput(f"limit is between 1 and {MAX_PAGE}.", field="limit")
    where, params = ["TRUE"], {"limit": query.limit + 1}
    if query.tier:
        if query.tier not in {t.value for t in Tier}:
            raise InvalidInput("tier is one of: hot, warm, cold.", field="tier")
        # As its range of scores (queries.tier_condition): walked in the score index the page reads.
        where.append("l.score BETWEEN :tier_low AND :tier_high")
        params["tier_low"], params["tier_high"] = TIER_SCORES[query.tier]
    if query.stage:
        if query.stage not in {s.value for s in Stage}:
            raise InvalidInput(f"stage is one of: {', '.join(s.value for s in Stage)}.", field="stage")
        where.append("l.stage = :stage")
        params["stage"] = query.stage
    if query.owner:
        if query.owner == "me":
            where.append("l.owner_id = :owner")
            params["owner"] = viewer_id
        elif query.owner == "pool":
            where.append("l.owner_id IS NULL")
        elif query.owner.isdecimal():
            where.append("l.owner_id = :owner")
            params["owner"] = int(query.owner)
        else:
            raise InvalidInput("owner is me, pool or a user id.", field="owner")
    if query.search:
        term = query.search.strip()[:100]
        if term:
            where.append("l.id IN (SELECT crm_lead_ids_matching(:term))")  # see db.queries.search_condition
            params["term"] = search_pattern(term)
    if query.updated_since:
        where.append("l.updated_at >= :since")
        params["since"] = query.updated_since
    if query.sort == "score":
        order = "l.score DESC, l.id DESC"
        if query.cursor:
            score, last_id = _decode_cursor(query.cursor, "score")
            where.append("(l.score, l.id) < (:c_score, :c_id)")
            params.update(c_score=score, c_id=last_id)
    else:
        order = "l.updated_at DESC, l.id DESC"
        if query.cursor:
            moment, last_id = _decode_cursor(query.cursor, "updated")
            where.append("(l.updated_at, l.id) < (:c_at, :c_id)")
            params.update(c_at=moment, c_id=last_id)
    rows = session.execute(
        text(f"SELECT {_COLUMNS} {_FROM} WHERE {' AND '.join(where)} ORDER BY {order} LIMIT :limit"), params
    ).all()
    items = [_record(row) for row in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        last = items[-1]
        next_cursor = _encode_cursor([last["score"], last["id"]] if query.sort == "score"
                                     else [last["updated_at"].isoformat(), last["id"]])
    return items, next_cursor
