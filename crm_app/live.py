"""Live updates: open pages learn that leads changed, whoever changed them (another rep, the REST
API, the background sweep), without a reload.

PostgreSQL tells every worker: a trigger on `leads` (migration 0010) sends `NOTIFY crm_leads` with
the owner's id (or `pool`) when a lead is inserted or updated, once per owner per transaction and
only when the transaction commits. Each worker process LISTENs on one connection of its own and
notes when each owner's leads last changed. A page asks `changed_since(...)` every few seconds
(components/live.py), which is a dictionary lookup: no query, no work for the database, and a page
reloads only when something its viewer can see has changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from crm_app.db.engine import get_engine

CHANNEL = "crm_leads"
POOL = "pool"
RECONNECT_SECONDS = 5.0

log = logging.getLogger(__name__)
_changed_at: dict[str, float] = {}
_any_change_at = 0.0
# When this worker's listener (re)connected: notifications before it were missed, so a page loaded
# before then is treated as stale.
_listening_since = 0.0


def note_change(owner: str, at: float | None = None) -> None:
    global _any_change_at
    at = time.time() if at is None else at
    _changed_at[owner] = max(at, _changed_at.get(owner, 0.0))
    _any_change_at = max(_any_change_at, at)


def listening_since() -> float:
    """When this worker's listener last (re)connected (a time.time()); 0.0 when it is not listening
    (a script, a test, a job worker): then nothing is known about changes and callers must look."""
    return _listening_since


def changed_since(moment: float, owners: Iterable[str] | None) -> bool:
    """Did leads of these owners (None: anyone's) change after `moment` (a time.time())?"""
    if _listening_since > moment:
        return True
    if owners is None:
        return _any_change_at > moment
    return any(_changed_at.get(owner, 0.0) > moment for owner in owners)


def owners_seen_by(user_id: int, sees_team: bool) -> list[str] | None:
    """Whose changes matter to this viewer: everyone's for a manager, else their own and the pool's."""
    return None if sees_team else [str(user_id), POOL]


def _drain(connection) -> None:
    connection.poll()
    now = time.time()
    while connection.notifies:
        note_change(connection.notifies.pop(0).payload or POOL, now)


async def listen_for_changes() -> None:
    """Lifespan task: LISTEN for lead changes for as long as the worker runs; reconnect on failure."""
    global _listening_since
    loop = asyncio.get_running_loop()
    while True:
        raw = None
        try:
            raw = await asyncio.to_thread(get_engine().raw_connection)
            connection = raw.driver_connection  # psycopg2
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
            _listening_since = time.time()
            readable = asyncio.Event()
            fd = connection.fileno()
            loop.add_reader(fd, readable.set)
            try:
                while True:
                    await readable.wait()
                    readable.clear()
                    _drain(connection)
            finally:
                # By the number kept: once the server dropped the connection, fileno() raises, and the
                # loop would keep a stale entry for a number the next socket may be given.
                loop.remove_reader(fd)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database restarted or the connection dropped: listen again
            log.exception("Listening for lead changes failed; retrying in %.0f s", RECONNECT_SECONDS)
        finally:
            # Not listening from here until the next LISTEN: what changed meanwhile is never heard, so
            # callers must look (and a cancelled listener, as a test's, must not answer for later ones).
            _listening_since = 0.0
            if raw is not None:
                try:
                    raw.invalidate()  # never hand a LISTENing connection back to the pool
                except Exception:
                    pass
        await asyncio.sleep(RECONNECT_SECONDS)

