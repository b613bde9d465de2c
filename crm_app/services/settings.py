"""Team settings a manager edits: what each source costs, and how long a deal may sit in a stage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlmodel import Session

from crm_app.db.models import SourceCost, StageRule
from crm_app.db.queries import money
from crm_app.domain import OPEN_STAGES, Source, Stage
from crm_app.services.errors import InvalidInput
from crm_app.services.permissions import CurrentUser, require_manager
from crm_app.services.risk import expire_stage_risk

MAX_COST = Decimal("9999999999.99")  # what NUMERIC(12, 2) holds
MIN_DAYS, MAX_DAYS = 1, 365


@dataclass
class SourceCostRow:
    source: str
    label: str
    cost: str  # as typed in the editor: "" when none is set
    cost_label: str


@dataclass
class StageRuleRow:
    stage: str
    label: str
    days: str


def source_costs(session: Session) -> list[SourceCostRow]:
    """Every source, with its cost where one is set."""
    stored = dict(session.execute(select(SourceCost.source, SourceCost.cost)).all())
    rows = []
    for source in Source:
        cost = stored.get(source.value)
        rows.append(
            SourceCostRow(
                source=source.value,
                label=source.label,
                cost="" if cost is None else f"{cost:f}".rstrip("0").rstrip("."),
                cost_label="Not set" if cost is None else money(cost),
            )
        )
    return rows


def parse_cost(typed: str) -> Decimal | None:
    """A cost as typed ("12,500", "$800", "99.5"); None when left blank. Raises InvalidInput."""
    text = (typed or "").strip().replace(",", "").replace("$", "").replace(" ", "")
    if not text:
        return None
    try:
        cost = Decimal(text)
    except InvalidOperation:
        raise InvalidInput("Enter an amount in dollars, e.g. 12500.", field="cost") from None
    if not cost.is_finite():
        raise InvalidInput("Enter an amount in dollars, e.g. 12500.", field="cost")
    if cost < 0:
        raise InvalidInput("A cost cannot be negative.", field="cost")
    if cost > MAX_COST:
        raise InvalidInput(f"That is more than ${MAX_COST:,}.", field="cost")  # to the cent, not rounded
    if cost != cost.quantize(Decimal("0.01")):
        raise InvalidInput("Use at most two decimals (cents).", field="cost")
    return cost


def set_source_cost(
    session: Session, *, source: str, typed: str, now: datetime, actor: CurrentUser | None
) -> SourceCostRow:
    """Store what a source cost (blank removes it) and commit. Raises InvalidInput, and Forbidden
    unless `actor` is a manager (None: the tables' owner, see permissions.require_manager)."""
    require_manager(session, actor, "change source costs")
    try:
        source = Source(source)
    except ValueError:
        raise InvalidInput(f"Unknown source {source!r}.", field="source") from None
    cost = parse_cost(typed)
    row = session.get(SourceCost, source.value, with_for_update=True)
    if cost is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(SourceCost(source=source.value, cost=cost, updated_at=now))
    else:
        row.cost, row.updated_at = cost, now
        session.add(row)
    session.commit()
    return next(r for r in source_costs(session) if r.source == source.value)


def stage_rules(session: Session) -> list[StageRuleRow]:
    """Days each open stage may last before a deal counts as stagnating, in pipeline order."""
    stored = dict(session.execute(select(StageRule.stage, StageRule.stagnation_days)).all())
    return [
        StageRuleRow(stage=s.value, label=s.label, days=str(stored.get(s.value, "")))
        for s in OPEN_STAGES
    ]


def set_stagnation_days(session: Session, *, stage: str, typed: str, actor: CurrentUser | None) -> StageRuleRow:
    """Store how many days a deal may sit in an open stage (1-365) and commit. Raises InvalidInput,
    and Forbidden unless `actor` is a manager (None: the tables' owner)."""
    require_manager(session, actor, "change stage limits")
    try:
        stage = Stage(stage)
    except ValueError:
        raise InvalidInput(f"Unknown stage {stage!r}.", field="stage") from None
    if stage.is_closed:
        raise InvalidInput(f"{stage.label} is a closed stage: deals do not stagnate there.", field="stage")
    text = (typed or "").strip()
    if not text.isdecimal():
        raise InvalidInput("Enter a whole number of days.", field="days")
    days = int(text)
    if not MIN_DAYS <= days <= MAX_DAYS:
        raise InvalidInput(f"Choose between {MIN_DAYS} and {MAX_DAYS} days.", field="days")
    row = session.get(StageRule, stage.value, with_for_update=True)
    if row is None:
        session.add(StageRule(stage=stage.value, stagnation_days=days))
    else:
        row.stagnation_days = days
        session.add(row)
    expire_stage_risk(session, stage.value)  # stalled-deal risk depends on the limit
    session.commit()
    return StageRuleRow(stage=stage.value, label=stage.label, days=str(days))
