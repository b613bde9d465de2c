"""The pipeline board: deals per stage, each column's count and value, and stagnating deals.

Everything is filtered, counted, summed, sorted and paged in SQL. A column is loaded a page of
cards at a time (best score first); its header counts the whole filtered set, not the loaded cards.
A deal is *stagnating* when it has spent more whole days in its stage than the `stage_rules` limit
for that stage (closed stages have no limit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import Integer, String, and_, case, column, false, func, select, text, true, tuple_, values
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from crm_app.db.models import FollowUp, Lead, StageRule, User
from crm_app.db.queries import money, search_condition, tier_condition
from crm_app.domain import Stage
from crm_app.services.forecast import Weighting, weighting

STAGES: tuple[str, ...] = tuple(s.value for s in Stage)
PAGE = 25  # cards per column per load
MAX_CARDS = 100  # a column never holds more than this many cards in the browser


@dataclass(frozen=True)
class BoardFilter:
    """What the board is narrowed to. `owner_id` 0 means the unassigned pool, None the whole team."""

    owner_id: int | None = None
    tier: str | None = None
    source: str | None = None
    search: str | None = None
    only_stagnating: bool = False
    risk: str | None = None  # "high": deals at high risk; "any": at medium or high risk


@dataclass
class DealCard:
    id: int
    name: str
    company: str
    stage: str
    value_label: str
    score: int
    tier: str
    owner: str
    owner_initials: str
    days_in_stage: int
    stagnating: bool
    version: int
    risk_level: str = ""  # low | medium | high; "" for closed deals (scoring/risk.py)
    risk_reason: str = ""  # the weightiest reason, for the badge's tooltip
    # The deal's next step, as Pipedrive shows it: overdue (red), planned (green), none (grey).
    activity: str = "none"
    activity_label: str = "No next step planned"
    deal_value: float = 0.0  # what value_label shows, for the column's sums when the card moves
    saving: bool = False  # moved on the board, not written yet (state/pipeline._write_move)


@dataclass
class BoardColumn:
    stage: str
    label: str
    count: int = 0  # deals in this stage under the filter (all of them, not just the loaded cards)
    value_label: str = "$0"
    stagnating: int = 0
    cards: list[DealCard] = field(default_factory=list)
    # Open stages: value x P(win) (services/forecast.Weighting); empty for Won and Lost.
    weighted_label: str = ""
    # The sums behind the labels and how the stage is weighted, so a move can redraw the headers
    # without asking the database (board_with_move).
    value: float = 0.0
    value_score: float = 0.0  # sum of value x score
    win_rate: float | None = None  # the stage's win rate; None for Won and Lost
    by_model: bool = False  # weighted by the model's probability (score / 100) instead


# --- SQL building blocks ---------------------------------------------------------------------

_DAY_SECONDS = 86_400


def _days_in_stage(now: datetime) -> ColumnElement:
    """Whole days since the deal entered its stage (what the card shows)."""
    return func.floor(func.extract("epoch", now - Lead.stage_entered_at) / _DAY_SECONDS).cast(Integer)


def _stagnating(now: datetime) -> ColumnElement:
    """More whole days in the stage than its limit, i.e. in it for at least (limit + 1) x 24 hours.

    Written as a comparison on `stage_entered_at` so it can use the (stage, stage_entered_at) index;
    24-hour intervals (not calendar days) keep it exact across daylight-saving changes.
    """
    limit = (StageRule.stagnation_days + 1) * func.make_interval(0, 0, 0, 0, 24)
    return and_(StageRule.stagnation_days.is_not(None), Lead.stage_entered_at <= now - limit)


def _conditions(flt: BoardFilter, now: datetime) -> list[ColumnElement]:
    where: list[ColumnElement] = []
    if flt.owner_id == 0:
        where.append(Lead.owner_id.is_(None))
    elif flt.owner_id is not None:
        where.append(Lead.owner_id == flt.owner_id)
    if flt.tier:
        where.append(tier_condition(flt.tier))  # its range of scores, walked in ix_leads_*score
    if flt.source:
        where.append(Lead.source == flt.source)
    if flt.search and flt.search.strip():
        where.append(search_condition(flt.search))
    if flt.only_stagnating:
        where.append(_stagnating(now))
    if flt.risk == "high":
        where.append(Lead.risk_level == "high")
    elif flt.risk == "any":
        where.append(Lead.risk_level.in_(("medium", "high")))
    return where


def _with_rules(query):
    return query.outerjoin(StageRule, StageRule.stage == Lead.stage)


def _initials(name: str | None) -> str:
    if not name:
        return "–"
    return "".join(part[0] for part in name.split()[:2]).upper()


def _next_due() -> ColumnElement:
    """The deal's earliest open follow-up (through ix_follow_ups_lead), or NULL."""
    return (select(func.min(FollowUp.due_at)).where(FollowUp.lead_id == Lead.id, FollowUp.done_at.is_(None))
            .correlate(Lead).scalar_subquery())


