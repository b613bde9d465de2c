"""Next best action for open leads, mined from the team's own history.

`refresh_play_stats` recomputes the play_stats table in one SQL statement: for every stay of a
lead in an open stage that began at least MOVE_WINDOW_DAYS ago (so its outcome is known), whether
it moved forward in that window, and which plays a rep used during it; counted per stage x
(source, size band) segment, with coarser 'any' rows for thin segments (GROUPING SETS). It runs at
seeding, from the background sweep when the table is older than REFRESH_EVERY, and on demand.

`next_actions` then reads only the leads asked about, their plays in their current stage (an
index lookup) and the small play_stats rows of their stages: showing 25 queue items never rescans
history. The choice itself is scoring.next_action (pure).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlmodel import Session

from crm_app.domain import CONTACT_KINDS, OPEN_STAGES, Stage
from crm_app.scoring.next_action import (
    ANY,
    MIN_SUPPORT,
    MOVE_WINDOW_DAYS,
    LeadSituation,
    NextAction,
    PlayStat,
    next_best_action,
    size_band_sql,
)

REFRESH_EVERY = timedelta(hours=6)
# Any constant shared by all workers: only one refreshes at a time.
_REFRESH_LOCK_KEY = 0x9BA


def _ordinals() -> str:
    stages = [*OPEN_STAGES, Stage.WON]
    return ", ".join(f"('{s.value}', {i})" for i, s in enumerate(stages))


_REFRESH_SQL = """
WITH ord(stage, n) AS (VALUES {ordinals}),
stays AS (
    SELECT sc.lead_id, sc.to_stage AS stage, sc.changed_at AS entered_at,
           lead(sc.changed_at) OVER w AS left_at, lead(sc.to_stage) OVER w AS next_stage
      FROM stage_changes sc
    WINDOW w AS (PARTITION BY sc.lead_id ORDER BY sc.changed_at, sc.id)
),
decided AS (
    -- Stays old enough for their outcome to be known; moved = a later stage (or won) in the window.
    SELECT s.lead_id, s.stage, s.entered_at,
           least(coalesce(s.left_at, s.entered_at + :window), s.entered_at + :window) AS until,
           l.source, {band} AS size_band,
           coalesce(s.left_at <= s.entered_at + :window AND nx.n > o.n, FALSE) AS moved
      FROM stays s
      JOIN leads l ON l.id = s.lead_id
      JOIN ord o ON o.stage = s.stage
      LEFT JOIN ord nx ON nx.stage = s.next_stage
     WHERE s.stage = ANY(:open_stages) AND s.entered_at <= CAST(:now AS timestamptz) - :window
),
played AS (
    -- Each play a rep used during a stay, once per stay.
    SELECT DISTINCT d.lead_id, d.entered_at, a.play
      FROM decided d
      JOIN activities a ON a.lead_id = d.lead_id AND a.play IS NOT NULL AND a.kind = ANY(:rep_kinds)
                       AND a.occurred_at >= d.entered_at AND a.occurred_at < d.until
),
totals AS (
    SELECT stage, coalesce(source, 'any') AS source, coalesce(size_band, 'any') AS size_band,
           count(*) AS stays, count(*) FILTER (WHERE moved) AS moved
      FROM decided
     GROUP BY GROUPING SETS ((stage, source, size_band), (stage, source), (stage, size_band), (stage))
),
withs AS (
    SELECT d.stage, coalesce(d.source, 'any') AS source, coalesce(d.size_band, 'any') AS size_band, p.play,
           count(*) AS stays, count(*) FILTER (WHERE d.moved) AS moved
      FROM decided d JOIN played p USING (lead_id, entered_at)
     GROUP BY GROUPING SETS ((d.stage, d.source, d.size_band, p.play), (d.stage, d.source, p.play),
                             (d.stage, d.size_band, p.play), (d.stage, p.play))
)
INSERT INTO play_stats (stage, source, size_band, play, stays_with, moved_with, stays_without,
                        moved_without, refreshed_at)
SELECT w.stage, w.source, w.size_band, w.play, w.stays, w.moved, t.stays - w.stays, t.moved - w.moved, :now
  FROM withs w JOIN totals t USING (stage, source, size_band)
