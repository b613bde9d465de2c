"""Slow scoring work as jobs with progress in PostgreSQL: training a model, rescoring open leads.

A job is a `scoring_jobs` row that the worker running it moves on (percent, message, heartbeat) in
short transactions of their own, so every worker and a reloaded page read the same progress. A
partial unique index lets one job of each kind run at a time; a second start is refused with a
message. A job beats every few seconds while it runs (services/job_heartbeat.py); one whose heartbeat
stopped (its process died) shows as interrupted and is marked failed at the next start.

`run_training_job` and `run_rescore_job` do the work. The app queues them (start_job's `queue`) for a
job worker process (crm_app/tasks.py, crm_app/worker.py) in the transaction that records the job; a
queued job waiting for a worker beats no heartbeat and is shown waiting, not interrupted, until a
worker takes it. The command line and tests run them directly, handing them a way to open sessions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from crm_app.scoring.evaluation import figure_text
from crm_app.scoring.training import stored_headline, stored_interval
from crm_app.services.errors import ServiceError
from crm_app.db.outage import database_unavailable
from crm_app.services.job_heartbeat import HEARTBEAT_SECONDS, INTERRUPTED, run_as_job
from crm_app.services.model_training import activate_model, train_model
from crm_app.services.permissions import CurrentUser, require_manager
from crm_app.services.scoring import (
    EngineConfig,
    count_history_leads,
    count_open_leads,
    engine_config,
    engine_from_config,
    rescore_history,
    rescore_open_leads,
)

TRAIN = "train"
RESCORE = "rescore"
JOB_KINDS = (TRAIN, RESCORE)
# No heartbeat for this long (four missed beats): the process running the job is gone.
STALE_AFTER = timedelta(seconds=4 * HEARTBEAT_SECONDS)
# Training reports in steps; each step's message starts with one of these, at this percent.
TRAINING_STEPS = (
    ("Loading", 5),
    ("Checking the custom fields", 10),
    ("Computing features", 15),
    ("Training fold", 20),  # then up to 70 fold by fold (see _training_percent)
    ("Training the scoring model", 70),
    ("Measuring", 75),
    ("Scoring the", 82),
    ("Previewing", 88),
    ("Saving", 92),
    ("Model version", 97),
)
_FOLD = re.compile(r"^Training fold (\d+) of (\d+)")


def _training_percent(message: str) -> int | None:
    """How far a training is at this step: by the step's first words, fold by fold while training."""
    fold = _FOLD.match(message)
    if fold:
        return 20 + 50 * (int(fold.group(1)) - 1) // int(fold.group(2))
    return next((p for prefix, p in TRAINING_STEPS if message.startswith(prefix)), None)

log = logging.getLogger(__name__)
SessionFactory = Callable[[], Session]
Clock = Callable[[], datetime]


class JobAlreadyRunning(ServiceError):
    """A job of the same kind is running; the message says since when."""


@dataclass
class JobView:
    """A job as the model page shows it."""

    id: int
    kind: str
    status: str  # running | succeeded | failed
    percent: int
    message: str
    error: str
    started_at: str
    finished_at: str
    model_id: int

    @property
    def running(self) -> bool:
        return self.status == "running"


def _fail_stale(session: Session, kind: str, now: datetime) -> None:
    session.execute(
        text(
            "UPDATE scoring_jobs SET status = 'failed', finished_at = :now, error = :error "
            "WHERE kind = :kind AND status = 'running' AND heartbeat_at < :stale "
            "AND NOT crm_scoring_job_waiting(queue_job_id)"
        ),
        {"kind": kind, "now": now, "stale": now - STALE_AFTER, "error": INTERRUPTED},
    )


def start_job(session: Session, *, kind: str, now: datetime, actor: CurrentUser | None,
              message: str = "Starting", queue: dict | None = None) -> int:
    """Record a new running job requested by `actor` and commit; returns its id. Raises
    JobAlreadyRunning, and Forbidden unless `actor` is a manager (None: the tables' owner, see
    permissions.require_manager). Given `queue` (the task's extra keyword arguments), the job's task
    is queued for a job worker in the same transaction: both are recorded, or neither."""
    if kind not in JOB_KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    require_manager(session, actor, "train a model" if kind == TRAIN else "rescore the leads")
    requested_by = actor.id if actor is not None else None
    _fail_stale(session, kind, now)
    try:
        job_id = session.execute(
            text(
                "INSERT INTO scoring_jobs (kind, status, percent, message, started_at, heartbeat_at, requested_by) "
                "VALUES (:kind, 'running', 0, :message, :now, :now, :by) RETURNING id"
            ),
            {"kind": kind, "message": message, "now": now, "by": requested_by},
        ).scalar_one()
        if queue is not None:
            from crm_app.tasks import defer_scoring_job

            defer_scoring_job(session, job_id, **queue)
        session.commit()
    except IntegrityError:
        session.rollback()
        running = latest_job(session, kind)
        what = "A model is already being trained" if kind == TRAIN else "Scores are already being recomputed"
        since = f" (started {running.started_at})" if running else ""
        raise JobAlreadyRunning(f"{what}{since}; wait for it to finish.") from None
    return job_id