def activity_status(next_due: datetime | None, now: datetime) -> tuple[str, str]:
    """(status, words) of a deal's next step: overdue, planned or none."""
    if next_due is None:
        return "none", "No next step planned"
    if next_due < now:
        return "overdue", f"Next step overdue since {next_due.day} {next_due:%b %H:%M}"
    return "planned", f"Next step planned for {next_due.day} {next_due:%b %H:%M}"


def _card(row, now: datetime) -> DealCard:
    return DealCard(
        id=row.id, name=row.name, company=row.company or "", stage=row.stage,
        value_label=money(row.deal_value), score=row.score, tier=row.tier,
        owner=row.owner_name or "Unassigned", owner_initials=_initials(row.owner_name),
        days_in_stage=max(0, row.days_in_stage), stagnating=bool(row.stagnating), version=row.version,
        risk_level=row.risk_level or "",
        risk_reason=max(row.risk_reasons, key=lambda r: r["points"])["text"] if row.risk_reasons else "",
        activity=activity_status(row.next_due, now)[0], activity_label=activity_status(row.next_due, now)[1],
        deal_value=float(row.deal_value or 0),
    )


def _card_columns(now: datetime) -> list:
    return [
        Lead.id, Lead.name, Lead.company, Lead.stage, Lead.deal_value, Lead.score, Lead.tier,
        Lead.version, User.name.label("owner_name"), _days_in_stage(now).label("days_in_stage"),
        Lead.risk_level, Lead.risk_reasons, _next_due().label("next_due"),
        case((_stagnating(now), true()), else_=false()).label("stagnating"),
    ]


# --- Read models -----------------------------------------------------------------------------


def _totals_kept(flt: BoardFilter) -> bool:
    """Can the headers come from `board_totals` (migration 0029)? It is kept per owner x stage x tier,
    so for the owner and tier filters; search, source, risk and "only stagnating" are counted from the
    leads themselves."""
    return not (flt.source or (flt.search and flt.search.strip()) or flt.only_stagnating or flt.risk)


def _owner_sql(owner_id: int | None, column: str) -> str:
    """The board's owner filter as SQL an index can use (IS NOT DISTINCT FROM cannot)."""
    if owner_id is None:
        return "TRUE"
    return f"{column} IS NULL" if owner_id == 0 else f"{column} = :owner_id"


_KEPT_TOTALS_SQL = """
SELECT stage, tier, sum(deals) AS deals, sum(value) AS value, sum(value_score) AS value_score
  FROM board_totals
 WHERE stage = ANY(:stages) AND ({owner}) AND (CAST(:tier AS text) IS NULL OR tier = :tier)
 GROUP BY stage, tier
"""

# Stagnating deals per stage (the rule of `_stagnating`), each stage's cutoff computed first: a plain
# comparison of stage_entered_at with it is leakproof, so under row-level security it is still an
# index condition (an interval product in the comparison is not, and made it a filter on every row).
_STUCK_SQL = """
SELECT r.stage,
       (SELECT count(*) FROM leads l
         WHERE l.stage = r.stage AND l.stage_entered_at <= r.cutoff AND ({owner})
           AND (CAST(:tier AS text) IS NULL OR l.tier = :tier)) AS stuck
  FROM (SELECT stage, CAST(:now AS timestamptz) - (stagnation_days + 1) * interval '24 hours' AS cutoff
          FROM stage_rules WHERE stagnation_days IS NOT NULL AND stage = ANY(:stages) OFFSET 0) r
"""


def kept_totals(session: Session, *, owner_id: int | None, stages: Sequence[str], tier: str | None = None
                ) -> dict[tuple[str, str], tuple[int, object, object]]:
    """(deals, value, value x score) per (stage, tier) from the totals the database keeps
    (`board_totals`, migration 0029), under the same row security as the leads (a rep reads their
    own and the pool's). `owner_id`: None everyone visible, 0 the unassigned pool."""
    rows = session.execute(
        text(_KEPT_TOTALS_SQL.format(owner=_owner_sql(owner_id, "owner_id"))),
        {"stages": list(stages), "owner_id": owner_id, "tier": tier})
    return {(r.stage, r.tier): (int(r.deals), r.value, r.value_score) for r in rows if r.deals}