"""


def refresh_play_stats(session: Session, now: datetime) -> int:
    """Recompute the per-segment play statistics from the whole history and commit. Returns the
    number of rows stored. Readers see the old table until the new one is committed."""
    session.execute(text("DELETE FROM play_stats"))
    stored = session.execute(
        text(_REFRESH_SQL.format(ordinals=_ordinals(), band=size_band_sql("l.company_size"))),
        {
            "now": now,
            "window": timedelta(days=MOVE_WINDOW_DAYS),
            "open_stages": [s.value for s in OPEN_STAGES],
            "rep_kinds": [k.value for k in CONTACT_KINDS],
        },
    ).rowcount
    session.commit()
    return stored


def play_stats_refreshed_at(session: Session) -> datetime | None:
    return session.execute(text("SELECT max(refreshed_at) FROM play_stats")).scalar()


def refresh_play_stats_if_stale(session: Session, now: datetime, max_age: timedelta = REFRESH_EVERY) -> int | None:
    """Refresh when the statistics are older than `max_age` (or missing), unless another worker is
    already at it. Returns the rows stored, or None when nothing was done."""
    if not session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _REFRESH_LOCK_KEY}).scalar():
        return None
    refreshed = play_stats_refreshed_at(session)
    if refreshed is not None and now - refreshed < max_age:
        session.rollback()
        return None
    has_history = session.execute(text("SELECT EXISTS (SELECT 1 FROM stage_changes)")).scalar()
    if refreshed is None and not has_history:
        session.rollback()
        return None
    return refresh_play_stats(session, now)


_SITUATIONS_SQL = """
SELECT l.id, l.stage, l.source, {band} AS size_band, l.tier, l.stage_entered_at, r.stagnation_days,
       coalesce(array_agg(DISTINCT a.play) FILTER (WHERE a.play IS NOT NULL), '{{}}') AS plays
  FROM leads l
  LEFT JOIN stage_rules r ON r.stage = l.stage
  LEFT JOIN activities a ON a.lead_id = l.id AND a.play IS NOT NULL AND a.kind = ANY(:rep_kinds)
                        AND a.occurred_at >= l.stage_entered_at
 WHERE l.id = ANY(:ids) AND l.stage = ANY(:open_stages)
 GROUP BY l.id, r.stagnation_days
"""

_STATS_SQL = """
SELECT stage, source, size_band, play, stays_with, moved_with, stays_without, moved_without
  FROM play_stats
 WHERE stage = ANY(:stages) AND source = ANY(:sources) AND size_band = ANY(:bands)
"""


def next_actions(
    session: Session, lead_ids: list[int], now: datetime, min_support: int = MIN_SUPPORT
) -> dict[int, NextAction]:
    """The next best action of each open lead among `lead_ids` (closed leads get none), in two
    small queries whatever the size of the history."""
    if not lead_ids:
        return {}
    params = {"ids": list(lead_ids), "open_stages": [s.value for s in OPEN_STAGES],
              "rep_kinds": [k.value for k in CONTACT_KINDS]}
    rows = session.execute(text(_SITUATIONS_SQL.format(band=size_band_sql("l.company_size"))), params).all()
    if not rows:
        return {}
    stats_rows = session.execute(
        text(_STATS_SQL),
        {
            "stages": list({r.stage for r in rows}),
            "sources": [ANY, *{r.source for r in rows}],
            "bands": [ANY, *{r.size_band for r in rows}],
        },
    ).all()
    stats: dict[str, list[PlayStat]] = defaultdict(list)
    for s in stats_rows:
        stats[s.stage].append(PlayStat(*s))
    found = {}
    for r in rows:
        situation = LeadSituation(
            stage=r.stage, source=r.source, size_band=r.size_band, tier=r.tier,
            days_in_stage=max(0, (now - r.stage_entered_at).days), stall_days=r.stagnation_days,
            plays_this_stage=frozenset(r.plays),
        )
        found[r.id] = next_best_action(situation, stats[r.stage], min_support)
    return found


def next_action_for(session: Session, lead_id: int, now: datetime) -> NextAction | None:
    """The next best action of one lead; None when it is closed or gone."""
    return next_actions(session, [lead_id], now).get(lead_id)
