"""Imports as jobs: a row per import the web app runs (`import_jobs`, migration 0027), a heartbeat
while it runs, cancelling, and an import cut off by its process dying seen as such and cleaned up.

An import stores every row or none (one transaction), so a web process dying mid-import loses nothing
stored; what must not be lost is the user's knowledge of it, and the database must not go on running
the dead import's statements (they hold the import lock, so the next import would wait behind them).

- While an import runs, a thread beside it moves the job's heartbeat every HEARTBEAT_SECONDS in a short
  transaction of its own (the import's transaction commits only at its end), with the step the import
  is at and the PostgreSQL backend running it. A job whose heartbeat is older than STALE_AFTER is dead:
  it is marked interrupted and its backend, if still running the dead job's transaction, is terminated.
  A job whose process (on this machine) is gone is dead at once.
- The import's own connection asks PostgreSQL to check every second that its client is still there
  (`client_connection_check_interval`, PostgreSQL 14+), so a query whose process died ends by itself
  within a second or two; an import left idle in its transaction ends after 15 minutes.
- Cancel: the page marks the job `cancel_requested`; the heartbeat sees it (whichever worker runs the
  import) and cancels the running statement (libpq's cancel request, no privilege needed); the import
  rolls back and says "cancelled". The command line cancels the same way on Ctrl-C.

Job rows are written through the owner's login (as the scoring jobs' heartbeats are): they are the
app's bookkeeping, not a user's data; the app role only reads them (managers).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psutil
from sqlalchemy import text
from sqlmodel import Session

from crm_app.services.errors import ServiceError

HEARTBEAT_SECONDS = 2.0
STALE_AFTER = timedelta(seconds=15)
INTERRUPTED = "The import of {file} was interrupted at {step}; nothing was stored. Run it again."
CANCELLED = "Import cancelled: nothing was stored."
log = logging.getLogger(__name__)
_HOST = socket.gethostname()


class ImportCancelled(ServiceError):
    """The user cancelled the import; the transaction was rolled back."""

    def __init__(self, message: str = CANCELLED):
        super().__init__(message)


@dataclass
class ImportControl:
    """Between an import and whoever may cancel it (the page through the job's heartbeat, Ctrl-C):
    the step it is at, and the connection whose running statement a cancel interrupts."""

    step: str = "Reading the file"
    backend_pid: int | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    _connection: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, dbapi_connection, backend_pid: int) -> None:
        """The import's transaction runs on this connection from now on."""
        with self._lock:
            self._connection, self.backend_pid = dbapi_connection, backend_pid
        if self.cancelled.is_set():
            self.cancel()

    def detach(self) -> None:
        with self._lock:
            self._connection = None

    def cancel(self) -> None:
        """Stop the import: at its next step, and its running statement now."""
        self.cancelled.set()
        with self._lock:
            connection = self._connection
            if connection is not None:
                try:
                    connection.cancel()  # a libpq cancel request: ends the statement, not the session
                except Exception:  # the connection already closed: nothing runs
                    log.debug("Cancel request failed", exc_info=True)

    def check(self) -> None:
        if self.cancelled.is_set():
            raise ImportCancelled()


def limit_orphans(cursor) -> None:
    """Inside the import's transaction: end its statements if its client goes away (PostgreSQL 14+),
    and end the transaction if it sits idle for 15 minutes (a client alive but stuck; scoring a
    million rows between two statements takes minutes, not that)."""
    cursor.execute("SHOW server_version_num")
    if int(cursor.fetchone()[0]) >= 140000:
        cursor.execute("SET LOCAL client_connection_check_interval = '1s'")
    cursor.execute("SET LOCAL idle_in_transaction_session_timeout = '15min'")


# --- Jobs -----------------------------------------------------------------------------------------


def _alive(host: str | None, pid: int | None, started: float | None) -> bool:
    """Is the process that runs a job alive? Only known for this machine's processes."""
    if host != _HOST or pid is None:
        return True  # another machine's: its heartbeat tells
    try:
        process = psutil.Process(pid)
        return (started is None or abs(process.create_time() - started) < 1) \
            and process.status() != psutil.STATUS_ZOMBIE  # not a reused pid
    except psutil.Error:
        return False


def end_dead_imports(session: Session, now: datetime) -> list[int]:
    """Mark running jobs whose process died (on this machine) or whose heartbeat stopped as interrupted,
    and terminate the database backend still running such a job's transaction (one that began before
    the job's last heartbeat: a pooled connection reused since would have begun later). Returns the
    jobs ended. Commits."""
    running_jobs = session.execute(
        text("SELECT id, heartbeat_at, worker_host, worker_pid, worker_started FROM import_jobs "
             "WHERE status = 'running'")).all()
    ids = [j.id for j in running_jobs
           if j.heartbeat_at < now - STALE_AFTER or not _alive(j.worker_host, j.worker_pid, j.worker_started)]
    if not ids:
        session.rollback()
        return []
    dead = session.execute(
        text("UPDATE import_jobs SET status = 'interrupted', finished_at = :now "
             "WHERE status = 'running' AND id = ANY(:ids) RETURNING id, backend_pid, heartbeat_at"),
        {"now": now, "ids": ids},
    ).all()
    session.commit()
    for job_id, pid, last_beat in dead:
        if pid is None:
            continue
        try:
            session.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE pid = :pid AND xact_start IS NOT NULL AND xact_start <= :beat"),
                {"pid": pid, "beat": last_beat},
            )
            session.commit()
        except Exception:  # not allowed to signal it: its client check ends it anyway
            session.rollback()
            log.warning("Could not end the backend %s of dead import job %s", pid, job_id)
    return [row[0] for row in dead]


