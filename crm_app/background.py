"""Work the app does on its own while it runs: keeping time-dependent scores and deal risks true, the
play statistics behind the next best action fresh, old API records purged, the board totals' deltas
folded. A job worker runs these
rounds as a periodic task of the job queue (crm_app/tasks.py); no web worker runs them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar
from datetime import datetime, timezone

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.engine import get_engine
from crm_app.db.outage import backoff, database_unavailable
from crm_app.services.accounts import purge_sign_in_records
from crm_app.services.api_keys import purge_old_records
from crm_app.services.next_action import refresh_play_stats_if_stale
from crm_app.services.notifications import notify_due_follow_ups
from crm_app.services.pipeline import compact_board_totals
from crm_app.services.risk import reassess_expired_risk
from crm_app.services.scoring import rescore_expired

# How often follow-ups that fell due are announced (services/notifications.py): a minute late at most
# (the job queue's periodic task crm.due_follow_ups, crm_app/tasks.py).
DUE_FOLLOW_UPS_EVERY_SECONDS = 60
# Any constant shared by all workers: only one of them sweeps at a time.
_SWEEP_LOCK_KEY = 0x5C0E

log = logging.getLogger(__name__)
T = TypeVar("T")


def exclusively(work: Callable[[Session], T]) -> T | None:
    """Run `work` unless another worker is already running a sweep; None when one is.

    The lock is a session-level advisory lock held on a connection of its own for the whole round:
    the work commits in batches, and a transaction-level lock would be released at its first commit.
    """
    with get_engine().connect() as lock:
        if not lock.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _SWEEP_LOCK_KEY}).scalar():
            return None
        try:
            with Session(get_engine()) as session:
                return work(session)
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _SWEEP_LOCK_KEY})


def sweep_once(now: datetime) -> int:
    """Rescore the leads whose 24-hour bonus ran out, unless another worker is already at it."""
    return exclusively(lambda session: rescore_expired(session, now)) or 0


def refresh_plays_once(now: datetime) -> int | None:
    """Recompute the play statistics when they are older than their refresh interval."""
    return exclusively(lambda session: refresh_play_stats_if_stale(session, now))


def sweep_risk_once(now: datetime) -> int:
    """Reassess the deals whose risk time alone has changed (stagnation grows by the day)."""
    return exclusively(lambda session: reassess_expired_risk(session, now)) or 0


def sweep_with_retries(give_up_after: float = 120.0) -> None:
    """One sweep: scores, risks, purge, play statistics. While the database is away a round is tried
    again with backoff (seconds, not the next sweep in five minutes); after `give_up_after` seconds the
    outage error is raised (the queue records the job as failed; the next sweep runs on schedule)."""
    started, outages = time.monotonic(), 0
    for what, step in (("Score sweep", _sweep_round), ("Purging old API and sign-in records", _purge_round),
                       ("Play statistics refresh", _plays_round), ("Board totals compaction", _compact_round)):
        while True:
            try:
                step()
                break
            except Exception as error:
                if not database_unavailable(error):
                    log.exception("%s failed", what)  # the other rounds still run
                    break
                if time.monotonic() - started > give_up_after:
                    raise
                log.warning("%s: the database is not reachable (%s)", what, type(error).__name__)
                time.sleep(min(backoff(outages) * 2, 30.0))
                outages += 1
    if outages:
        log.warning("Background sweep: the database is back")


def _sweep_round() -> None:
    count = sweep_once(datetime.now(timezone.utc))
    if count:
        log.info("Rescored %d leads whose recency bonus ran out", count)
    count = sweep_risk_once(datetime.now(timezone.utc))
    if count:
        log.info("Reassessed the risk of %d deals that time has changed", count)


def _purge_round() -> None:
    exclusively(lambda s: purge_old_records(s, datetime.now(timezone.utc)))
    exclusively(lambda s: purge_sign_in_records(s, datetime.now(timezone.utc)))


def _plays_round() -> None:
    rows = refresh_plays_once(datetime.now(timezone.utc))
    if rows is not None:
        log.info("Play statistics refreshed: %d segment rows", rows)


def _compact_round() -> None:
    folded = exclusively(compact_board_totals)
    if folded:
        log.info("Board totals: %d delta rows folded", folded)


def notify_due_once(now: datetime) -> int:
    """Notify the owners of follow-ups that fell due, unless another worker is already at it."""
    return exclusively(lambda session: notify_due_follow_ups(session, now)) or 0