def report_progress(session: Session, job_id: int, *, percent: int, message: str, now: datetime) -> None:
    """Move a running job on and commit (a transaction of its own, visible to every worker)."""
    session.execute(
        text(
            "UPDATE scoring_jobs SET percent = :percent, message = :message, heartbeat_at = :now "
            "WHERE id = :id AND status = 'running'"
        ),
        {"id": job_id, "percent": max(0, min(100, int(percent))), "message": message[:300], "now": now},
    )
    session.commit()


def finish_job(session: Session, job_id: int, *, now: datetime, message: str, model_id: int | None = None) -> None:
    session.execute(
        text(
            "UPDATE scoring_jobs SET status = 'succeeded', percent = 100, message = :message, "
            "finished_at = :now, heartbeat_at = :now, model_id = coalesce(:model_id, model_id) "
            "WHERE id = :id AND status = 'running'"
        ),
        {"id": job_id, "message": message[:300], "now": now, "model_id": model_id},
    )
    session.commit()


def fail_job(session: Session, job_id: int, *, now: datetime, error: str) -> None:
    session.execute(
        text(
            "UPDATE scoring_jobs SET status = 'failed', error = :error, finished_at = :now, heartbeat_at = :now "
            "WHERE id = :id AND status = 'running'"
        ),
        {"id": job_id, "error": error, "now": now},
    )
    session.commit()


def latest_job(session: Session, kind: str, now: datetime | None = None) -> JobView | None:
    """The newest job of a kind (running or finished), or None when there was none. Given `now`, a
    running job whose heartbeat stopped shows as interrupted (the next start marks it so)."""
    row = session.execute(
        text(
            "SELECT id, kind, status, percent, message, error, started_at, finished_at, model_id, "
            "heartbeat_at, crm_scoring_job_waiting(queue_job_id) AS waiting "
            "FROM scoring_jobs WHERE kind = :kind ORDER BY started_at DESC, id DESC LIMIT 1"
        ),
        {"kind": kind},
    ).one_or_none()
    if row is None:
        return None
    status, error = row.status, row.error or ""
    if status == "running" and now is not None and row.heartbeat_at < now - STALE_AFTER and not row.waiting:
        status, error = "failed", INTERRUPTED
    return JobView(
        id=row.id, kind=row.kind, status=status, percent=row.percent, message=row.message,
        error=error, started_at=f"{row.started_at:%Y-%m-%d %H:%M} UTC",
        finished_at=f"{row.finished_at:%Y-%m-%d %H:%M} UTC" if row.finished_at else "",
        model_id=row.model_id or 0,
    )


def rescore_if_changed(
    session: Session, before: EngineConfig, *, now: datetime, actor: CurrentUser | None,
    queue: bool = False,
) -> int | None:
    """After a switch (engine, blend share or active model): start a rescoring job when the scores
    can change (queued for a job worker when `queue`). Returns the job, or None when nothing changed
    or a rescoring already runs (it notices the switch and starts over with the new engine)."""
    if engine_config(session).key == before.key:
        return None
    try:
        return start_job(session, kind=RESCORE, now=now, actor=actor, message="Waiting to rescore the open leads",
                         queue={} if queue else None)
    except JobAlreadyRunning:
        return None


def _user_message(error: Exception) -> str:
    if isinstance(error, ServiceError):
        return str(error)
    return f"Training failed unexpectedly ({type(error).__name__}: {error}). The rules keep scoring."


