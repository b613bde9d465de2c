"""A running job says it is alive every few seconds, so a dead one is seen as dead in seconds.

A scoring job (training, rescoring) used to move its heartbeat only when it reported progress, which
can take minutes (fitting the model), so a job was taken for dead only after ten minutes without
one: a web process killed mid-training blocked training for eleven minutes. Now a thread beside the
job writes `heartbeat_at` every HEARTBEAT_SECONDS in a short transaction of its own; a job whose
heartbeat is older than scoring_jobs.STALE_AFTER is shown as interrupted and no longer blocks a new
one. A process that stops cleanly marks the jobs it runs interrupted at once (crm_app/lifecycle.py).
A job cut off by a database outage runs again once the database answers (`run_as_job`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import text
from sqlmodel import Session

from crm_app.db.outage import backoff, database_unavailable

HEARTBEAT_SECONDS = 5.0
# A job cut off by a database outage runs again when it is back, for this long.
RETRY_OUTAGE_SECONDS = 300.0
INTERRUPTED = "Interrupted: the app stopped while this job ran. Start it again."
LOST_DATABASE = "Stopped: the database was not reachable for minutes. Start it again."

log = logging.getLogger(__name__)
# The jobs this process is running, so a clean shutdown can release them.
_running: dict[int, Callable[[], datetime]] = {}
_running_lock = threading.Lock()


def _beat(open_session: Callable[[], Session], job_id: int, now: datetime) -> bool:
    """Move the job's heartbeat; False when it is no longer running (finished, or marked
    interrupted by someone who thought this process dead)."""
    with open_session() as session:
        alive = session.execute(
            text("UPDATE scoring_jobs SET heartbeat_at = :now "
                 "WHERE id = :id AND status = 'running' RETURNING id"),
            {"id": job_id, "now": now},
        ).first()
        session.commit()
    return alive is not None


@contextmanager
def heartbeat(open_session: Callable[[], Session], job_id: int,
              clock: Callable[[], datetime]) -> Iterator[None]:
    """Keep job `job_id` beating while the block runs."""
    stop = threading.Event()

    def beat_until_stopped() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                if not _beat(open_session, job_id, clock()):
                    return
            except Exception as error:  # the database away for a moment: the next beat tries again
                log.warning("Heartbeat of job %s failed (%s); retrying", job_id, type(error).__name__)

    with _running_lock:
        _running[job_id] = clock
    thread = threading.Thread(target=beat_until_stopped, name=f"job-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        with _running_lock:
            _running.pop(job_id, None)
        thread.join(timeout=HEARTBEAT_SECONDS * 2)


def run_as_job(run_job):
    """Decorate a `run_*_job(open_session, job_id, *, clock, ...)`: the job beats while it runs, and
    when it stops because the database went away (it re-raises such errors), it runs again from the
    start once the database answers, with backoff, for up to RETRY_OUTAGE_SECONDS; then it is failed
    with a message. A job's work is safe to redo: a failed attempt's transaction was rolled back."""

    @functools.wraps(run_job)
    def running(open_session, job_id, *args, clock, **kwargs):
        started, attempt = time.monotonic(), 0
        while True:
            try:
                with heartbeat(open_session, job_id, clock):
                    return run_job(open_session, job_id, *args, clock=clock, **kwargs)
            except Exception as error:
                if not database_unavailable(error):
                    raise
                if time.monotonic() - started > RETRY_OUTAGE_SECONDS:
                    log.error("Job %s gave up: the database stayed away", job_id)
                    _fail_quietly(open_session, job_id, clock(), LOST_DATABASE)
                    return None
                wait = backoff(attempt)
                log.warning("Job %s: the database went away (%s); running it again in %.0f s",
                            job_id, type(error).__name__, wait)
                attempt += 1
                time.sleep(wait)

    return running


def _fail_quietly(open_session, job_id: int, now: datetime, error: str) -> None:
    try:
        with open_session() as session:
            session.execute(text("UPDATE scoring_jobs SET status = 'failed', error = :error, "
                                 "finished_at = :now, heartbeat_at = :now "
                                 "WHERE id = :id AND status = 'running'"),
                            {"id": job_id, "error": error, "now": now})
            session.commit()
    except Exception:  # still away: the job shows as interrupted once its heartbeat is stale
        log.exception("Could not mark job %s failed", job_id)


def release_running_jobs(open_session: Callable[[], Session]) -> list[int]:
    """Mark the jobs this process runs as interrupted (the process is stopping), so a new one can
    start at once. Returns their ids."""
    with _running_lock:
        jobs = list(_running.items())
    released = []
    for job_id, clock in jobs:
        try:
            with open_session() as session:
                done = session.execute(
                    text("UPDATE scoring_jobs SET status = 'failed', error = :error, finished_at = :now, "
                         "heartbeat_at = :now WHERE id = :id AND status = 'running' RETURNING id"),
                    {"id": job_id, "error": INTERRUPTED, "now": clock()},
                ).first()
                session.commit()
            if done:
                released.append(job_id)
        except Exception:
            log.exception("Could not release job %s; it will be seen as interrupted when its heartbeat stops",
                          job_id)
    return released