def start_job(session: Session, actor_id: int, file_name: str, now: datetime) -> int:
    """Record a running import of `file_name` by `actor_id`; returns the job's id. Commits."""
    end_dead_imports(session, now)
    me = psutil.Process()
    job_id = session.execute(
        text("INSERT INTO import_jobs (actor_id, file_name, started_at, heartbeat_at, step, worker_host, "
             "worker_pid, worker_started) VALUES (:actor, :file, :now, :now, 'Reading the file', :host, :pid, "
             ":started) RETURNING id"),
        {"actor": actor_id, "file": file_name[:255] or "import.csv", "now": now, "host": _HOST, "pid": me.pid,
         "started": me.create_time()},
    ).scalar_one()
    session.commit()
    return job_id


def finish_job(session: Session, job_id: int, status: str, now: datetime, message: str | None = None) -> None:
    """Record how the import ended (succeeded, failed or cancelled). Commits."""
    session.execute(
        text("UPDATE import_jobs SET status = :status, message = :message, finished_at = :now, heartbeat_at = :now "
             "WHERE id = :id AND status = 'running'"),
        {"id": job_id, "status": status, "message": message, "now": now},
    )
    session.commit()


def _beat(open_session: Callable[[], Session], job_id: int, control: ImportControl, now: datetime) -> bool:
    """Move the heartbeat; cancel the import when its user asked to. False once the job is not running."""
    with open_session() as session:
        row = session.execute(
            text("UPDATE import_jobs SET heartbeat_at = :now, step = :step, backend_pid = :pid "
                 "WHERE id = :id AND status = 'running' RETURNING cancel_requested"),
            {"id": job_id, "now": now, "step": control.step[:200], "pid": control.backend_pid},
        ).first()
        session.commit()
    if row is None or row[0]:
        control.cancel()  # cancelled, or marked interrupted by someone who took this process for dead
    return row is not None


@contextmanager
def heartbeat(open_session: Callable[[], Session], job_id: int, control: ImportControl,
              clock: Callable[[], datetime]) -> Iterator[None]:
    """Keep import job `job_id` beating (and cancellable) while the block runs."""
    stop = threading.Event()

    def beat_until_stopped() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                if not _beat(open_session, job_id, control, clock()):
                    return
            except Exception as error:  # the database away for a moment: the next beat tries again
                log.warning("Heartbeat of import job %s failed (%s)", job_id, type(error).__name__)

    thread = threading.Thread(target=beat_until_stopped, name=f"import-{job_id}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=HEARTBEAT_SECONDS * 3)


def request_cancel(session: Session, actor_id: int) -> bool:
    """Ask `actor_id`'s running import to stop (its heartbeat acts on it within seconds). Commits."""
    done = session.execute(
        text("UPDATE import_jobs SET cancel_requested = true WHERE actor_id = :actor AND status = 'running' "
             "RETURNING id"),
        {"actor": actor_id},
    ).first()
    session.commit()
    return done is not None


def running(session: Session, actor_id: int, now: datetime) -> bool:
    """Is an import of this user running in a live process?"""
    end_dead_imports(session, now)
    return session.execute(
        text("SELECT 1 FROM import_jobs WHERE actor_id = :actor AND status = 'running' AND heartbeat_at >= :stale"),
        {"actor": actor_id, "stale": now - STALE_AFTER},
    ).first() is not None


def interrupted(session: Session, actor_id: int, now: datetime) -> str | None:
    """The message to show when this user's last import died with its process (once), else None."""
    end_dead_imports(session, now)
    row = session.execute(
        text("UPDATE import_jobs SET noticed = true WHERE id = (SELECT id FROM import_jobs WHERE actor_id = :actor "
             "ORDER BY started_at DESC, id DESC LIMIT 1) AND status = 'interrupted' AND NOT noticed "
             "RETURNING file_name, step"),
        {"actor": actor_id},
    ).first()
    session.commit()
    if row is None:
        return None
    step = (row.step or "the start").rstrip(". ")
    return INTERRUPTED.format(file=row.file_name, step=f'"{step}"')
