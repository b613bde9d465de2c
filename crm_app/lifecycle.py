"""What a web worker does when it stops cleanly (SIGTERM from scripts/supervise.py, Ctrl-C).

Requests in flight finish first (the server stops taking new ones). Then the scoring jobs this
worker runs are marked interrupted, so a new one can start at once instead of after their heartbeat
goes stale. (The embedded PostgreSQL is stopped by scripts/supervise.py once every worker is gone.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from crm_app.services.job_heartbeat import release_running_jobs

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def release_on_shutdown():
    """Lifespan task: nothing at start; at shutdown, release the jobs this worker runs."""
    yield
    from crm_app.state.base import open_session  # the tables' owner, as the jobs themselves

    try:
        released = await asyncio.to_thread(release_running_jobs, open_session)
        if released:
            log.warning("Stopping: marked jobs %s interrupted", released)
    except Exception:
        log.exception("Releasing running jobs failed")