def stuck_counts(session: Session, *, owner_id: int | None, stages: Sequence[str], now: datetime,
                 tier: str | None = None) -> dict[str, int]:
    """Stagnating deals per stage (of `stages` that have a limit), through the (owner, stage,
    stage_entered_at) indexes: the cost follows the stuck deals, not the table."""
    rows = session.execute(text(_STUCK_SQL.format(owner=_owner_sql(owner_id, "l.owner_id"))),
                           {"stages": list(stages), "owner_id": owner_id, "tier": tier, "now": now})
    return {r.stage: r.stuck for r in rows if r.stuck}


def compact_board_totals(session: Session) -> int:
    """Fold `board_totals`' deltas (one row per writing statement) into one row per owner x stage x
    tier, and commit; the sums stay what they were. Returns how many rows went. Run by the periodic
    sweep, as the tables' owner; readers and writers never wait on it."""
    folded = session.execute(text("SELECT crm_compact_board_totals()")).scalar_one()
    session.commit()
    return folded


def column_totals(session: Session, *, flt: BoardFilter, now: datetime,
                  stages: Sequence[str] = STAGES) -> dict[str, tuple[int, object, int, object]]:
    """Per stage (of `stages`): (deals, total value, stagnating deals, sum of value x score) over the
    whole filtered set.

    Under the owner and tier filters the sums come from `board_totals`, which the database keeps as
    deals change (migration 0029), and only the stagnating deals are counted, through the
    (owner, stage, stage_entered_at) indexes: the cost follows the stuck deals, not the table.
    Other filters aggregate the matching leads in one query."""
    stuck = _stagnating(now)
    in_stages = Lead.stage.in_(list(stages))
    if not _totals_kept(flt):
        query = _with_rules(
            select(Lead.stage, func.count(), func.coalesce(func.sum(Lead.deal_value), 0),
                   func.count().filter(stuck), func.coalesce(func.sum(Lead.deal_value * Lead.score), 0))
            .select_from(Lead)
        ).where(in_stages, *_conditions(flt, now)).group_by(Lead.stage)
        return {stage: (count, value, stagnating, scored) for stage, count, value, stagnating, scored
                in session.execute(query)}
    totals: dict[str, tuple[int, object, int, object]] = {}
    for (stage, _tier), (deals, value, scored) in kept_totals(session, owner_id=flt.owner_id, stages=stages,
                                                               tier=flt.tier).items():
        count, value_sum, _, scored_sum = totals.get(stage, (0, 0, 0, 0))
        totals[stage] = (count + deals, value_sum + value, 0, scored_sum + scored)
    stuck_by_stage = stuck_counts(session, owner_id=flt.owner_id, stages=stages, now=now, tier=flt.tier)
    return {stage: (deals, value, stuck_by_stage.get(stage, 0), scored)
            for stage, (deals, value, _, scored) in totals.items()}


def board_columns(
    session: Session,
    *,
    flt: BoardFilter,
    now: datetime,
    limit: int = PAGE,
    limits: Mapping[str, int] | None = None,
    stages: Sequence[str] = STAGES,
) -> list[BoardColumn]:
    """The board's columns (all stages, or `stages`): headers and each column's best cards.

    Each column gets its first `limit` cards by score (or `limits[stage]`, capped at MAX_CARDS).
    Cards come from one query: a LATERAL subquery per stage walks the (owner, stage, score) index
    and stops after that column's limit, so the cost does not grow with the size of the table.
    Headers come from column_totals, for the wanted stages only (a move redraws two columns).
    """
    wanted = [s for s in STAGES if s in set(stages)]
    per_column = {s: max(0, min(MAX_CARDS, (limits or {}).get(s, limit))) for s in wanted}
    wanted_rows = values(column("stage", String), column("n", Integer), name="wanted").data(
        [(s, per_column[s]) for s in wanted]
    )
    per_stage = (
        _with_rules(select(*_card_columns(now)).select_from(Lead))
        .outerjoin(User, User.id == Lead.owner_id)
        .where(Lead.stage == wanted_rows.c.stage, *_conditions(flt, now))
        .order_by(Lead.score.desc(), Lead.id.desc())
        .limit(wanted_rows.c.n)
        .lateral("card")
    )
    cards: dict[str, list[DealCard]] = {s: [] for s in wanted}
    if wanted:
        rows = session.execute(
            select(per_stage).select_from(wanted_rows).join(per_stage, true())
        )
        for row in rows:
            cards[row.stage].append(_card(row, now))
    totals = column_totals(session, flt=flt, now=now, stages=wanted)
    weights = weighting(session, now)
    columns = []
    for stage in wanted:
        count, value, stagnating, scored = totals.get(stage, (0, 0, 0, 0))
        columns.append(_with_totals(
            BoardColumn(stage=stage, label=Stage(stage).label, stagnating=stagnating, cards=cards[stage],
                        win_rate=weights.rates.get(stage), by_model=weights.model),
            count=count, value=float(value), value_score=float(scored)))
    return columns


