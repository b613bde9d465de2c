"""While the database is away: a "Reconnecting to the database..." notice in place of the page, and
the page's data loaded again once it answers, without a reload.

Any event whose database work fails because the database is unreachable (db/outage.py) lands in
state/base.handle_backend_exception, which starts `DatabaseState.reconnect` for that tab instead of
the framework's generic "An error occurred". The tab then checks with backoff until the database
answers, hides the notice and runs the page's on_load handlers again.
"""

from __future__ import annotations

import asyncio
import logging
import time

import reflex as rx
from reflex.state import OnLoadInternalState

from crm_app.db.engine import get_engine
from crm_app.db.outage import backoff, database_answers

GIVE_UP_SECONDS = 600.0
RECONNECTING = "Reconnecting to the database..."
STILL_AWAY = "The database is still not reachable. Reload the page to try again."

log = logging.getLogger(__name__)


class DatabaseState(rx.State):
    """Is this tab waiting for the database to come back?"""

    reconnecting: bool = False
    notice: str = RECONNECTING

    @rx.event(background=True)
    async def reconnect(self):
        async with self:
            if self.reconnecting:
                return  # one wait per tab, however many events failed
            self.reconnecting, self.notice = True, RECONNECTING
        started, attempt = time.monotonic(), 0
        while not await asyncio.to_thread(database_answers, get_engine()):
            if time.monotonic() - started > GIVE_UP_SECONDS:
                async with self:
                    self.notice = STILL_AWAY
                return
            await asyncio.sleep(min(backoff(attempt), 2.0))
            attempt += 1
        log.info("A tab reconnected to the database after %.1f s", time.monotonic() - started)
        async with self:
            self.reconnecting = False
        return OnLoadInternalState.on_load_internal  # the page loads its data again


def reconnecting_notice() -> rx.Component:
    """Shown in place of a page's content while its tab waits for the database."""
    return rx.cond(
        DatabaseState.reconnecting,
        rx.callout(
            DatabaseState.notice,
            icon="database-zap",
            color_scheme="amber",
            size="2",
            class_name="db-reconnecting",
            role="status",
        ),
    )
