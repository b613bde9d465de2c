"""The app's slow work as jobs on a queue in PostgreSQL (procrastinate), run by job worker processes
(`python -m crm_app.worker`, crm_app/worker.py), never by a web worker.

- Training and bulk rescoring: the model page records a `scoring_jobs` row (progress, heartbeat,
  what the page reads) and queues the task for it in the same transaction, through
  `crm_defer_scoring_job` (migration 0026), which the web app's least-privilege login may call. Each
  task has a lock of its own kind (`crm-scoring-train`, `crm-scoring-rescore`): however many workers
  run, one training and one rescoring run at a time, and the next one waits in the queue.
- The sweeps that keep time-dependent scores and risks true, the purge of old API records and the
  play-statistics refresh are periodic tasks: every worker runs procrastinate's periodic deferrer,
  which queues each round once (not once per worker), and the rounds still take the sweep's advisory
  lock (crm_app/background.py) so a round that overruns is not run twice.
- The revenue forecast, its backtest and the stage win rates behind the weighted pipeline are
  precomputed every 5 minutes (`crm.forecast_refresh`) into `forecast_snapshots`, which the forecast
  page, the kanban, Today and the Leads table read instead of fitting the history themselves.

The queue's connection is the tables' owner's (DATABASE_URL, or the embedded server), as the jobs'
sessions are; procrastinate speaks psycopg 3 (its PsycopgConnector) beside the app's psycopg2.
"""

from __future__ import annotations

import logging

import procrastinate
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session

log = logging.getLogger(__name__)

SCORING_QUEUE = "scoring"
SWEEP_QUEUE = "sweeps"
QUEUES = (SCORING_QUEUE, SWEEP_QUEUE)

app = procrastinate.App(connector=procrastinate.PsycopgConnector(), import_paths=[__name__])


def queue_conninfo(url: str) -> str:
    """A libpq URL (what psycopg 3 takes) for a SQLAlchemy PostgreSQL URL of any driver."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def queue_connector(url: str | None = None) -> procrastinate.PsycopgConnector:
    """The queue's connector on the tables' owner's database (the embedded one when DATABASE_URL is
    not set), its sessions in UTC as the app's engine's are."""
    from crm_app.db.engine import database_url

    return procrastinate.PsycopgConnector(
        conninfo=queue_conninfo(url or database_url()),
        kwargs={"options": "-c timezone=UTC", "application_name": "crm-job-worker"},
        min_size=1, max_size=4,
    )


# --- Deferring (from the web app, in the transaction that records the scoring job) ----------------


def defer_scoring_job(session: Session, job_id: int, **extra) -> int:
    """Queue the task of running scoring job `job_id` (a row start_job just wrote, in the same
    transaction; the caller commits). `extra` reaches the task as keyword arguments. Works on the web
    app's login for an acting user, and on the owner's. Returns the queue's job id."""
    import json

    return session.execute(text("SELECT crm_defer_scoring_job(:id, CAST(:extra AS jsonb))"),
                           {"id": job_id, "extra": json.dumps(extra)}).scalar_one()


# --- The tasks ------------------------------------------------------------------------------------


def _open_session() -> Session:
    from crm_app.db.engine import get_engine

    return Session(get_engine(), expire_on_commit=False)


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


@app.task(name="crm.train", queue=SCORING_QUEUE, lock="crm-scoring-train")
def train(job_id: int, keep_fields: list[str] | None = None, then_rescore: bool = True) -> None:
    """Train a model for scoring job `job_id`, as the manager who asked (its `requested_by`)."""
    from crm_app.services.permissions import acting_user
    from crm_app.services.scoring_jobs import run_training_job

    with _open_session() as session:
        requested_by = session.execute(text("SELECT requested_by FROM scoring_jobs WHERE id = :id"),
                                       {"id": job_id}).scalar_one()
        trained_by = acting_user(session, requested_by) if requested_by is not None else None
    run_training_job(_open_session, job_id, clock=_now, trained_by=trained_by,
                     keep_fields=tuple(keep_fields or ()), then_rescore=then_rescore)


@app.task(name="crm.rescore", queue=SCORING_QUEUE, lock="crm-scoring-rescore")
def rescore(job_id: int) -> None:
    """Rescore the open leads (and the closed deals a model learned from) for scoring job `job_id`."""
    from crm_app.services.scoring_jobs import run_rescore_job

    run_rescore_job(_open_session, job_id, clock=_now)


# Every 5 minutes, as the web worker's sweep loop did; each round retries in seconds while the
# database is away (background.run_round).
@app.periodic(cron="*/5 * * * *", periodic_id="sweep")
@app.task(name="crm.sweep", queue=SWEEP_QUEUE, queueing_lock="crm-sweep", pass_context=False)
def sweep(timestamp: int) -> None:
    """Rescore the leads whose recency bonus ran out, reassess risks time changed, purge old API
    records, refresh the play statistics when stale."""
    from crm_app.background import sweep_with_retries

    sweep_with_retries()


# Every minute: the bell and the browser hear of follow-ups that just fell due (each announced once).
@app.periodic(cron="* * * * *", periodic_id="due_follow_ups")
@app.task(name="crm.due_follow_ups", queue=SWEEP_QUEUE, queueing_lock="crm-due-follow-ups", pass_context=False)
def due_follow_ups(timestamp: int) -> None:
    """Notify the owners of follow-ups that fell due since the last round."""
    from datetime import datetime, timezone

    from crm_app.background import notify_due_once

    notify_due_once(datetime.now(timezone.utc))


# Every 5 minutes: the forecast, its backtest and the stage win rates that pages read
# (forecast_snapshots; crm_app/services/forecast_snapshots.py), each rebuilt only when due. One round
# at a time across every worker (its lock); a round that overruns the next tick is not queued twice.
@app.periodic(cron="*/5 * * * *", periodic_id="forecast_refresh")
@app.task(name="crm.forecast_refresh", queue=SWEEP_QUEUE, queueing_lock="crm-forecast-refresh",
          lock="crm-forecast-refresh", pass_context=False)
def forecast_refresh(timestamp: int) -> None:
    """Precompute what the forecast page, the kanban, Today and the Leads table read."""
    from crm_app.services.forecast_snapshots import refresh_forecasts

    with _open_session() as session:
        refresh_forecasts(session, now=_now(), clock=_now)
