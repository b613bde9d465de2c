"""Slow work on the job queue (procrastinate, migration 0026): the web app's least-privilege login
queues a scoring job for a manager and nothing more, a real job worker process runs it, and a job
waiting for a worker is shown waiting, not interrupted."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlmodel import Session

from crm_app.db.engine import login_role_url, make_app_engine, make_engine
from crm_app.db.security import act_as, read_acting_key
from crm_app.services.errors import Forbidden
from crm_app.services.permissions import acting_user
from crm_app.services.scoring_jobs import RESCORE, JobAlreadyRunning, latest_job, start_job
from crm_app.settings import REPO_ROOT
from tests.conftest import scratch_database
from tests.factories import make_lead, make_user


PERIODIC_TASKS = ("crm.sweep", "crm.due_follow_ups", "crm.forecast_refresh")  # queued by every worker's periodic deferrer


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Team:
    def __init__(self, url: str, owner: Engine, web: Engine, manager: int, rep: int):
        self.url, self.owner, self.web, self.manager, self.rep = url, owner, web, manager, rep

    def acting(self, user_id: int) -> Session:
        """A session on the web app's login acting as `user_id`, as a page's work runs."""
        return act_as(Session(self.web, expire_on_commit=False), user_id)

    def queue_rows(self) -> list:
        with self.owner.connect() as conn:
            return conn.execute(text("SELECT id, task_name, queue_name, lock, args, status "
                                     "FROM procrastinate_jobs ORDER BY id")).all()

    def clear(self) -> None:
        with self.owner.begin() as conn:
            conn.execute(text("DELETE FROM scoring_jobs"))
            conn.execute(text("DELETE FROM procrastinate_jobs"))


@pytest.fixture(scope="module")
def team(database_url: str) -> Iterator[Team]:
    """A database of its own (a worker process must see what the test committed)."""
    with scratch_database(database_url, "crm_queue") as url:
        owner = make_engine(url)

        def key() -> bytes:
            with owner.connect() as conn:
                return read_acting_key(conn)

        web = make_app_engine(login_role_url(url), key)
        with Session(owner, expire_on_commit=False) as session:
            manager = make_user(session, "Maya Manager", role="manager")
            rep = make_user(session, "Ria Rep")
            for n in range(3):
                make_lead(session, f"Queued Lead {n}", now=utcnow(), owner=rep)
            ids = manager.id, rep.id
        yield Team(url, owner, web, *ids)
        web.dispose()
        owner.dispose()


@pytest.fixture
def clean(team: Team) -> Iterator[Team]:
    team.clear()
    yield team
    team.clear()


def _queue_rescore(team: Team, user_id: int) -> int:
    with team.acting(user_id) as session:
        actor = acting_user(session)
        return start_job(session, kind=RESCORE, now=utcnow(), actor=actor, queue={})


def test_a_manager_on_the_web_login_queues_a_rescoring_with_its_job_row(clean: Team):
    job_id = _queue_rescore(clean, clean.manager)
    [queued] = clean.queue_rows()
    assert (queued.task_name, queued.queue_name, queued.lock, queued.status) == \
        ("crm.rescore", "scoring", "crm-scoring-rescore", "todo")
    assert queued.args == {"job_id": job_id}
    with clean.acting(clean.manager) as session:
        shown = latest_job(session, RESCORE, now=utcnow())
        assert shown.id == job_id and shown.running


def test_a_rep_queues_nothing_and_a_refused_job_leaves_no_queue_entry(clean: Team):
    with pytest.raises(Forbidden):
        _queue_rescore(clean, clean.rep)
    assert clean.queue_rows() == []


def test_the_web_login_cannot_touch_the_queue_tables_or_queue_what_it_likes(clean: Team):
    job_id = _queue_rescore(clean, clean.manager)
    for sql in ("SELECT count(*) FROM procrastinate_jobs",
                "INSERT INTO procrastinate_jobs (queue_name, task_name) VALUES ('scoring', 'crm.train')",
                "UPDATE procrastinate_jobs SET status = 'cancelled'",
                "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('scoring', 'crm.train', 0, NULL, NULL, "
                "'{}'::jsonb, NULL)::procrastinate_job_to_defer_v1])"):
        with clean.acting(clean.manager) as session, pytest.raises(ProgrammingError, match="permission denied"):
            session.execute(text(sql))
    # The one door: a running scoring job not queued yet. Queuing the same job twice is refused.
    with clean.acting(clean.manager) as session, pytest.raises(DBAPIError, match="waits to be queued"):
        session.execute(text("SELECT crm_defer_scoring_job(:id)"), {"id": job_id})
    # Without an acting user (SQL that slipped in on the web login) nothing is queued.
    with Session(clean.web) as session, pytest.raises(DBAPIError):
        session.execute(text("SET LOCAL ROLE crm_app_user"))
        session.execute(text("SELECT crm_defer_scoring_job(:id)"), {"id": job_id})
    assert len(clean.queue_rows()) == 1


def test_a_job_waiting_for_a_worker_is_shown_waiting_and_still_blocks_a_second_one(clean: Team):
    job_id = _queue_rescore(clean, clean.manager)
    with clean.owner.begin() as conn:  # no worker has taken it for an hour: no heartbeat since
        conn.execute(text("UPDATE scoring_jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = :id"),
                     {"id": job_id})
    with clean.acting(clean.manager) as session:
        assert latest_job(session, RESCORE, now=utcnow()).status == "running"
        with pytest.raises(JobAlreadyRunning):
            start_job(session, kind=RESCORE, now=utcnow(), actor=acting_user(session), queue={})
    # Taken by a worker that then died (its heartbeat stopped): interrupted, and a new one may start.
    with clean.owner.begin() as conn:
        conn.execute(text("UPDATE procrastinate_jobs SET status = 'doing'"))
    with clean.acting(clean.manager) as session:
        assert latest_job(session, RESCORE, now=utcnow()).status == "failed"
    assert _queue_rescore(clean, clean.manager) != job_id


def test_a_job_worker_process_runs_the_queued_rescoring(clean: Team):
    job_id = _queue_rescore(clean, clean.manager)
    env = {**os.environ, "DATABASE_URL": clean.url, "CRM_WORKER_CONCURRENCY": "1"}
    log_path = REPO_ROOT / "test-artifacts" / "job-queue-worker.log"
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "crm_app.worker"], cwd=REPO_ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and worker.poll() is None:
                with clean.acting(clean.manager) as session:
                    shown = latest_job(session, RESCORE, now=utcnow())
                if not shown.running:
                    break
                time.sleep(0.3)
            assert worker.poll() is None, f"the job worker exited; see {log_path}"
        finally:
            worker.terminate()
            worker.wait(30)
    assert shown.status == "succeeded", f"{shown.status}: {shown.error}; see {log_path}"
    assert shown.message.startswith("Rescored 3 open leads")
    # A stopped worker exits cleanly (SIGTERM) and the queue keeps no finished job (the worker's
    # periodic deferrer may have queued the next minute's round, which waits for the next worker).
    assert worker.returncode == 0
    assert [row for row in clean.queue_rows() if row.task_name not in PERIODIC_TASKS] == []