# --- The board in memory: a move shown before it is saved ---------------------------------------


def _with_totals(column: BoardColumn, *, count: int, value: float, value_score: float, stagnating: int | None = None,
                 cards: list[DealCard] | None = None) -> BoardColumn:
    """`column` with these sums, its labels written from them."""
    if column.win_rate is None:
        weighted = ""
    else:
        weights = Weighting(model=column.by_model, rates={column.stage: column.win_rate})
        weighted = money(weights.weighted(column.stage, value, value_score))
    return replace(column, count=count, value=value, value_score=value_score, value_label=money(value),
                   weighted_label=weighted, stagnating=column.stagnating if stagnating is None else stagnating,
                   cards=column.cards if cards is None else cards)


def placed(cards: Sequence[DealCard], card: DealCard) -> list[DealCard]:
    """`cards` (best score first, then the higher id, as the board sorts) with `card` in its place;
    at the end when it ranks below every loaded card, so a card just moved stays in view."""
    for i, other in enumerate(cards):
        if (other.score, other.id) < (card.score, card.id):
            return [*cards[:i], card, *cards[i:]]
    return [*cards, card]


def find_card(columns: Sequence[BoardColumn], card_id: int) -> DealCard | None:
    return next((card for column in columns for card in column.cards if card.id == card_id), None)


def board_with_move(columns: Sequence[BoardColumn], card_id: int, to_stage: str, *, saving: bool) -> list[BoardColumn]:
    """The board with a card moved to `to_stage`'s column, as the database will have it once the move
    is written: the headers' count, value and weighted value go with the card, it has spent no day in
    its new stage (so it is not stagnating), and it sits where its score ranks it. Unchanged when the
    card is not on the board or already in that stage. `saving` marks the card as not written yet."""
    card = find_card(columns, card_id)
    if card is None or card.stage == to_stage or all(c.stage != to_stage for c in columns):
        return list(columns)
    moved = replace(card, stage=to_stage, days_in_stage=0, stagnating=False, saving=saving)
    weight = card.deal_value * card.score
    board = []
    for column in columns:
        if column.stage == card.stage:
            column = _with_totals(column, count=max(0, column.count - 1), value=column.value - card.deal_value,
                                  value_score=column.value_score - weight,
                                  stagnating=max(0, column.stagnating - int(card.stagnating)),
                                  cards=[c for c in column.cards if c.id != card_id])
        elif column.stage == to_stage:
            column = _with_totals(column, count=column.count + 1, value=column.value + card.deal_value,
                                  value_score=column.value_score + weight, cards=placed(column.cards, moved))
        board.append(column)
    return board


def board_with_card(columns: Sequence[BoardColumn], card: DealCard) -> list[BoardColumn]:
    """The board with a card replaced by its saved self (the move rescored it: a new score, tier,
    version), in its place by the new score; the column's value x score follows. Unchanged when the
    card is not in its stage's column (moved on again meanwhile, or filtered away)."""
    board = []
    for column in columns:
        old = next((c for c in column.cards if c.id == card.id), None)
        if column.stage == card.stage and old is not None:
            column = _with_totals(
                column, count=column.count, value=column.value + card.deal_value - old.deal_value,
                value_score=column.value_score + card.deal_value * card.score - old.deal_value * old.score,
                cards=placed([c for c in column.cards if c.id != card.id], card))
        board.append(column)
    return board


def column_cards(
    session: Session,
    *,
    stage: str,
    flt: BoardFilter,
    now: datetime,
    after: tuple[int, int] | None = None,
    limit: int = PAGE,
) -> list[DealCard]:
    """The next cards of one column by score, after the card (score, id) the column shows last."""
    query = (
        _with_rules(select(*_card_columns(now)).select_from(Lead))
        .outerjoin(User, User.id == Lead.owner_id)
        .where(Lead.stage == stage, *_conditions(flt, now))
    )
    if after is not None:
        # Keyset paging: stable even when cards above it move away meanwhile.
        query = query.where(tuple_(Lead.score, Lead.id) < tuple_(*after))
    query = query.order_by(Lead.score.desc(), Lead.id.desc()).limit(max(0, min(limit, MAX_CARDS)))
    return [_card(row, now) for row in session.execute(query)]


def deal_card(session: Session, *, lead_id: int, now: datetime) -> DealCard | None:
    """One deal as a card, whatever the board's filter (None if the session may not see it): a card
    just dropped stays in view in its new column even when it ranks below the loaded cards."""
    query = (
        _with_rules(select(*_card_columns(now)).select_from(Lead))
        .outerjoin(User, User.id == Lead.owner_id)
        .where(Lead.id == lead_id)
    )
    row = session.execute(query).first()
    return _card(row, now) if row is not None else None
