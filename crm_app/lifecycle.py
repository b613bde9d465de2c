"""What a job worker does when it stops cleanly (SIGTERM from scripts/supervise.py, Ctrl-C).

The jobs it runs get CRM_STOP_SECONDS to finish (procrastinate's graceful shutdown); then the scoring
jobs still running in it are marked interrupted, so a new one can start at once instead of after their
heartbeat goes stale. (The embedded PostgreSQL is stopped by scripts/supervise.py once every process
is gone.) Web workers run no jobs, so they have nothing to release.
"""

from __future__ import annotations

import logging

from crm_app.services.job_heartbeat import release_running_jobs

log = logging.getLogger(__name__)


def release_on_shutdown() -> list[int]:
    """Mark the scoring jobs this process still runs interrupted; returns their ids."""
    from crm_app.state.base import open_session  # the tables' owner, as the jobs themselves

    try:
        released = release_running_jobs(open_session)
        if released:
            log.warning("Stopping: marked jobs %s interrupted", released)
        return released
    except Exception:
        log.exception("Releasing running jobs failed")
        return []
