"""A closed tab's state leaves the web worker's memory soon after its websocket closes.

With one web worker and no Redis, Reflex keeps every tab's state in the worker's memory until the tab
has had no event for CRM_STATE_EXPIRY_SECONDS (its disk state manager), and saves it to disk as well.
A tab that is open keeps its websocket (and its bell asks for news every few seconds), so the tabs
that pile up are the closed ones: each sign-in leaves two (the sign-in page's and the first page's),
and 1,000 sign-ins within the half hour stayed resident, a second 1,000 adding as much again
(scripts/benchmark_memory.py, README "Benchmark").

`forget_closed_tabs` (a lifespan task) notes when a tab's websocket closes and, CRM_CLOSED_TAB_SECONDS
later, unless the tab has connected again, drops its state from memory. Its saved copy stays on disk
until CRM_STATE_EXPIRY_SECONDS, so a tab that does come back (a laptop that slept, a flaky network)
finds its state there, as after a restart of the server.

With Redis (several workers) nothing is done here: a worker holds a tab's state only while it holds its
lease (REFLEX_OPLOCK_ENABLED, seconds), and Redis expires it.

It reaches into Reflex's disk state manager (`_token_last_touched`, `_write_queue`, `_is_locked`,
`_purge_token`: the same steps its own expiry takes); tests/test_closed_tabs.py runs it against the
real manager, so an upgrade that changes them fails there.
"""

from __future__ import annotations

import asyncio
import logging
import time

from crm_app.settings import settings

log = logging.getLogger(__name__)


def forget_tab(manager, token: str) -> bool:
    """Drop tab `token`'s state from `manager`'s memory (StateManagerDisk) unless an event holds it or
    its last change is not on disk yet. True when it is gone from memory."""
    entry = manager._token_last_touched.get(token)
    if entry is None:
        return token not in manager.states
    state_token = entry[1]
    if manager._is_locked(state_token) or any(t.cache_key == token for t in manager._write_queue):
        return False
    manager._purge_token(state_token)
    return True


class ClosedTabs:
    """Which tabs' websockets closed when, on one worker's event namespace."""

    def __init__(self, namespace, manager, grace_seconds: float):
        self.namespace, self.manager, self.grace = namespace, manager, grace_seconds
        self.closed: dict[str, float] = {}

    def install(self) -> None:
        original = self.namespace.on_disconnect

        def on_disconnect(sid, *_reason):
            token = self.namespace.sid_to_token.get(sid)
            result = original(sid)
            if token:
                self.closed[token] = time.monotonic()
            return result

        self.namespace.on_disconnect = on_disconnect  # Socket.IO looks the handler up on the instance

    def sweep(self, now: float) -> int:
        """Forget the tabs closed at least `grace` seconds before `now` that have not come back; the
        number forgotten."""
        connected, forgotten = self.namespace._token_manager.token_to_socket, 0
        for token, closed_at in list(self.closed.items()):
            if token in connected:
                del self.closed[token]  # it came back
            elif now - closed_at >= self.grace and forget_tab(self.manager, token):
                del self.closed[token]
                forgotten += 1
        return forgotten


async def forget_closed_tabs(app) -> None:
    """Lifespan task (one worker, no Redis): closed tabs leave memory CRM_CLOSED_TAB_SECONDS after
    their websocket closed."""
    from reflex.istate.manager.disk import StateManagerDisk

    manager, namespace = app.state_manager, app.event_namespace
    if not settings.closed_tab_seconds or not isinstance(manager, StateManagerDisk) or namespace is None:
        return
    tabs = ClosedTabs(namespace, manager, settings.closed_tab_seconds)
    tabs.install()
    while True:
        await asyncio.sleep(max(1.0, settings.closed_tab_seconds / 4))
        try:
            tabs.sweep(time.monotonic())
        except Exception:  # never let bookkeeping stop the worker; Reflex's own expiry still runs
            log.exception("forgetting closed tabs failed")