@run_as_job
def run_training_job(
    open_session: SessionFactory, job_id: int, *, clock: Clock, trained_by: CurrentUser | None = None,
    then_rescore: bool = True, keep_fields: Collection[str] = (),
) -> int | None:
    """Train a model for a started job, reporting progress; returns the new model's id, or None when
    it failed (the job row says why). The first model of a team becomes the active one; later ones
    wait for a manager to activate them after comparing. When activating changes what scores the
    leads (the team chose the model), the open leads are rescored next, in this same thread, with a
    job of their own, requested by `trained_by`. `open_session` opens sessions as the tables' owner
    (the job was started by a manager, see start_job). `keep_fields`: custom fields the manager keeps
    although the leak and id guard flagged them. Never raises: a failure is recorded."""
    rescore_job: int | None = None
    with open_session() as progress_session, open_session() as work:
        def step(message: str) -> None:
            percent = _training_percent(message)
            current = progress_session.execute(
                text("SELECT percent FROM scoring_jobs WHERE id = :id"), {"id": job_id}
            ).scalar_one()
            report_progress(progress_session, job_id, percent=max(current, percent or current), message=message,
                            now=clock())

        try:
            report = train_model(work, now=clock(), progress=step, keep_fields=keep_fields,
                                 trained_by=trained_by.id if trained_by is not None else None)
            activated = False
            before = engine_config(work)
            if before.model_id is None:
                activate_model(work, report.model_id, actor=None)  # the system's choice: the only model
                activated = True
                if then_rescore:
                    rescore_job = rescore_if_changed(work, before, now=clock(), actor=trained_by)
            finish_job(
                progress_session, job_id, now=clock(), model_id=report.model_id,
                message=(f"Model version {report.version} trained on {report.rows:,} closed deals"
                         + _auc_words(report.metrics)
                         + ("; it is now the active model." if activated else "; activate it to use it.")),
            )
        except Exception as error:  # recorded for the page, never swallowed silently
            work.rollback()
            if database_unavailable(error):
                raise  # run_as_job runs it again once the database is back
            if not isinstance(error, ServiceError):
                log.exception("Training job %s failed", job_id)
            fail_job(progress_session, job_id, now=clock(), error=_user_message(error))
            return None
    if rescore_job is not None:
        run_rescore_job(open_session, rescore_job, clock=clock)
    return report.model_id


def _auc_words(metrics: dict) -> str:
    """" (ROC-AUC 0.86, 0.84-0.88)": the headline figure with its interval, as precise as it is known."""
    value = stored_headline(metrics, "model", "roc_auc")
    if value is None:
        return ""
    text_ = figure_text("roc_auc", value, stored_interval(metrics, "model", "roc_auc"))
    how = ", cross-validated" if metrics.get("validation") == "cross_validation" else ""
    return f" (ROC-AUC {text_.replace(' (', ', ').rstrip(')')}{how})"


@run_as_job
def run_rescore_job(open_session: SessionFactory, job_id: int, *, clock: Clock, batch_size: int = 2000) -> int:
    """Rescore every open lead with the team's engine for a started job, then the closed deals a model
    learned from (scoring.rescore_history: out-of-fold scores, never in-sample ones), batch by batch,
    reporting progress. If the engine changes meanwhile (another switch), it starts over with the new
    one, so the last switch always wins. Returns how many open leads were written. Never raises."""
    written = history = 0
    with open_session() as progress_session, open_session() as work:
        try:
            for _attempt in range(5):
                config = engine_config(work)
                engine = engine_from_config(work, config)
                open_count = count_open_leads(work)
                total = max(1, open_count + count_history_leads(work))
                changed = False
                written = history = 0

                def step(done: int, before: int = 0) -> None:
                    nonlocal changed
                    done += before
                    what = (f"Rescored {done:,} of {open_count:,} open leads" if done <= open_count else
                            f"Rescored the open leads and {done - open_count:,} closed deals a model "
                            "learned from")
                    report_progress(progress_session, job_id, percent=min(99, 100 * done // total),
                                    message=what, now=clock())
                    if engine_config(progress_session).key != config.key:
                        changed = True
                        raise _EngineChanged

                try:
                    written = rescore_open_leads(work, clock(), engine=engine, batch_size=batch_size, progress=step)
                    history = rescore_history(work, clock(), engine=engine, batch_size=batch_size,
                                              progress=lambda done: step(done, before=open_count))
                except _EngineChanged:
                    work.rollback()
                    continue
                if not changed:
                    break
            finish_job(progress_session, job_id, now=clock(),
                       message=rescore_message(config, written, history))
        except Exception as error:
            work.rollback()
            if database_unavailable(error):
                raise  # run_as_job runs it again once the database is back
            log.exception("Rescoring job %s failed", job_id)
            fail_job(progress_session, job_id, now=clock(),
                     error=f"Rescoring stopped ({type(error).__name__}: {error}). Leads not reached keep "
                           "their previous score; start it again.")
    return written


def rescore_message(config: EngineConfig, open_leads: int, history: int) -> str:
    """What a rescoring did, in words: the open leads, and the closed deals a model learned from."""
    label = config.effective
    what = {"rules": "the rules", "model": f"model v{config.model_version}",
            "blend": f"the blend of model v{config.model_version} and the rules"}[label]
    message = f"Rescored {open_leads:,} open lead{'s' if open_leads != 1 else ''} with {what}"
    if history and label != "rules":
        message += (f"; {history:,} closed deal{'s' if history != 1 else ''} it learned from now show the "
                    "score of a model that did not learn from them")
    elif history:
        message += f", and {history:,} closed deal{'s' if history != 1 else ''} a model had learned from"
    return message + "."


class _EngineChanged(Exception):
    """The team switched engine while a rescoring ran: start over with the new one."""
