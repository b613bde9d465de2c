"""Reading the analytics rollup (migration 0031): the counts and sums of the leads an
AnalyticsFilter selects, without scanning the leads or their stage history.

`analytics_rollup` holds, per kind x day the lead was created (UTC) x dates known x owner x up to three
keys, counts and sums kept by triggers in the writers' transactions; each fact twice, under its day
and under its month (`monthly`). A period's whole months are read from the month rows, its other whole
days from the day rows, and as it ends at "now", not at midnight, the part days at its two ends from
`analytics_facts`: the same rows computed from the leads created in those hours (a few thousand at 1M
leads, found by the created_at index). All are read under the caller's row security. Where it reads
less, a part month is its month row less the day rows of its other days, and a part day its day row
less the facts of its other hours: a 90-day period at 1M leads read ~30 days of day rows and the ~5,200
leads of its two part days (the lead summaries joined to each: ~0.3 s of the funnel); now ~7 days and
the ~800 leads of its first part day, since no lead is created after "now" on the last.

Kinds and their keys (k1, k2, k3); measures n, score_sum, value_sum, days_sum, days_n:
  1 SOURCE   source, the file's word for it (source_detail), open/won/lost; score, won value and
             days to close of won deals with known dates (days_n of them)
  2 TIER     tier now, open/closed
  3 CLOSE    tier of the score at close, won/lost (closed leads with a score at close)
  4 FURTHEST the furthest funnel stage reached (0 new .. 6 won), dated leads only
  5 STAYS    the stage of completed stays (n stays, days_sum their days), dated leads only
  6 LOST     source, lost reason (NULL: none given), stage it was lost from; lost leads only
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crm_app.services.analytics import AnalyticsFilter


class Kind(IntEnum):
    SOURCE = 1
    TIER = 2
    CLOSE = 3
    FURTHEST = 4
    STAYS = 5
    LOST = 6


_KEYS = "k1, k2, k3, day"
_MEASURES = "n, score_sum, value_sum, days_sum, days_n"


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)


@dataclass(frozen=True)
class _Span:
    """Whole UTC days [first_day, end_day) read from the rollup (None: unbounded), and the part days
    (created_at ranges) read from the leads."""

    first_day: date | None
    end_day: date | None
    edges: tuple[tuple[datetime | None, datetime | None], ...]


def _span(created_from: datetime | None, created_to: datetime | None) -> _Span:
    first_day = end_day = None
    if created_from is not None:
        utc = created_from.astimezone(timezone.utc)
        first_day = utc.date() if utc == _midnight(utc.date()) else utc.date() + timedelta(days=1)
    if created_to is not None:
        end_day = created_to.astimezone(timezone.utc).date()
    if first_day is not None and end_day is not None and first_day >= end_day:
        # Less than a whole day: all of it from the leads.
        return _Span(first_day, first_day, ((created_from, created_to),))
    edges = []
    if created_from is not None and _midnight(first_day) > created_from:
        edges.append((created_from, _midnight(first_day)))
    if created_to is not None and created_to > _midnight(end_day):
        edges.append((_midnight(end_day), created_to))
    return _Span(first_day, end_day, tuple(edges))


def _first_of_next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


# A grain of the rollup to read: (monthly, from, to, sign), the stored rows of [from, to) added (+1) or
# taken away (-1).
_Grain = tuple[bool, date | None, date | None, int]


def _part_month(low: date, high: date) -> list[_Grain]:
    """The days [low, high) of one month: their day rows, or the month's row less the month's other
    days when those are fewer (a period's first month usually starts late in it, and the month of its
    end has few days after it)."""
    month = low.replace(day=1)
    after = _first_of_next_month(month)
    if (low - month).days + (after - high).days >= (high - low).days:
        return [(False, low, high, 1)]
    grains: list[_Grain] = [(True, month, after, 1)]
    if month < low:
        grains.append((False, month, low, -1))
    if high < after:
        grains.append((False, high, after, -1))
    return grains


def _grains(first_day: date | None, end_day: date | None) -> list[_Grain]:
    """Grains whose sum covers [first_day, end_day): whole months from month rows, each part month from
    its day rows or from its month row less the days outside it, whichever reads fewer days."""
    month_from = first_day if first_day is None or first_day.day == 1 else _first_of_next_month(first_day)
    month_to = None if end_day is None else end_day.replace(day=1)
    if month_from is not None and month_to is not None and month_from > month_to:
        return _part_month(first_day, end_day)  # within one month
    ranges: list[_Grain] = []
    if month_from != month_to or month_from is None:
        ranges.append((True, month_from, month_to, 1))
    if first_day is not None and first_day < month_from:
        ranges += _part_month(first_day, month_from)
    if end_day is not None and month_to < end_day:
        ranges += _part_month(month_to, end_day)
    return ranges


def rollup_rows(
    flt: AnalyticsFilter,
    kind: Kind | None,
    *,
    dated: bool = False,
    daily: bool = False,
    table: str = "analytics_rollup",
    facts: str = "analytics_facts",
    keys: str = _KEYS,
    measures: str = _MEASURES,
    count: str = "n",
) -> tuple[str, dict]:
    """A query (for a WITH clause or FROM) of rollup-shaped rows (k1, k2, k3, day, n, score_sum,
    value_sum, days_sum, days_n) whose sums over any grouping of keys are the filter's figures, and its
    parameters. `dated`: leads imported without dates are left out even without a period. `daily`:
    every row is of one day (for a grouping by week), none a month's. Another rollup of the same
    shape (day x dates known x owner, monthly rows, a facts view for the part days) is read with
    `table`, `facts`, its `keys` (day last) and summed `measures`, its `count` column, and `kind`
    None. A part month may be read as its month row less its other days' rows, a part day as its day
    row less the leads of its other hours (negated `measures`): the rows' sums are the figures, but a
    row's sign is not that of a stored count."""
    columns = f"{keys}, {measures}"
    params: dict = {}
    common = ["TRUE"]
    if kind is not None:
        common = ["kind = :kind"]
        params["kind"] = int(kind)
    if flt.owner_id is not None:
        common.append("owner_id = :owner_id")
        params["owner_id"] = flt.owner_id
    period = flt.created_from is not None or flt.created_to is not None
    if period or dated:
        common.append("dates_known")
    # A key whose leads have all gone keeps a row of zeros until it is used again.
    stored = [*common, f"{count} <> 0"]
    if not period:
        grain = "NOT monthly" if daily else "monthly"
        return f"SELECT {columns} FROM {table} WHERE {' AND '.join(stored)} AND {grain}", params
    span = _span(flt.created_from, flt.created_to)
    parts = []
    negated = ", ".join([keys, *(f"-{m} AS {m}" for m in (m.strip() for m in measures.split(",")))])
    if span.first_day is None or span.end_day is None or span.first_day < span.end_day:
        grains = [(False, span.first_day, span.end_day, 1)] if daily else _grains(span.first_day, span.end_day)
        for i, (monthly, low, high, sign) in enumerate(grains):
            bounds = [f"monthly = {'true' if monthly else 'false'}"]
            if low is not None:
                bounds.append(f"day >= :day_from_{i}")
                params[f"day_from_{i}"] = low
            if high is not None:
                bounds.append(f"day < :day_to_{i}")
                params[f"day_to_{i}"] = high
            parts.append(f"SELECT {columns if sign > 0 else negated} FROM {table} WHERE {' AND '.join(stored + bounds)}")
    # The part days at the ends: the leads created in those hours, or the day's row less the leads created
    # in its other hours when those are fewer (the day a period ends "now" has few after it).
    ranges: dict[int, list[str]] = {1: [], -1: []}
    for i, (low, high) in enumerate(span.edges):
        day = low.astimezone(timezone.utc).date()
        start, end = _midnight(day), _midnight(day + timedelta(days=1))
        if high <= end and (low - start) + (end - high) < high - low:
            params[f"edge_day_{i}"] = day
            parts.append(f"SELECT {columns} FROM {table} WHERE {' AND '.join(stored)} "
                         f"AND monthly = false AND day = :edge_day_{i}")
            outside = [(start, low), (high, end)]
        else:
            outside, ranges[1] = [], [*ranges[1], f"(created_at >= :edge_from_{i} AND created_at < :edge_to_{i})"]
            params[f"edge_from_{i}"], params[f"edge_to_{i}"] = low, high
        for j, (other_low, other_high) in enumerate(outside):
            if other_low < other_high:
                ranges[-1].append(f"(created_at >= :edge_from_{i}_{j} AND created_at < :edge_to_{i}_{j})")
                params[f"edge_from_{i}_{j}"], params[f"edge_to_{i}_{j}"] = other_low, other_high
    for sign, found in ranges.items():
        if found:
            parts.append(f"SELECT {columns if sign > 0 else negated} FROM {facts} WHERE {' AND '.join(common)} "
                         f"AND ({' OR '.join(found)})")
    if not parts:
        parts.append(f"SELECT {columns} FROM {table} WHERE false")
    return " UNION ALL ".join(parts), params
