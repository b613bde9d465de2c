"""Why deals are lost: the team's list of reasons (Settings; the Lost dialog offers it) and the
count of lost deals per reason, by source and by the stage they were lost from (Analytics).

A lost deal keeps its reason as text (leads.lost_reason), so renaming or removing an entry of the
list never rewrites history; deals lost without one (older ones, the REST API without a reason)
count as "No reason given".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from crm_app.db.models import LostReason
from crm_app.domain import Role, Source, Stage
from crm_app.services.analytics import AnalyticsFilter
from crm_app.services.analytics_rollup import Kind, rollup_rows
from crm_app.services.errors import InvalidInput, NotFound
from crm_app.services.leads import MAX_LOST_REASON
from crm_app.services.permissions import CurrentUser, require_role

NO_REASON = "No reason given"
MAX_REASONS = 30


def reason_labels(session: Session) -> list[str]:
    """The list, in its order."""
    return list(session.execute(select(LostReason.label).order_by(LostReason.position, LostReason.id)).scalars())


def add_reason(session: Session, *, label: str, actor: CurrentUser) -> LostReason:
    """A manager adds an entry at the end of the list and commits."""
    require_role(actor, Role.MANAGER, "change the lost reasons")
    label = " ".join((label or "").split())
    if not label:
        raise InvalidInput("Type a reason.", field="lost_reason")
    if len(label) > MAX_LOST_REASON:
        raise InvalidInput(f"A reason is at most {MAX_LOST_REASON} characters.", field="lost_reason")
    count, last = session.execute(select(func.count(), func.max(LostReason.position))).one()
    if count >= MAX_REASONS:
        raise InvalidInput(f"The list holds at most {MAX_REASONS} reasons.", field="lost_reason")
    reason = LostReason(label=label, position=(last or 0) + 1)
    session.add(reason)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise InvalidInput("That reason is already in the list.", field="lost_reason") from None
    return reason


def remove_reason(session: Session, *, label: str, actor: CurrentUser) -> None:
    """A manager removes an entry and commits (deals lost with it keep it)."""
    require_role(actor, Role.MANAGER, "change the lost reasons")
    reason = session.execute(select(LostReason).where(LostReason.label == label)).scalars().first()
    if reason is None:
        raise NotFound("That reason is no longer in the list.")
    session.delete(reason)
    session.commit()


@dataclass
class LostReasonRow:
    reason: str
    total: int
    # One count per column of the table, in the order of the table's columns.
    counts: list[int] = field(default_factory=list)


@dataclass
class LostReasonTable:
    columns: list[str]  # source or stage labels
    rows: list[LostReasonRow]


# From the analytics rollup (migration 0031): lost leads per source, reason and the stage their latest
# move to Lost left ("new" when no move was recorded).
_BREAKDOWN_SQL = """
SELECT coalesce(k2, :none) AS reason, k1 AS source, k3 AS from_stage, sum(n)::bigint AS n
  FROM ({rows}) parts
 GROUP BY 1, 2, 3
HAVING sum(n) > 0
"""


def breakdown_rows(session: Session, *, flt: AnalyticsFilter) -> list:
    """(reason, source, from_stage, n) for the lost deals in scope."""
    parts, params = rollup_rows(flt, Kind.LOST)
    return session.execute(text(_BREAKDOWN_SQL.format(rows=parts)), {**params, "none": NO_REASON}).all()


def lost_reason_tables(session: Session, *, flt: AnalyticsFilter) -> tuple[LostReasonTable, LostReasonTable]:
    """Lost deals per reason, by source and by the stage they were lost from: two tables, the most
    common reason first; only the sources and stages that lost a deal get a column."""
    rows = breakdown_rows(session, flt=flt)
    totals: dict[str, int] = {}
    for r in rows:
        totals[r.reason] = totals.get(r.reason, 0) + r.n
    reasons = sorted(totals, key=lambda reason: (-totals[reason], reason == NO_REASON, reason))

    def table(attribute: str, order: list[str], label) -> LostReasonTable:
        keys = [k for k in order if any(getattr(r, attribute) == k for r in rows)]
        cells = {(r.reason, k): 0 for r in rows for k in keys}
        for r in rows:
            cells[(r.reason, getattr(r, attribute))] += r.n
        return LostReasonTable(columns=[label(k) for k in keys],
                               rows=[LostReasonRow(reason, totals[reason], [cells.get((reason, k), 0) for k in keys])
                                     for reason in reasons])

    by_source = table("source", [s.value for s in Source], lambda k: Source(k).label)
    by_stage = table("from_stage", [s.value for s in Stage], lambda k: Stage(k).label)
    return by_source, by_stage
